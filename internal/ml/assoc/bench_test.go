package assoc

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchStream is a retail-like stream: 4,000 items with Zipf popularity,
// baskets of 1–30 items (mean 15.5, the UCI median is 15), 2,000 profiles.
func benchStream() ([][]string, []string) {
	baskets := zipfBaskets(42, 20000, 4000, 30)
	profiles := make([]string, 2000)
	for i := range profiles {
		profiles[i] = fmt.Sprintf("p%04d", i)
	}
	return baskets, profiles
}

func warmRecommender(baskets [][]string, profiles []string) *Recommender {
	r := NewRecommender(Config{}, DefaultHistoryConfig())
	for i, b := range baskets {
		r.AddBasket(profiles[i%len(profiles)], b, t0.Add(time.Duration(i)*time.Minute))
	}
	return r
}

// BenchmarkAddBasket measures the incremental update of a warm model: one
// order (transition from the profile's previous basket, the basket's pairs,
// the history) per iteration.
func BenchmarkAddBasket(b *testing.B) {
	baskets, profiles := benchStream()
	r := warmRecommender(baskets, profiles)
	items := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		bk := baskets[i%len(baskets)]
		items += len(bk)
		r.AddBasket(profiles[(i+7)%len(profiles)], bk, t0.Add(time.Duration(len(baskets)+i)*time.Minute))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
	b.ReportMetric(float64(items)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkRecommend measures one top-10 query on a warm model (profiles
// with about ten baskets, so about 100 remembered items): with the default
// options, and with the bought-together part weighed as well (50 strongest
// neighbours of each history item).
func BenchmarkRecommend(b *testing.B) {
	baskets, profiles := benchStream()
	r := warmRecommender(baskets, profiles)
	now := t0.Add(time.Duration(len(baskets)) * time.Minute)
	var hist int
	for _, p := range profiles {
		hist += len(r.History().Snapshot(p, now).Items)
	}
	together := DefaultOptions()
	together.Mix.Together, together.Measure = 0.2, Jaccard
	for _, c := range []struct {
		name string
		o    Options
	}{{"default", DefaultOptions()}, {"with-together", together}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if recs := r.Recommend(profiles[i%len(profiles)], now, c.o); len(recs) != c.o.K {
					b.Fatalf("%d recommendations, want %d", len(recs), c.o.K)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
			b.ReportMetric(float64(hist)/float64(len(profiles)), "history-items")
		})
	}
}

// BenchmarkMemory reports the heap held by a model per counter, and fails
// if the counters exceed the bound.
func BenchmarkMemory(b *testing.B) {
	baskets, profiles := benchStream()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := New(Config{})
		prev := map[string][]string{}
		for i, bk := range baskets {
			p := profiles[i%len(profiles)]
			m.AddTransition(prev[p], bk)
			m.AddBasket(bk)
			prev[p] = bk
		}
		clear(prev)
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := m.Stats()
		if st.Pairs > m.MaxPairs() {
			b.Fatalf("%d counters exceed the bound %d", st.Pairs, m.MaxPairs())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Pairs), "B/counter")
		b.ReportMetric(float64(st.Pairs), "counters")
		b.ReportMetric(float64(m.MaxPairs()), "bound")
		runtime.KeepAlive(m)
	}
}
