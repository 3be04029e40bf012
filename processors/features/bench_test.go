package features

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/keyspace"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

// generatedRecords is generated e-commerce traffic as resolved events:
// each valid event is given the profile of its user id, else of its
// anonymous id (identity's work, without merges). It returns the records
// and the number of profiles.
func (s *stage) generatedRecords(t testing.TB, persons, events int) ([]*kgo.Record, int) {
	t.Helper()
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = persons, events, 3
	ctx := context.Background()
	var recs []*kgo.Record
	profiles := map[string]bool{}
	_, err := generate.Generate(ctx, cfg, generate.SinkFunc(func(_ context.Context, line []byte) error {
		ev, err := schemas.ParseJSON(line)
		if err != nil || validate.Event(&ev, len(line), time.Now()) != nil {
			return nil
		}
		id := "a:" + ev.AnonymousID
		if ev.UserID != "" {
			id = "u:" + ev.UserID
		}
		profiles[id] = true
		r := schemas.ResolvedEvent{ProfileID: id, Timestamp: ev.EventTime(ev.ReceivedAt), Event: ev}
		v, err := s.serde.EncodeResolved(ctx, s.resolved, &r)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: s.resolved, Key: []byte(id), Value: v})
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return recs, len(profiles)
}

// waitResolved waits until the group committed the end of the resolved
// topic (the benchmark has no merges, so nothing else is left then).
func (s *stage) waitResolved(t testing.TB, timeout time.Duration) {
	t.Helper()
	adm := s.env.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, s.resolved)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not consumed within %s", timeout)
		}
		committed, err := adm.FetchOffsets(ctx, s.group)
		if err != nil {
			continue
		}
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if o.Offset > 0 && (!ok || c.At < o.Offset) {
				done = false
			}
		})
		if done {
			return
		}
	}
}

// redisCPU is the server's CPU seconds (user + system) so far.
func redisCPU(t testing.TB, rdb redis.UniversalClient) float64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

// stateBytes is the memory of the partitions' state hashes and their
// profile count.
func (s *stage) stateBytes(t testing.TB, rdb redis.UniversalClient) (bytes, profiles int64) {
	t.Helper()
	ctx := testkit.Context(t)
	l := keyspace.New("features", s.env.RedisPrefix(), s.partitions)
	for p := range s.partitions {
		key := l.Key(int32(p), "s")
		n, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		c, err := rdb.HLen(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		bytes += n
		profiles += c
	}
	return bytes, profiles
}

// BenchmarkFeaturesPipeline measures the features processor end to end on
// the local stack with the default feature set: generated traffic is
// produced to the resolved topic first (not timed), then one processor
// consumes it, computes the features, writes Redis and emits changes,
// until the group committed the whole topic. Reports events/s, Redis CPU
// per event and the stored bytes per profile.
//
//	go test -run ^$ -bench FeaturesPipeline -benchtime 1x ./processors/features/
func BenchmarkFeaturesPipeline(b *testing.B) {
	for range b.N {
		b.StopTimer()
		s := newStage(b, 6, defaultSet(b))
		recs, profiles := s.generatedRecords(b, 20000, 200000)
		s.produce(b, recs)
		rdb := s.env.Redis(b)
		cpu0 := redisCPU(b, rdb)
		b.StartTimer()
		start := time.Now()
		stop := s.start(b, 1)
		s.waitResolved(b, 10*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		cpu := redisCPU(b, rdb) - cpu0
		bytes, n := s.stateBytes(b, rdb)
		b.ReportMetric(float64(len(recs))/elapsed.Seconds(), "events/s")
		b.ReportMetric(cpu/float64(len(recs))*1e6, "redis-µs/event")
		b.ReportMetric(float64(bytes)/float64(n), "B/profile")
		b.Logf("%d events of %d profiles in %s; %d profiles stored in %d bytes", len(recs), profiles, elapsed.Round(time.Millisecond), n, bytes)
	}
}
