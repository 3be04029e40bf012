package recommend

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// stage is one test's recommend pipeline: its topics, and the processors
// running on them.
type stage struct {
	env    *testkit.Env
	topics Topics
	group  string
	serde  *schemas.Serde
	// maxPoll overrides the runner's MaxPollRecords (0: its default).
	maxPoll int
}

func newStage(t testing.TB, inputPartitions int32) *stage { return newStageOn(t, inputPartitions, "") }

// newStageOn is newStage with the state in the Redis (or Redis Cluster)
// redisURL names; empty is the stack's.
func newStageOn(t testing.TB, inputPartitions int32, redisURL string) *stage {
	env := testkit.New(t)
	if redisURL != "" {
		env.Services.RedisURL = redisURL
	}
	env.Redis(t) // the state's keys go when the test ends
	s := &stage{env: env, group: env.Services.TopicPrefix + "-recommend", serde: schemas.NewSerde(env.Registry(t))}
	s.topics = Topics{
		Input:           env.Topic(t, "events.resolved", inputPartitions),
		Recommendations: env.Topic(t, "recommendations", 3),
		Scores:          env.Topic(t, "profiles.scores", 3),
		Orders:          env.Topic(t, "recommend.orders", 3),
		DLQ:             env.Topic(t, "events.dlq", 1),
	}
	return s
}

// testConfig refits every second and looks for refits five times a second,
// so tests see scores without waiting for the production schedule.
func testConfig() Config {
	c := DefaultConfig()
	c.RefitInterval, c.TickInterval, c.MinFitCustomers = time.Second, 200*time.Millisecond, 10
	return c
}

// resolvedRecords turns generated traffic into resolved events keyed by a
// stand-in profile id (the user id, else the anonymous id: identity
// resolution is not what these tests are about), encoded for the stage's
// input in generation order.
func (s *stage) resolvedRecords(t testing.TB, cfg generate.Config) ([]*kgo.Record, []schemas.ResolvedEvent) {
	t.Helper()
	ctx := testkit.Context(t)
	var evs []schemas.ResolvedEvent
	_, err := generate.Generate(ctx, cfg, generate.SinkFunc(func(_ context.Context, line []byte) error {
		ev, err := schemas.ParseJSON(line)
		if err != nil {
			return err
		}
		p := ev.UserID
		if p == "" {
			p = ev.AnonymousID
		}
		evs = append(evs, schemas.ResolvedEvent{ProfileID: p, Timestamp: ev.EventTime(time.Time{}), Event: ev})
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return s.encode(t, evs), evs
}

func (s *stage) encode(t testing.TB, evs []schemas.ResolvedEvent) []*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t)
	recs := make([]*kgo.Record, len(evs))
	for i := range evs {
		v, err := s.serde.EncodeResolved(ctx, s.topics.Input, &evs[i])
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: s.topics.Input, Key: []byte(evs[i].ProfileID), Value: v}
	}
	return recs
}

// write produces records in order (one producer: per-partition order is
// the slice's).
func (s *stage) write(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	if err := s.writeWith(testkit.Context(t), s.env.Kafka(t, kgo.ProducerLinger(5*time.Millisecond)), recs); err != nil {
		t.Fatal(err)
	}
}

// writeWith is write for other goroutines than the test's, with cl.
func (s *stage) writeWith(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing %d records: %w", len(recs), err)
	}
	return nil
}

// start runs n processors (each its own Processor, Shared state and group
// member, like n processes) until the returned stop is called.
func (s *stage) start(t testing.TB, n int, cfg Config) (procs []*Processor, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		m := processing.NewMetrics(nil)
		p, closeFn, err := OpenWith(testkit.Context(t), s.env.Services, cfg, s.topics, m, nil, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		r, err := processing.New(processing.Config{Name: processorName, Brokers: s.env.Services.KafkaBrokers, Group: s.group,
			Inputs: []string{s.topics.Input}, InstanceID: fmt.Sprintf("%s-%d", s.env.ID, i), Metrics: m, MaxBackoff: 200 * time.Millisecond,
			Journal: p.Journal(), DeadLetterTopic: s.topics.DLQ, MaxPollRecords: s.maxPoll}, p)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closeFn()
			if err := r.Run(ctx); err != nil {
				t.Errorf("runner %d: %v", i, err)
			}
		}()
	}
	return procs, func() { cancel(); wg.Wait() }
}

// waitConsumed waits until the group has committed the end of the input.
func (s *stage) waitConsumed(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.env.WaitConsumed(t, timeout, 100*time.Millisecond, testkit.Consumed{Group: s.group, Topics: []string{s.topics.Input}})
}

