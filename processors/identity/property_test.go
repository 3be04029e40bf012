package identity

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// randomEvents draws n events over a pool of identifiers: each event has 1
// to 3 of them, picked with a skew so that some identifiers link many
// events and components of very different sizes form. A few events are
// exact duplicates of an earlier one (a producer retry).
func randomEvents(r *rand.Rand, n, pool int, types []string) []Input {
	var out []Input
	for i := range n {
		if i > 0 && r.IntN(20) == 0 {
			d := out[r.IntN(len(out))]
			d.Offset = 0
			out = append(out, d)
			continue
		}
		in := Input{MessageID: fmt.Sprintf("m%d", i)}
		for range 1 + r.IntN(3) {
			k := int(float64(pool) * r.Float64() * r.Float64()) // skewed towards small k
			typ := types[k%len(types)]
			val := fmt.Sprintf("v%d", k)
			if typ == TypeEmail {
				val += "@x.io"
			}
			in.Identifiers = append(in.Identifiers, Identifier{typ, val})
		}
		out = append(out, in)
	}
	return out
}

// components is the model: connected components of "appear together in
// one event", over distinct identifiers.
func components(events []Input) (map[Identifier]Identifier, []Identifier) {
	parent := map[Identifier]Identifier{}
	var all []Identifier
	var find func(Identifier) Identifier
	find = func(x Identifier) Identifier {
		p := parent[x]
		if p == x {
			return x
		}
		root := find(p)
		parent[x] = root
		return root
	}
	for _, e := range events {
		for _, id := range e.Identifiers {
			if _, ok := parent[id]; !ok {
				parent[id] = id
				all = append(all, id)
			}
		}
		for _, id := range e.Identifiers[1:] {
			parent[find(id)] = find(e.Identifiers[0])
		}
	}
	roots := map[Identifier]Identifier{}
	for _, id := range all {
		roots[id] = find(id)
	}
	return roots, all
}

func modelGrouping(events []Input) [][]string {
	roots, all := components(events)
	groups := map[string][]string{}
	for _, id := range all {
		r := roots[id]
		groups[r.Type+"="+r.Value] = append(groups[r.Type+"="+r.Value], id.Type+"="+id.Value)
	}
	return canonical(groups)
}

var propTypes = []string{TypeUserID, TypeEmail, TypeDeviceID, TypeAnonymousID, "loyalty_id"}

func unlimitedRules() Rules {
	r := DefaultRules()
	r.Priority = append(r.Priority, "loyalty_id")
	r.Limits = nil
	return r
}

// resolveSequential resolves events on partition 0 in batches of random size.
func resolveSequential(t *testing.T, ctx context.Context, g *Graph, r *rand.Rand, events []Input) {
	t.Helper()
	for i := range events {
		events[i].Offset = int64(i)
	}
	for start := 0; start < len(events); {
		end := min(len(events), start+1+r.IntN(80))
		if _, err := g.Resolve(ctx, events[start:end]); err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		start = end
	}
}

// resolveConcurrent spreads events over four partitions (event i on
// partition i%4), each resolved by its own goroutine, as four instances of
// the processor would.
func resolveConcurrent(t *testing.T, ctx context.Context, g *Graph, seed uint64, events []Input) {
	t.Helper()
	parts := make([][]Input, 4)
	for i, e := range events {
		p := i % 4
		e.Offset = int64(len(parts[p]))
		parts[p] = append(parts[p], e)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(p)))
			evs := parts[p]
			for start := 0; start < len(evs); {
				end := min(len(evs), start+1+r.IntN(40))
				if _, err := g.Resolve(ctx, evs[start:end]); err != nil {
					errs <- err
					return
				}
				start = end
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Resolve: %v", err)
	}
}

// checkConsistent verifies that the identifier table and the profiles'
// member lists agree: every identifier's profile lists it, and the
// profiles list nothing else.
func checkConsistent(t *testing.T, ctx context.Context, g *Graph, ids []Identifier) map[string][]Identifier {
	t.Helper()
	profiles := map[string][]Identifier{}
	for _, id := range ids {
		p, ok, err := g.Lookup(ctx, id)
		if err != nil || !ok {
			t.Fatalf("Lookup(%v) = %q %v %v", id, p, ok, err)
		}
		if _, seen := profiles[p]; !seen {
			canon, members, err := g.Profile(ctx, p)
			if err != nil || canon != p {
				t.Fatalf("Profile(%s) = %q, %v", p, canon, err)
			}
			profiles[p] = members
		}
	}
	total := 0
	for p, members := range profiles {
		for _, m := range members {
			if got, _, _ := g.Lookup(ctx, m); got != p {
				t.Fatalf("profile %s lists %v, which resolves to %s", p, m, got)
			}
		}
		total += len(members)
		// The per-type counts the limits are checked against (".c<code>",
		// ".c*" for all) must match the members.
		want := map[string]int{".c*": len(members)}
		for _, m := range members {
			want[".c"+codeOf(m.Type)]++
		}
		raw, err := g.rdb.HGetAll(ctx, g.base+"p"+p).Result()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for k, v := range raw {
			if n, err := strconv.Atoi(v); strings.HasPrefix(k, ".c") && (n != 0 || err != nil) {
				got[k] = n
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("profile %s counts %v, its members %v", p, got, want)
		}
	}
	st, err := g.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Identifiers != int64(total) || st.Profiles != int64(len(profiles)) {
		t.Fatalf("stats %+v; the profiles hold %d identifiers in %d profiles", st, total, len(profiles))
	}
	return profiles
}

func TestPropertyGroupingIsConnectedComponents(t *testing.T) {
	f := newFixture(t)
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			events := randomEvents(r, 1500, 600, propTypes)
			want := modelGrouping(events)
			_, all := components(events)

			// A tiny table (one bucket, load 2) makes the graph split
			// buckets hundreds of times while it grows.
			seq := f.graph(fmt.Sprintf("seq%d:", seed), WithRules(unlimitedRules()), withTable(1, 2))
			resolveSequential(t, f.ctx, seq, r, events)
			got := grouping(t, f.ctx, seq, all)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("sequential grouping differs from the connected components:\ngot  %v\nwant %v", got, want)
			}
			checkConsistent(t, f.ctx, seq, all)
			if st, _ := seq.Stats(f.ctx); st.Buckets < 100 {
				t.Fatalf("stats %+v: the table did not split", st)
			}

			conc := f.graph(fmt.Sprintf("conc%d:", seed), WithRules(unlimitedRules()), withTable(1, 2), WithChunkSize(7))
			resolveConcurrent(t, f.ctx, conc, seed, events)
			if got := grouping(t, f.ctx, conc, all); !reflect.DeepEqual(got, want) {
				t.Fatalf("four concurrent partitions gave another grouping:\ngot  %v\nwant %v", got, want)
			}
			checkConsistent(t, f.ctx, conc, all)
		})
	}
}

