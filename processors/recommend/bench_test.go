package recommend

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// BenchmarkPipeline measures the recommend processor end to end on the
// local stack: 200,000 generated resolved events (20,000 persons, a week of
// traffic: 40% product views and cart adds, 1.3% orders) are produced to a 6-partition
// input first (not timed); the timer covers one instance (six tasks in
// parallel) consuming, decoding, updating sessions and histories, refreshing
// lists, journaling the state in Redis, emitting lists, scores and the
// orders changelog, committing, until the group has committed the whole
// input. The instance's associations learn from the changelog as it goes;
// the first score fit comes seconds later, after the timed part (a sweep is
// measured by BenchmarkSweep). Reports events/s, and the lists emitted and
// refreshes computed per run.
//
//	go test -run ^$ -bench Pipeline -benchtime 1x ./processors/recommend/
//
// order=generated replays the traffic in generation order, in the
// runtime's default polls of up to 5,000 records: a profile's session is a
// run of nearby records, so a backlog's large batches hold several of its
// events and they share one refresh. order=spread is the worst case, real
// time at a high rate, when a profile's events are seconds apart and a
// poll is a few milliseconds of traffic: each profile's events are spread
// evenly over the input (its k-th of n events at position (k+½)/n, its own
// order kept) and polls hold at most 600 records (100 per partition), so
// that nearly every view and order gets a refresh of its own.
func BenchmarkPipeline(b *testing.B) {
	for _, spread := range []bool{false, true} {
		name := "order=generated"
		if spread {
			name = "order=spread"
		}
		b.Run(name, func(b *testing.B) { benchmarkPipeline(b, spread) })
	}
}

// spreadOut reorders recs so that each key's records are spread evenly over
// the slice, keeping each key's own order.
func spreadOut(recs []*kgo.Record) []*kgo.Record {
	n := map[string]int{}
	for _, r := range recs {
		n[string(r.Key)]++
	}
	pos := make(map[*kgo.Record]float64, len(recs))
	k := map[string]int{}
	for _, r := range recs {
		key := string(r.Key)
		pos[r] = (float64(k[key]) + 0.5) / float64(n[key])
		k[key]++
	}
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b *kgo.Record) int { return cmp.Compare(pos[a], pos[b]) })
	return out
}

func benchmarkPipeline(b *testing.B, spread bool) {
	for range b.N {
		b.StopTimer()
		s := newStage(b, 6)
		if spread {
			s.maxPoll = 600
		}
		cfg := generate.DefaultConfig()
		cfg.Persons, cfg.Events, cfg.Seed = 20000, 200000, 3
		recs, evs := s.resolvedRecords(b, cfg)
		relevant := 0
		for i := range evs {
			if classify(&evs[i].Event).kind != ignored {
				relevant++
			}
		}
		if spread {
			recs = spreadOut(recs)
		}
		s.write(b, recs)
		b.StartTimer()
		start := time.Now()
		procs, stop := s.start(b, 1, DefaultConfig())
		s.waitConsumed(b, 5*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		m := procs[0].m
		b.ReportMetric(float64(len(recs))/elapsed.Seconds(), "events/s")
		b.ReportMetric(testutil.ToFloat64(m.refreshes), "refreshes/op")
		b.ReportMetric(float64(relevant), "views+orders/op")
		b.ReportMetric(testutil.ToFloat64(m.listChanges), "lists/op")
		b.ReportMetric(testutil.ToFloat64(m.modelOrders), "orders-learned/op")
	}
}

// BenchmarkRebuild measures an instance's start: reading the orders
// changelog from the start into the global models (decode, associations,
// customer sample) until it is caught up. 50,000 synthetic orders of 1–30
// items drawn with a Zipf popularity from 4,000 items, each with its
// profile's previous basket and a session view, as the tasks write
// them. Reports orders/s.
//
//	go test -run ^$ -bench Rebuild -benchtime 1x ./processors/recommend/
func BenchmarkRebuild(b *testing.B) {
	s := newStage(b, 1)
	r := rand.New(rand.NewPCG(9, 9))
	zipf := rand.NewZipf(r, 1.1, 20, 3999)
	basket := func() []string {
		n := 1 + r.IntN(30)
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("item-%04d", zipf.Uint64())
		}
		return out
	}
	const orders = 50000
	last := map[string][]string{}
	recs := make([]*kgo.Record, orders)
	for i := range recs {
		p := fmt.Sprintf("profile-%d", r.IntN(orders/4))
		o := orderRecord{Profile: p, Message: fmt.Sprint(i), Time: int64(i) * 1000, Items: basket(), Prev: last[p], Viewed: basket()[:1], Revenue: 10,
			Summary: summary{Orders: 1, Revenue: 10, First: 0, Last: int64(i) * 1000}}
		last[p] = o.Items
		v, err := json.Marshal(&o)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: s.topics.Orders, Key: []byte(p), Value: v}
	}
	s.write(b, recs)
	b.ResetTimer()
	for range b.N {
		m, _ := newMetrics(nil)
		sh := NewShared(DefaultConfig(), m, zap.NewNop())
		start := time.Now()
		bl, err := startBuilder(testkit.Context(b), context.Background(), s.env.Services.KafkaBrokers, s.topics.Orders, sh, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		if err := bl.Wait(testkit.Context(b)); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		bl.Close()
		st, n := sh.Stats()
		if n != orders {
			b.Fatalf("rebuilt %d orders, want %d", n, orders)
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "orders/s")
		b.ReportMetric(float64(st.Pairs), "counters")
	}
}

