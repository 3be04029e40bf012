package identity_test

import (
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/identity"
)

// BenchmarkIdentityPipeline measures the identity processor end to end on
// the local stack: records are produced to the raw topic first (not timed),
// then the timer covers consuming, decoding, validating, resolving in Redis,
// producing resolved events and merges, and committing, until the group has
// committed the whole topic. Reports events/s.
//
//	go test -run ^$ -bench 'IdentityPipeline$' -benchtime 1x -count 5 ./processors/identity/
func BenchmarkIdentityPipeline(b *testing.B) { benchIdentityPipeline(b, "", 2) }

// BenchmarkIdentityPipelineOneInstance is the same with one instance of the
// processor: what a single process gets through.
//
//	go test -run ^$ -bench IdentityPipelineOneInstance -benchtime 1x -count 5 ./processors/identity/
func BenchmarkIdentityPipelineOneInstance(b *testing.B) { benchIdentityPipeline(b, "", 1) }

// BenchmarkIdentityPipelineCluster is the same with the identity graph on
// a Redis Cluster of three redis-server processes (started once, with the
// local stack's persistence: appendonly, appendfsync always), on the same
// two cores.
//
//	go test -run ^$ -bench IdentityPipelineCluster -benchtime 1x -count 5 ./processors/identity/
func BenchmarkIdentityPipelineCluster(b *testing.B) {
	benchIdentityPipeline(b, testkit.StartRedisClusterWith(b, 3, "--appendonly", "yes", "--appendfsync", "always").URL(), 2)
}

func benchIdentityPipeline(b *testing.B, redisURL string, instances int) {
	for range b.N {
		b.StopTimer()
		s := newStageOn(b, 6, redisURL)
		cfg := generate.DefaultConfig()
		cfg.Persons, cfg.Events, cfg.Seed = 20000, 200000, 3
		lines, _ := generateLines(b, cfg)
		s.write(b, lines)
		var usec0, cpu0 int64
		// Redis' script time and CPU per event (on a Cluster, of its three
		// nodes together; the graph's node does nearly all of it).
		usec0, cpu0 = identity.EvalshaUsec(b, s.rdb), identity.RedisCPU(b, s.rdb)
		b.StartTimer()
		start := time.Now()
		_, stop := s.start(b, instances)
		first, firstRecords, last := s.waitConsumedFrom(b, 5*time.Minute, 50*time.Millisecond)
		elapsed := last.Sub(start)
		b.StopTimer()
		stop()
		// events/s counts from the start of the processors, so it includes
		// joining the group and the first poll (0.5–1 s of a 4–6 s run);
		// steady-events/s counts from the first offsets committed to the
		// last: the rate once running.
		b.ReportMetric(float64(len(lines))/elapsed.Seconds(), "events/s")
		if total := s.endOffsets(b); total != int64(len(lines)) {
			b.Fatalf("the raw topic holds %d offsets for %d lines", total, len(lines))
		}
		if rest := last.Sub(first); rest > 0 {
			b.ReportMetric(float64(int64(len(lines))-firstRecords)/rest.Seconds(), "steady-events/s")
		}
		b.ReportMetric(float64(identity.EvalshaUsec(b, s.rdb)-usec0)/float64(len(lines)), "redis-us/event")
		if cpu0 >= 0 {
			b.ReportMetric(float64(identity.RedisCPU(b, s.rdb)-cpu0)/float64(len(lines))/1e3, "redis-cpu-us/event")
		}
	}
}
