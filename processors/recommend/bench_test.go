package recommend

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamcdp/streamcdp/internal/generate"
)

// BenchmarkPipeline measures the recommend processor end to end on the
// local stack: 200,000 generated resolved events (20,000 persons, a week of
// traffic: 78% product views, 1.3% orders) are produced to a 6-partition
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
