package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// persona is one simulated customer with realistic identifier shapes.
type persona struct {
	user, email, device, anon string
}

func uuidLike(r *rand.Rand) string {
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff)
}

func personas(r *rand.Rand, n int) []persona {
	out := make([]persona, n)
	for i := range out {
		out[i] = persona{
			user:   fmt.Sprintf("user-%08d", i),
			email:  fmt.Sprintf("firstname.lastname%d@example.com", i),
			device: uuidLike(r),
			anon:   uuidLike(r),
		}
	}
	return out
}

// seedGraph gives every persona a profile built the way traffic builds it:
// anonymous browsing, then a sign-in that links user id and email. Half of
// them also browse on a second device and sign in there, which merges.
func seedGraph(tb testing.TB, ctx context.Context, g *Graph, r *rand.Rand, ps []persona, part int32) (events int) {
	tb.Helper()
	var batch []Input
	off := int64(0)
	add := func(ids ...Identifier) {
		batch = append(batch, Input{MessageID: fmt.Sprintf("seed-%d-%d", part, off), Identifiers: ids, Offset: off, Time: time.Unix(1_770_000_000+off, 0)})
		off++
	}
	flush := func() {
		if _, err := g.Resolve(ctx, batch); err != nil {
			tb.Fatalf("seeding: %v", err)
		}
		events += len(batch)
		batch = batch[:0]
	}
	for i, p := range ps {
		add(Identifier{TypeAnonymousID, p.anon}, Identifier{TypeDeviceID, p.device})
		add(Identifier{TypeAnonymousID, p.anon}, Identifier{TypeUserID, p.user}, Identifier{TypeEmail, p.email})
		if i%2 == 0 {
			anon2, dev2 := uuidLike(r), uuidLike(r)
			add(Identifier{TypeAnonymousID, anon2}, Identifier{TypeDeviceID, dev2})
			add(Identifier{TypeAnonymousID, anon2}, Identifier{TypeEmail, p.email})
		}
		if len(batch) >= 500 {
			flush()
		}
	}
	flush()
	return events
}

// BenchmarkResolve measures events/s through Resolve on the local Redis:
// 2 or 3 identifiers per event, 90% of events from known customers (their
// anonymous and device id, a third of them signed in), 10% from new
// visitors, batches of 500 as a Kafka poll delivers them, on a graph of
// 50k customers (about 250k identifiers). "partitions=4" resolves four
// partitions' batches concurrently, as four processor instances would.
// redis-cpu-us/event is the Redis process' CPU time per event (when Redis
// runs on this machine), the number to read on a busy machine.
func BenchmarkResolve(b *testing.B) {
	for _, parts := range []int{1, 4} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			f := newFixture(b)
			r := rand.New(rand.NewPCG(1, 2))
			ps := personas(r, 50_000)
			seedGraph(b, f.ctx, f.g, r, ps, 99)
			type source struct {
				r     *rand.Rand
				off   int64
				batch []Input
				j     *jstep // journaled as the processor journals
			}
			srcs := make([]*source, parts)
			for p := range srcs {
				js := f.journalOf(f.g, int32(p))
				srcs[p] = &source{r: rand.New(rand.NewPCG(uint64(p), 3)), batch: make([]Input, 500), j: js}
			}
			fill := func(p int) []Input {
				s := srcs[p]
				for i := range s.batch {
					in := Input{MessageID: "b" + strconv.Itoa(p) + "-" + strconv.FormatInt(s.off, 10), Offset: s.off, Time: time.Unix(1_770_100_000+s.off, 0)}
					s.off++
					if s.r.IntN(10) == 0 {
						in.Identifiers = []Identifier{{TypeAnonymousID, uuidLike(s.r)}, {TypeDeviceID, uuidLike(s.r)}}
					} else {
						c := &ps[s.r.IntN(len(ps))]
						in.Identifiers = []Identifier{{TypeAnonymousID, c.anon}, {TypeDeviceID, c.device}}
						if s.r.IntN(3) == 0 {
							in.Identifiers = append(in.Identifiers, Identifier{TypeUserID, c.user})
						}
					}
					s.batch[i] = in
				}
				return s.batch
			}
			usec0, cpu0 := evalshaUsec(b, f.rdb), redisCPU(b, f.rdb)
			events := 0
			errs := make([]error, parts)
			for b.Loop() {
				var wg sync.WaitGroup
				for p := range parts {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s := srcs[p]
						_, errs[p] = f.g.ResolveJournaled(f.ctx, fill(p), s.j.step)
						s.j.committedSeq = s.j.seq // as if each batch committed: the journal is trimmed
					}()
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				events += 500 * parts
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			// Time Redis spent inside the script, and its CPU time, which
			// other load on the machine does not inflate.
			b.ReportMetric(float64(evalshaUsec(b, f.rdb)-usec0)/float64(events), "redis-us/event")
			if cpu0 >= 0 {
				b.ReportMetric(float64(redisCPU(b, f.rdb)-cpu0)/float64(events)/1e3, "redis-cpu-us/event")
			}
		})
	}
}