// BenchmarkSweep measures the pass every task makes over its partition
// after a refit: refreshing every list with the latest associations and
// rescoring every buyer, a chunk per timer firing. The state of 200,000
// generated events (about 11,000 profiles with a list over 6 partitions)
// is built first, and the first generation's sweep finished (not timed);
// then one more order starts a new generation and the timer runs until
// every partition has swept with it. TickInterval is 100 ms here (5 s by
// default, the most a sweep waits to start), so that the time is the
// sweep's. Reports profiles/s.
//
//	go test -run ^$ -bench Sweep -benchtime 1x ./processors/recommend/
func BenchmarkSweep(b *testing.B) {
	const partitions = 6
	s := newStage(b, partitions)
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 20000, 200000, 3
	recs, _ := s.resolvedRecords(b, cfg)
	s.write(b, recs)
	c := DefaultConfig()
	c.TickInterval = 100 * time.Millisecond
	procs, stop := s.start(b, 1, c)
	defer stop()
	s.waitConsumed(b, 5*time.Minute)
	sh := procs[0].Shared()
	rdb := s.env.Redis(b)
	swept := func(id string) bool {
		for p := range int32(partitions) {
			st, err := rdb.HMGet(testkit.Context(b), slotKey(s.env.Services.TopicPrefix+":", s.topics.Input, p, keySweep), "id", "done").Result()
			if err != nil {
				b.Fatal(err)
			}
			if st[0] != id || st[1] != "1" {
				return false
			}
		}
		return true
	}
	waitSwept := func(timeout time.Duration) {
		for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
			if g := sh.Generation(); g != nil && g.Scores != nil && swept(g.ID) {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("no complete sweep within %s", timeout)
			}
		}
	}
	waitSwept(2 * time.Minute)
	lists := int64(0)
	for p := range int32(partitions) {
		n, err := rdb.HLen(testkit.Context(b), slotKey(s.env.Services.TopicPrefix+":", s.topics.Input, p, keyDigest)).Result()
		if err != nil {
			b.Fatal(err)
		}
		lists += n
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		s.write(b, s.encode(b, []schemas.ResolvedEvent{orderEvent("sweeper", fmt.Sprint("sweep-", i), day0.Add(8*24*time.Hour), 5, "A")}))
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			if _, n := sh.Stats(); n > sh.Generation().Orders {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the order did not reach the associations")
			}
		}
		b.StartTimer()
		start := time.Now()
		if _, err := sh.Refit(); err != nil {
			b.Fatal(err)
		}
		waitSwept(5 * time.Minute)
		b.ReportMetric(float64(lists)/time.Since(start).Seconds(), "profiles/s")
	}
	b.ReportMetric(float64(lists), "profiles")
}
