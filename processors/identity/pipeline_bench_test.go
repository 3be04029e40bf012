package identity_test

import (
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/generate"
)

// BenchmarkIdentityPipeline measures the identity processor end to end on
// the local stack: records are produced to the raw topic first (not timed),
// then the timer covers consuming, decoding, validating, resolving in Redis,
// producing resolved events and merges, and committing, until the group has
// committed the whole topic. Reports events/s.
//
//	go test -run ^$ -bench IdentityPipeline -benchtime 1x ./processors/identity/
func BenchmarkIdentityPipeline(b *testing.B) {
	for range b.N {
		b.StopTimer()
		bt := b
		s := newStage(bt, 6)
		cfg := generate.DefaultConfig()
		cfg.Persons, cfg.Events, cfg.Seed = 20000, 200000, 3
		lines, _ := generateLines(bt, cfg)
		s.write(bt, lines)
		b.StartTimer()
		start := time.Now()
		_, stop := s.start(bt, 2)
		s.waitConsumed(bt, 5*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		b.ReportMetric(float64(len(lines))/elapsed.Seconds(), "events/s")
	}
}
