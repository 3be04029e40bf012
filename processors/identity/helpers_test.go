package identity

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/testkit"
)

// fixture is one test's graph on the real Redis of the local stack.
type fixture struct {
	t      testing.TB
	rdb    redis.UniversalClient
	prefix string
	g      *Graph
	ctx    context.Context
	off    int64
	t0     time.Time
}

func newFixture(t testing.TB, opts ...Option) *fixture {
	t.Helper()
	env := testkit.New(t)
	rdb := env.Redis(t)
	f := &fixture{t: t, rdb: rdb, prefix: env.RedisPrefix(), ctx: testkit.Context(t),
		t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.g = f.graph("", opts...)
	return f
}

// graph returns another graph under the fixture's prefix plus sub, so one
// test can compare runs in separate key spaces.
func (f *fixture) graph(sub string, opts ...Option) *Graph {
	f.t.Helper()
	g, err := NewGraph(f.rdb, append([]Option{WithPrefix(f.prefix + sub)}, opts...)...)
	if err != nil {
		f.t.Fatalf("NewGraph: %v", err)
	}
	return g
}

// ev builds an input on the fixture's partition with the next offset; ids
// are "type=value".
func (f *fixture) ev(msg string, ids ...string) Input {
	in := Input{MessageID: msg, Offset: f.off, Time: f.t0.Add(time.Duration(f.off) * time.Second)}
	f.off++
	for _, s := range ids {
		typ, val, ok := strings.Cut(s, "=")
		if !ok {
			f.t.Fatalf("identifier %q: want type=value", s)
		}
		in.Identifiers = append(in.Identifiers, Identifier{typ, val})
	}
	return in
}

func (f *fixture) resolve(g *Graph, batch ...Input) []Result {
	f.t.Helper()
	res, err := g.Resolve(f.ctx, batch)
	if err != nil {
		f.t.Fatalf("Resolve: %v", err)
	}
	if len(res) != len(batch) {
		f.t.Fatalf("Resolve returned %d results for %d inputs", len(res), len(batch))
	}
	return res
}

// one resolves a single event on the fixture's graph.
func (f *fixture) one(msg string, ids ...string) Result {
	f.t.Helper()
	return f.resolve(f.g, f.ev(msg, ids...))[0]
}

func (f *fixture) lookup(g *Graph, typ, val string) string {
	f.t.Helper()
	p, ok, err := g.Lookup(f.ctx, Identifier{typ, val})
	if err != nil {
		f.t.Fatalf("Lookup(%s %s): %v", typ, val, err)
	}
	if !ok {
		return ""
	}
	return p
}

// dump returns every key under prefix (without the prefix) with a
// canonical rendering of its content: hash fields sorted, streams in order.
func dump(t testing.TB, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	keys, err := testkit.Keys(ctx, rdb, prefix+"*")
	if err != nil {
		t.Fatalf("listing %s*: %v", prefix, err)
	}
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE %s: %v", k, err)
		}
		var s string
		switch typ {
		case "hash":
			m, err := rdb.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatalf("HGETALL %s: %v", k, err)
			}
			var fields []string
			for f, v := range m {
				fields = append(fields, fmt.Sprintf("%q=%q", f, v))
			}
			slices.Sort(fields)
			s = strings.Join(fields, " ")
		case "stream":
			xs, err := rdb.XRange(ctx, k, "-", "+").Result()
			if err != nil {
				t.Fatalf("XRANGE %s: %v", k, err)
			}
			s = fmt.Sprint(xs)
		case "string": // a dedup bucket's bitmap of shard keys with a TTL
			v, err := rdb.Get(ctx, k).Result()
			if err != nil {
				t.Fatalf("GET %s: %v", k, err)
			}
			s = fmt.Sprintf("%x", v)
		default:
			t.Fatalf("unexpected key %s of type %s", k, typ)
		}
		out[strings.TrimPrefix(k, prefix)] = typ + " " + s
	}
	return out
}

// grouping reads the graph's grouping of the given identifiers: each
// identifier's profile, as sorted groups of "type=value".
func grouping(t testing.TB, ctx context.Context, g *Graph, ids []Identifier) [][]string {
	t.Helper()
	byProfile := map[string][]string{}
	for _, id := range ids {
		p, ok, err := g.Lookup(ctx, id)
		if err != nil {
			t.Fatalf("Lookup(%v): %v", id, err)
		}
		if !ok {
			t.Fatalf("identifier %v has no profile", id)
		}
		byProfile[p] = append(byProfile[p], id.Type+"="+id.Value)
	}
	return canonical(byProfile)
}