// redisCPU returns the CPU time Redis has used, in nanoseconds, read from
// /proc (on a Cluster, of all its masters together); -1 when Redis does not
// run on this machine.
func redisCPU(tb testing.TB, rdb redis.UniversalClient) int64 {
	tb.Helper()
	var sum int64
	for _, c := range nodes(tb, rdb) {
		info, err := c.Info(context.Background(), "server").Result()
		if err != nil {
			tb.Fatal(err)
		}
		var pid string
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "process_id:"); ok {
				pid = v
			}
		}
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if pid == "" || err != nil {
			return -1
		}
		// Fields after the command name (which is in parentheses): utime and
		// stime are the 12th and 13th, in clock ticks of 10 ms.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
		fields := strings.Fields(rest)
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		sum += (ut + st) * 10_000_000
	}
	return sum
}

// evalshaUsec reads the microseconds Redis has spent in EVALSHA (on a
// Cluster, summed over its masters: the graph's node has them all).
func evalshaUsec(tb testing.TB, rdb redis.UniversalClient) int64 {
	tb.Helper()
	var sum int64
	for _, c := range nodes(tb, rdb) {
		info, err := c.Info(context.Background(), "commandstats").Result()
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
				for _, kv := range strings.Split(rest, ",") {
					if v, ok := strings.CutPrefix(kv, "usec="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						sum += n
					}
				}
			}
		}
	}
	return sum
}

