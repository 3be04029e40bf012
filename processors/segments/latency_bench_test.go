package segments

import (
	"context"
	"flag"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

var latencyRate = flag.Int("latency-rate", 10_000, "events/s of BenchmarkEventToMembershipLatency")

// BenchmarkEventToMembershipLatency measures the whole real-time path:
// generated events are produced to the raw topic at a steady rate (default
// 10,000/s, 20 s), and identity, features and segments run in this process
// on the local stack. For every membership change an event caused, the
// latency is the moment the change was read (read_committed) minus the
// moment its event was produced. Reports p50, p95 and p99, and the rate
// reached.
//
//	go test -run ^$ -bench EventToMembershipLatency -benchtime 1x ./processors/segments/ [-args -latency-rate 2000]
func BenchmarkEventToMembershipLatency(b *testing.B) {
	rate, seconds := *latencyRate, 20
	for range b.N {
		b.StopTimer()
		fspec, sspec := defaultSpecs(b)
		pl := newPipelineN(b, fspec, sspec, nil, 6)
		raw := pl.env.Topic(b, "events.raw", 6)
		topo, err := topology.Default()
		if err != nil {
			b.Fatal(err)
		}
		// Events, encoded before the clock starts.
		cfg := generate.DefaultConfig()
		cfg.Persons, cfg.Events, cfg.Seed = 20_000, rate*seconds, 5
		cfg.Start = time.Now().Add(-time.Hour)
		cfg.Duration = time.Hour
		serde := schemas.NewSerde(pl.env.Registry(b))
		var recs []*kgo.Record
		ctx := testkit.Context(b)
		if _, err := generate.Generate(ctx, cfg, generate.SinkFunc(func(_ context.Context, line []byte) error {
			ev, err := schemas.ParseJSON(line)
			if err != nil {
				return nil
			}
			v, err := serde.Encode(ctx, raw, ev)
			if err != nil {
				return err
			}
			key := ev.AnonymousID
			if key == "" {
				key = ev.UserID
			}
			recs = append(recs, &kgo.Record{Topic: raw, Key: []byte(key), Value: v, Headers: []kgo.RecordHeader{{Key: "m", Value: []byte(ev.MessageID)}}})
			return nil
		})); err != nil {
			b.Fatal(err)
		}

		rdb, err := config.NewRedis(pl.env.Services.RedisURL)
		if err != nil {
			b.Fatal(err)
		}
		m := processing.NewMetrics(nil)
		idp, closeID, err := identity.Open(ctx, pl.env.Services, topo.Identity, m, nil, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		defer closeID()
		stopI := pl.run(b, "identity", pl.env.Services.TopicPrefix+"-identity", []string{raw}, idp, idp.Journal(), nil, m, rdb.Close)
		defer stopI()
		stopF := pl.startFeatures(b)
		defer stopF()
		stopS := pl.startSegments(b)
		defer stopS()
		pl.settle(b) // joined, backfill of the empty store done

		// Read memberships while producing.
		var mu sync.Mutex
		sent := map[string]time.Time{}
		var lat []time.Duration
		cctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := pl.env.Kafka(b, kgo.ConsumeTopics(pl.membership), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(20*time.Millisecond))
			for cctx.Err() == nil {
				fs := cl.PollFetches(cctx)
				now := time.Now()
				fs.EachRecord(func(r *kgo.Record) {
					native, err := pl.serde.DecodeNative(cctx, r.Value, schemas.SegmentMembershipSchema)
					if err != nil {
						return
					}
					tr, _ := native.(map[string]any)["trigger_message_id"].(map[string]any)
					id, _ := tr["string"].(string)
					mu.Lock()
					if at, ok := sent[id]; ok {
						lat = append(lat, now.Sub(at))
					}
					mu.Unlock()
				})
			}
		}()

		prod := pl.env.Kafka(b, kgo.ProducerLinger(0))
		b.StartTimer()
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		per := rate / 100
		for i := 0; i < len(recs); i += per {
			<-tick.C
			now := time.Now()
			mu.Lock()
			for _, r := range recs[i:min(i+per, len(recs))] {
				sent[string(r.Headers[0].Value)] = now
			}
			mu.Unlock()
			for _, r := range recs[i:min(i+per, len(recs))] {
				prod.Produce(ctx, r, nil)
			}
		}
		tick.Stop()
		if err := prod.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		produced := time.Since(start)
		b.StopTimer()
		pl.env.WaitConsumed(b, 5*time.Minute, 500*time.Millisecond,
			testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-identity", Topics: []string{raw}},
			testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-features", Topics: []string{pl.resolved, pl.merges, pl.fold}},
			testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-segments", Topics: []string{pl.changes}})
		time.Sleep(time.Second)
		cancel()
		wg.Wait()
		mu.Lock()
		slices.Sort(lat)
		n := len(lat)
		mu.Unlock()
		if n == 0 {
			b.Fatal("no membership change caused by an event was read")
		}
		q := func(p float64) float64 { return float64(lat[min(n-1, int(p*float64(n)))].Microseconds()) / 1000 }
		b.ReportMetric(float64(len(recs))/produced.Seconds(), "events/s")
		b.ReportMetric(q(0.50), "p50-ms")
		b.ReportMetric(q(0.95), "p95-ms")
		b.ReportMetric(q(0.99), "p99-ms")
		b.Logf("%d events in %s; %d membership changes caused by events; latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms",
			len(recs), produced.Round(time.Millisecond), n, q(0.5), q(0.95), q(0.99), float64(lat[n-1].Microseconds())/1000)
	}
}