func canonical(groups map[string][]string) [][]string {
	var out [][]string
	for _, g := range groups {
		g = slices.Clone(g)
		slices.Sort(g)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// dedupMarks counts the message ids in a dedup key. It fails unless the
// key is a hash table holding resolve.lua's sentinel field "~" (what keeps
// it out of the listpack encoding), which it does not count.
func dedupMarks(t testing.TB, ctx context.Context, rdb redis.UniversalClient, key string) int64 {
	t.Helper()
	n, err := rdb.HLen(ctx, key).Result()
	if err != nil {
		t.Fatalf("HLEN %s: %v", key, err)
	}
	enc, err := rdb.ObjectEncoding(ctx, key).Result()
	if err != nil {
		t.Fatalf("OBJECT ENCODING %s: %v", key, err)
	}
	if has, err := rdb.HExists(ctx, key, "~").Result(); err != nil || !has || enc != "hashtable" {
		t.Fatalf("dedup key %s: encoding %s, sentinel %v (%v): want a hash table with the sentinel", key, enc, has, err)
	}
	return n - 1
}

// checkDedupLayout checks every dedup bucket under a graph's key prefix
// pre ("...{space}:") against the linear hashing of resolve.lua: the keys
// h<N>:<start> are among those that level l and split pointer s name,
// each a hash table with the sentinel, holding only ids whose first 24
// digest bits fall in its range, n ids in all, and every key expiring at
// the bucket's instant x. It returns the number of keys and the largest
// key's ids.
func checkDedupLayout(t testing.TB, ctx context.Context, rdb redis.UniversalClient, pre string) (keys int, largest int64) {
	t.Helper()
	states, err := testkit.Keys(ctx, rdb, pre+"g*")
	if err != nil {
		t.Fatal(err)
	}
	if len(states) == 0 {
		t.Fatalf("no dedup bucket under %s", pre)
	}
	for _, g := range states {
		idx := strings.TrimPrefix(g, pre+"g")
		st, err := rdb.HMGet(ctx, g, "l", "s", "n", "x").Result()
		if err != nil {
			t.Fatal(err)
		}
		var l, s, n, x int64
		for i, p := range []*int64{&l, &s, &n, &x} {
			v, ok := st[i].(string)
			if !ok {
				t.Fatalf("%s: field %d missing: %v", g, i, st)
			}
			fmt.Sscan(v, p)
		}
		if at := rdb.PExpireTime(ctx, g).Val(); at.Milliseconds() != x {
			t.Errorf("%s expires at %v, want %d", g, at, x)
		}
		width := int64(1<<24) >> l
		want := map[string][2]int64{} // key -> first h, width
		for a := range int64(1) << l {
			if a < s {
				want[fmt.Sprint(a*width)] = [2]int64{a * width, width / 2}
				want[fmt.Sprint(a*width+width/2)] = [2]int64{a*width + width/2, width / 2}
			} else {
				want[fmt.Sprint(a*width)] = [2]int64{a * width, width}
			}
		}
		have, err := testkit.Keys(ctx, rdb, pre+"h"+idx+":*")
		if err != nil {
			t.Fatal(err)
		}
		// A key exists once it holds an id: have is a subset of want.
		var total int64
		for _, k := range have {
			r, ok := want[strings.TrimPrefix(k, pre+"h"+idx+":")]
			if !ok {
				t.Fatalf("bucket %s at level %d, split pointer %d: unexpected key %s", idx, l, s, k)
			}
			c := dedupMarks(t, ctx, rdb, k)
			total += c
			largest = max(largest, c)
			fields, err := rdb.HKeys(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fields {
				if f == "~" {
					continue
				}
				h := int64(f[0])<<16 | int64(f[1])<<8 | int64(f[2])
				if h < r[0] || h >= r[0]+r[1] {
					t.Fatalf("%s holds an id with h %d, outside [%d, %d)", k, h, r[0], r[0]+r[1])
				}
			}
			if at := rdb.PExpireTime(ctx, k).Val(); at.Milliseconds() != x {
				t.Errorf("%s expires at %v, want %d (its bucket's)", k, at, x)
			}
		}
		if total != n {
			t.Errorf("bucket %s: %d ids in its keys, its count says %d", idx, total, n)
		}
		keys += len(have)
	}
	return keys, largest
}