// nodes returns the client of every Redis behind rdb: itself, or each
// master of a Cluster.
func nodes(tb testing.TB, rdb redis.UniversalClient) []*redis.Client {
	tb.Helper()
	switch c := rdb.(type) {
	case *redis.Client:
		return []*redis.Client{c}
	case *redis.ClusterClient:
		var mu sync.Mutex
		var out []*redis.Client
		err := c.ForEachMaster(context.Background(), func(_ context.Context, n *redis.Client) error {
			mu.Lock() // called on several goroutines at once
			out = append(out, n)
			mu.Unlock()
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		return out
	}
	tb.Fatalf("no Redis node behind a %T", rdb)
	return nil
}

// memoryUsage sums MEMORY USAGE of the keys under prefix whose suffix (after
// the prefix) starts with one of the kinds.
func memoryUsage(tb testing.TB, ctx context.Context, rdb redis.UniversalClient, prefix string) map[byte]int64 {
	tb.Helper()
	out := map[byte]int64{}
	keys, err := testkit.Keys(ctx, rdb, prefix+"*")
	if err != nil {
		tb.Fatal(err)
	}
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.MemoryUsage(ctx, k, 0)
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	for i, k := range keys {
		out[k[len(prefix)]] += cmds[i].Val()
	}
	return out
}

func usedMemory(tb testing.TB, ctx context.Context, rdb redis.UniversalClient) int64 {
	tb.Helper()
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Fatal("no used_memory in INFO memory")
	return 0
}

// TestMemoryPerIdentifier builds a graph of about 100k identifiers with
// realistic shapes (36-character anonymous and device ids, 40-character
// emails) and reports Redis memory per identifier and per profile. It
// fails above the 200 bytes per identifier the project targets.
func TestMemoryPerIdentifier(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a graph of 100k identifiers")
	}
	t.Parallel() // its own key prefix; asserts on its keys' memory (INFO is only logged)
	f := newFixture(t)
	r := rand.New(rand.NewPCG(5, 6))
	before := usedMemory(t, f.ctx, f.rdb)
	events := seedGraph(t, f.ctx, f.g, r, personas(r, 20_000), 0)
	after := usedMemory(t, f.ctx, f.rdb)
	st, err := f.g.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	mem := memoryUsage(t, f.ctx, f.rdb, f.prefix+"{default}:")
	graph := mem['b'] + mem['p'] + mem['m']
	perID := float64(graph) / float64(st.Identifiers)
	t.Logf("%d events, %d identifiers, %d profiles (%d created), %d buckets", events, st.Identifiers, st.Profiles, st.Created, st.Buckets)
	t.Logf("identifier table %d B, profiles %d B: %.1f B per identifier, %.1f B per profile (with its identifiers)",
		mem['b'], mem['p'], perID, float64(graph)/float64(st.Profiles))
	t.Logf("dedup %d B: %.1f B per event", mem['d'], float64(mem['d'])/float64(events))
	t.Logf("INFO used_memory grew by %d B (%.1f B per identifier, all keys, other clients included)", after-before, float64(after-before)/float64(st.Identifiers))
	if st.Identifiers < 90_000 {
		t.Fatalf("only %d identifiers", st.Identifiers)
	}
	if perID > 200 {
		t.Fatalf("%.1f B of Redis memory per identifier, the target is at most 200", perID)
	}
}

// BenchmarkResolveTraffic resolves the pipeline benchmark's traffic
// (generated, 20k persons, 200k events) straight through the graph, one
// journaled chunk of 1,000 after the other, as one partition's task would,
// and reports Redis' script time and CPU per event: the graph's own cost,
// without Kafka, decoding or other load on the machine. Under callgrind it
// gives Redis' instructions per event, which the machine's noise does not
// move (CDP_TRAFFIC_EVENTS makes the run shorter; divide by it):
//
//	go test -run ^$ -bench ResolveTraffic -benchtime 1x -count 3 ./processors/identity/
//	scripts/redis-callgrind.sh -- env CDP_TRAFFIC_EVENTS=40000 go test -run ^$ -bench ResolveTraffic -benchtime 1x ./processors/identity/
//
// With CDP_TRAFFIC_DAYS_BEFORE=n, the same traffic n dedup windows earlier
// (other message ids, the same customers) is resolved first, untimed. With
// n = 1 the dedup reads of the previous bucket hit full keys, as they do
// in production after a space's first day; a larger n warms the graph the
// same way but leaves the previous bucket empty, so the two runs differ by
// that alone.
func BenchmarkResolveTraffic(b *testing.B) {
	b.StopTimer() // generating the traffic is not timed
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 20000, 200000, 3
	if n, _ := strconv.Atoi(os.Getenv("CDP_TRAFFIC_EVENTS")); n > 0 { // a smaller run, e.g. under valgrind
		cfg.Persons, cfg.Events = max(n/10, 1), n
	}
	var inputs []Input
	_, err := generate.Generate(context.Background(), cfg, generate.SinkFunc(func(_ context.Context, l []byte) error {
		var e jsonEvent
		if json.Unmarshal(l, &e) == nil && e.MessageID != "" {
			inputs = append(inputs, e.input(int64(len(inputs))))
		}
		return nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		b.StopTimer()
		f := newFixture(b)
		// resolveAll resolves ins in journaled chunks of 1,000 on partition p.
		resolveAll := func(ins []Input, p int32) {
			js := f.journalOf(f.g, p)
			for start := 0; start < len(ins); start += 1000 {
				if _, err := f.g.ResolveJournaled(f.ctx, ins[start:min(start+1000, len(ins))], js.step); err != nil {
					b.Fatal(err)
				}
				js.committedSeq = js.seq
			}
		}
		if days, _ := strconv.Atoi(os.Getenv("CDP_TRAFFIC_DAYS_BEFORE")); days > 0 {
			back := time.Duration(days) * time.Duration(f.g.window) * time.Second
			prev := make([]Input, len(inputs))
			for i, in := range inputs {
				in.MessageID += "-before"
				in.Time = in.Time.Add(-back)
				prev[i] = in
			}
			resolveAll(prev, 1)
		}
		usec0, cpu0 := evalshaUsec(b, f.rdb), redisCPU(b, f.rdb)
		b.StartTimer()
		resolveAll(inputs, 0)
		b.StopTimer()
		b.ReportMetric(float64(evalshaUsec(b, f.rdb)-usec0)/float64(len(inputs)), "redis-us/event")
		if cpu0 >= 0 {
			b.ReportMetric(float64(redisCPU(b, f.rdb)-cpu0)/float64(len(inputs))/1e3, "redis-cpu-us/event")
		}
		b.ReportMetric(float64(len(inputs))/b.Elapsed().Seconds(), "events/s")
	}
}