// With Segment's limits, random events never give a profile two user ids
// or six emails, and the table stays consistent, also under concurrency.
func TestPropertyLimitsHold(t *testing.T) {
	f := newFixture(t)
	rules := DefaultRules()
	rules.Limits[TypeEmail] = 2
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			events := randomEvents(r, 1500, 400, propTypes[:4])
			_, all := components(events)
			g := f.graph(fmt.Sprintf("lim%d:", seed), WithRules(rules), withTable(2, 3))
			resolveConcurrent(t, f.ctx, g, seed, events)
			// Limits can leave an identifier unlinked only when it was
			// refused everywhere it appeared; check what is linked.
			var linked []Identifier
			for _, id := range all {
				if _, ok, err := g.Lookup(f.ctx, id); err != nil {
					t.Fatal(err)
				} else if ok {
					linked = append(linked, id)
				}
			}
			profiles := checkConsistent(t, f.ctx, g, linked)
			for p, members := range profiles {
				n := map[string]int{}
				for _, m := range members {
					n[m.Type]++
				}
				if n[TypeUserID] > 1 || n[TypeEmail] > 2 {
					t.Fatalf("profile %s breaks the limits: %v", p, members)
				}
			}
		})
	}
}

// TestPropertyDedupMatchesOneByOne checks the chunk-wide dedup of
// resolve.lua (each dedup key read and written once per chunk) against the
// rule applied event by event: a message id is a duplicate when an earlier
// event (in offset order) had it in the same bucket, or in the previous
// bucket no more than a window before. Ids repeat a lot, times fall in
// four buckets, some copies carry other times, a bucket's keys split
// after a few ids each (so the layout changes between chunks, at many
// levels), and the events go in chunks of random sizes. The keys must then
// hold what the layout says (checkDedupLayout).
func TestPropertyDedupMatchesOneByOne(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 11))
			rules := DefaultRules()
			rules.DedupWindow = time.Hour
			rules.DedupKeyIDs = 1 + r.IntN(3) // 16 keys to start: splits past 16 to 48 ids
			f := newFixture(t)
			g := f.graph("p", WithRules(rules), WithChunkSize(1+r.IntN(300)))
			t0 := time.Unix(1_770_000_000/3600*3600, 0)
			var batch []Input
			type key struct {
				msg string
				idx int64
			}
			seen := map[key]int64{}
			var want []bool
			for i := range 600 {
				at := t0.Add(time.Duration(r.IntN(4*3600)) * time.Second)
				in := Input{MessageID: fmt.Sprintf("m%d", r.IntN(120)), Offset: int64(i), Time: at,
					Identifiers: []Identifier{{TypeAnonymousID, fmt.Sprintf("a%d", r.IntN(50))}}}
				batch = append(batch, in)
				unix := at.Unix()
				idx, rel := unix/3600, unix%3600
				dup := false
				if _, ok := seen[key{in.MessageID, idx}]; ok {
					dup = true
				} else {
					seen[key{in.MessageID, idx}] = rel
					if prev, ok := seen[key{in.MessageID, idx - 1}]; ok && rel <= prev {
						dup = true
					}
				}
				want = append(want, dup)
			}
			dups := 0
			for start := 0; start < len(batch); {
				end := min(len(batch), start+1+r.IntN(400))
				res := f.resolve(g, batch[start:end]...)
				for k, res := range res {
					if res.Duplicate != want[start+k] {
						t.Fatalf("event %d (%s at %v): duplicate %v, one by one %v", start+k, batch[start+k].MessageID, batch[start+k].Time, res.Duplicate, want[start+k])
					}
					if res.Duplicate {
						dups++
					}
				}
				start = end
			}
			if dups < 100 || dups > 500 {
				t.Fatalf("%d duplicates of 600: the test does not exercise both outcomes", dups)
			}
			keys, _ := checkDedupLayout(t, f.ctx, f.rdb, f.prefix+"p{default}:")
			t.Logf("%d ids per key: %d of 600 events duplicates, as one by one; %d dedup keys", rules.DedupKeyIDs, dups, keys)
		})
	}
}