// decodeTopic decodes every record of topic (Avro, read_committed) with
// conv, per profile in topic order, checking that each is keyed by its
// profile.
func decodeTopic[T any](t testing.TB, s *stage, topic string, conv func(m map[string]any) (string, T)) map[string][]T {
	t.Helper()
	ctx := testkit.Context(t)
	out := map[string][]T{}
	for _, rec := range s.env.ReadAll(t, topic) {
		n, err := s.serde.DecodeNative(ctx, rec.Value, "")
		if err != nil {
			t.Fatalf("decoding a record of %s: %v", topic, err)
		}
		profile, v := conv(n.(map[string]any))
		if string(rec.Key) != profile {
			t.Fatalf("a record of %s keyed %q carries profile %q", topic, rec.Key, profile)
		}
		out[profile] = append(out[profile], v)
	}
	return out
}

// lists decodes the recommendations topic.
func (s *stage) lists(t testing.TB) map[string][]List {
	return decodeTopic(t, s, s.topics.Recommendations, func(m map[string]any) (string, List) {
		l := List{ProfileID: m["profile_id"].(string), Version: m["version"].(int64), Model: m["model"].(string), Time: m["time"].(time.Time).UTC()}
		if tr, ok := m["trigger_message_id"].(map[string]any); ok {
			l.TriggerMessageID = tr["string"].(string)
		}
		for _, it := range m["items"].([]any) {
			im := it.(map[string]any)
			l.Items = append(l.Items, Item{ProductID: im["product_id"].(string), Score: im["score"].(float64), Reason: im["reason"].(map[string]any)["string"].(string)})
		}
		return l.ProfileID, l
	})
}

// scoreRecords decodes the scores topic.
func (s *stage) scoreRecords(t testing.TB) map[string][]Scores {
	return decodeTopic(t, s, s.topics.Scores, func(m map[string]any) (string, Scores) {
		opt := func(k string) *float64 {
			if u, ok := m[k].(map[string]any); ok {
				v := u["double"].(float64)
				return &v
			}
			return nil
		}
		sc := Scores{ProfileID: m["profile_id"].(string), Version: m["version"].(int64), Time: m["time"].(time.Time).UTC(),
			Cause: m["cause"].(string), Model: m["model"].(string), Orders: m["orders"].(int64), Revenue: m["revenue"].(float64),
			FirstOrder: m["first_order"].(time.Time).UTC(), LastOrder: m["last_order"].(time.Time).UTC(), RecencyDays: m["recency_days"].(float64),
			R: int(m["r"].(int32)), F: int(m["f"].(int32)), M: int(m["m"].(int32)), RFMSegment: m["rfm_segment"].(string),
			ExpectedOrders: opt("expected_orders"), CLV: opt("clv"), PAlive: opt("p_alive"), ChurnRisk: opt("churn_risk"),
			HorizonDays: int(m["horizon_days"].(int32)), ChurnDays: int(m["churn_days"].(int32))}
		return sc.ProfileID, sc
	})
}

// orderRecords decodes the orders changelog per profile, in topic order.
func (s *stage) orderRecords(t testing.TB) map[string][]orderRecord {
	t.Helper()
	out := map[string][]orderRecord{}
	for _, rec := range s.env.ReadAll(t, s.topics.Orders) {
		var o orderRecord
		if err := unmarshal(rec.Value, "order", &o); err != nil {
			t.Fatal(err)
		}
		out[o.Profile] = append(out[o.Profile], o)
	}
	return out
}

// hashes returns every field of the stage's state hash suffix over all
// input partitions: profile -> stored JSON.
func (s *stage) hashes(t testing.TB, suffix string, partitions int32) map[string]string {
	t.Helper()
	rdb := s.env.Redis(t)
	out := map[string]string{}
	for p := range partitions {
		m, err := rdb.HGetAll(testkit.Context(t), slotKey(s.env.Services.TopicPrefix+":", s.topics.Input, p, suffix)).Result()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			if _, dup := out[k]; dup {
				t.Fatalf("profile %s has state in two partitions", k)
			}
			out[k] = v
		}
	}
	return out
}

// reader is the stage's read API.
func (s *stage) reader(t testing.TB, partitions int) *Reader {
	return NewReader(s.env.Redis(t), s.env.Services.TopicPrefix+":", s.topics.Input, partitions)
}

// checkVersions checks that each profile's records carry versions 1..n,
// each once and in order: no output lost or repeated.
func checkVersions[T any](t testing.TB, what string, recs map[string][]T, version func(T) int64) {
	t.Helper()
	bad := 0
	for p, rs := range recs {
		vs := make([]int64, len(rs))
		for i, r := range rs {
			vs[i] = version(r)
		}
		want := make([]int64, len(rs))
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(vs, want) {
			bad++
			if bad <= 5 {
				t.Errorf("%s of %s: versions %v, want 1..%d in order", what, p, vs, len(rs))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d profiles with lost, repeated or reordered versions", what, bad, len(recs))
	}
}
