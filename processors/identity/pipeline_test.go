package identity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// stage is one test's identity pipeline: its topics and the processors
// running on them.
type stage struct {
	env                         *testkit.Env
	rdb                         redis.UniversalClient // the graph's Redis
	raw, resolved, merges, dlqT string
	group                       string
}

func newStage(t testing.TB, rawPartitions int32) *stage { return newStageOn(t, rawPartitions, "") }

// newStageOn is newStage with the graph in the Redis (or Redis Cluster)
// redisURL names; empty is the stack's.
func newStageOn(t testing.TB, rawPartitions int32, redisURL string) *stage {
	env := testkit.New(t)
	if redisURL != "" {
		env.Services.RedisURL = redisURL
	}
	s := &stage{env: env, rdb: env.Redis(t), group: env.Services.TopicPrefix + "-identity"} // its keys go when the test ends
	s.raw = env.Topic(t, "events.raw", rawPartitions)
	s.resolved = env.Topic(t, "events.resolved", 4)
	s.merges = env.Topic(t, "identity.merges", 2)
	s.dlqT = env.Topic(t, "events.dlq", 2)
	return s
}

// produce writes generated traffic (invalid lines included) to the raw
// topic and returns the lines and the truth.
func (s *stage) produce(t testing.TB, cfg generate.Config) ([][]byte, *generate.Truth) {
	t.Helper()
	lines, truth := generateLines(t, cfg)
	s.write(t, lines)
	return lines, truth
}

// generateLines returns generated traffic and its truth.
func generateLines(t testing.TB, cfg generate.Config) ([][]byte, *generate.Truth) {
	t.Helper()
	var lines [][]byte
	truth, err := generate.Generate(testkit.Context(t), cfg, generate.SinkFunc(func(_ context.Context, line []byte) error {
		lines = append(lines, slices.Clone(line))
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return lines, truth
}

// write produces lines to the raw topic, invalid ones too.
func (s *stage) write(t testing.TB, lines [][]byte) {
	t.Helper()
	if err := s.writeErr(testkit.Context(t), lines); err != nil {
		t.Fatal(err)
	}
}

// writeErr is write for other goroutines than the test's.
func (s *stage) writeErr(ctx context.Context, lines [][]byte) error {
	p, err := producer.New(ctx, producer.Config{Brokers: s.env.Services.KafkaBrokers,
		RegistryURL: s.env.Services.SchemaRegistryURL, Topic: s.raw})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	w := p.NewLineWriter(ctx, producer.LinesOptions{SendInvalid: true})
	for _, l := range lines {
		if err := w.WriteLine(ctx, l); err != nil {
			return err
		}
	}
	res, err := w.Close(ctx)
	if err != nil || res.Failed > 0 || res.Sent != int64(len(lines)) {
		return fmt.Errorf("producing: %+v, %v", res, err)
	}
	return nil
}

// start runs n identity processors (each its own Processor, Graph and
// group member, like n processes) until the returned stop is called.
func (s *stage) start(t testing.TB, n int) (procs []*identity.Processor, stop func()) {
	t.Helper()
	procs, _, stop = s.startWith(t, n, s.env.Services)
	return procs, stop
}

// startWith is start with other services (a private Redis, say); it also
// returns the runners.
func (s *stage) startWith(t testing.TB, n int, svc config.Services) (procs []*identity.Processor, runners []*processing.Runner, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		m := processing.NewMetrics(nil)
		p, closeFn, err := identity.Open(ctx, svc, defaultSpec(t), m, nil, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeFn) // the graph stays readable after stop
		r, err := processing.New(processing.Config{Name: "identity", Brokers: s.env.Services.KafkaBrokers, Group: s.group,
			Inputs: []string{s.raw}, InstanceID: fmt.Sprintf("%s-%d", s.env.ID, i), Metrics: m, MaxBackoff: 200 * time.Millisecond,
			Journal: p.Journal(), DeadLetterTopic: s.dlqT}, p)
		if err != nil {
			t.Fatal(err)
		}
		procs, runners = append(procs, p), append(runners, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				t.Errorf("runner %d: %v", i, err)
			}
		}()
	}
	return procs, runners, func() { cancel(); wg.Wait() }
}

// defaultSpec is the identity section of the built-in topology, the rules
// `cdp run identity` applies.
func defaultSpec(t testing.TB) topology.IdentitySpec {
	t.Helper()
	tp, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	return tp.Identity
}

// openGraph opens the identity graph of s as `cdp run identity` would.
func openGraph(t testing.TB, s *stage) *identity.Graph {
	t.Helper()
	p, closeFn, err := identity.Open(testkit.Context(t), s.env.Services, defaultSpec(t), processing.NewMetrics(nil), nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return p.Graph()
}

// waitConsumed waits until the group has committed the end of the raw topic.
func (s *stage) waitConsumed(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.waitConsumedFrom(t, timeout, 200*time.Millisecond)
}

// endOffsets sums the end offsets of the raw topic's partitions.
func (s *stage) endOffsets(t testing.TB) int64 {
	t.Helper()
	ends, err := s.env.Admin(t).ListEndOffsets(testkit.Context(t), s.raw)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// waitConsumedFrom is waitConsumed polling every poll; it returns when it
// first saw offsets committed and how many records they covered, and when
// it saw the whole topic committed.
func (s *stage) waitConsumedFrom(t testing.TB, timeout, poll time.Duration) (first time.Time, firstRecords int64, last time.Time) {
	t.Helper()
	adm := s.env.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for {
		ends, err := adm.ListEndOffsets(ctx, s.raw)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := adm.FetchOffsets(ctx, s.group)
		now := time.Now()
		done := err == nil
		var sum int64
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if !ok || c.At < o.Offset {
				done = false
			}
			if ok && c.At > 0 {
				sum += c.At
			}
		})
		if sum > 0 && first.IsZero() {
			first, firstRecords = now, sum
		}
		if done {
			return first, firstRecords, now
		}
		if now.After(deadline) {
			t.Fatalf("the identity group did not consume %s within %s", s.raw, timeout)
		}
		time.Sleep(poll)
	}
}

// readAll reads a topic with read_committed to its end. Everything is
// already written when it is called, so the end is reached when polls stop
// returning records (transaction markers make offsets useless for this).
func (s *stage) readAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	return s.env.ReadAll(t, topic)
}

// resolvedByMessage decodes the resolved topic into message id -> profile
// ids (a duplicate would show as two entries).
func (s *stage) resolvedByMessage(t testing.TB) map[string][]string {
	t.Helper()
	ctx := testkit.Context(t)
	serde := schemas.NewSerde(s.env.Registry(t))
	out := map[string][]string{}
	for _, rec := range s.readAll(t, s.resolved) {
		var r schemas.ResolvedEvent
		if err := serde.DecodeResolved(ctx, rec.Value, &r); err != nil {
			t.Fatalf("decoding resolved record: %v", err)
		}
		if string(rec.Key) != r.ProfileID {
			t.Fatalf("resolved record keyed %q carries profile %q", rec.Key, r.ProfileID)
		}
		out[r.Event.MessageID] = append(out[r.Event.MessageID], r.ProfileID)
	}
	return out
}

// resolvedEachOnce reads the resolved topic and fails the test unless it
// holds each of the truth's valid messages exactly once; it returns what
// resolvedByMessage does.
func (s *stage) resolvedEachOnce(t testing.TB, truth *generate.Truth) map[string][]string {
	t.Helper()
	resolved := s.resolvedByMessage(t)
	if len(resolved) != truth.Counts.Valid {
		t.Errorf("resolved %d distinct messages, truth has %d valid", len(resolved), truth.Counts.Valid)
	}
	for id, ps := range resolved {
		if len(ps) != 1 {
			t.Fatalf("message %s resolved %d times", id, len(ps))
		}
	}
	return resolved
}

// grouping maps each truth identifier ("type:value") to the profile it
// resolves to now.
func grouping(t testing.TB, g *identity.Graph, truth *generate.Truth) map[string]string {
	t.Helper()
	ctx := testkit.Context(t)
	out := map[string]string{}
	for _, grp := range truth.KnowableGroups {
		for _, k := range grp.Identifiers.Keys() {
			typ, val, _ := strings.Cut(k, ":")
			pid, ok, err := g.Lookup(ctx, identity.Identifier{Type: typ, Value: val})
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatalf("identifier %s is not in the graph", k)
			}
			out[k] = pid
		}
	}
	return out
}

// pairwise scores a grouping against the knowable groups: precision is the
// share of identifier pairs put together that belong together, recall the
// share of pairs that belong together that were put together.
func pairwise(pred map[string]string, truth *generate.Truth) (precision, recall float64) {
	pairs := func(n int) float64 { return float64(n*(n-1)) / 2 }
	cells := map[[2]string]int{}
	var truePairs float64
	for gi, grp := range truth.KnowableGroups {
		keys := grp.Identifiers.Keys()
		truePairs += pairs(len(keys))
		for _, k := range keys {
			cells[[2]string{fmt.Sprint(gi), pred[k]}]++
		}
	}
	profiles := map[string]int{}
	for _, p := range pred {
		profiles[p]++
	}
	var predPairs, tp float64
	for _, n := range profiles {
		predPairs += pairs(n)
	}
	for _, n := range cells {
		tp += pairs(n)
	}
	precision, recall = 1, 1
	if predPairs > 0 {
		precision = tp / predPairs
	}
	if truePairs > 0 {
		recall = tp / truePairs
	}
	return precision, recall
}

// partitionOf returns a grouping as a sorted list of sorted identifier
// sets, so two runs with different profile ids compare equal.
func partitionOf(pred map[string]string) []string {
	byProfile := map[string][]string{}
	for k, p := range pred {
		byProfile[p] = append(byProfile[p], k)
	}
	var out []string
	for _, ks := range byProfile {
		sort.Strings(ks)
		out = append(out, strings.Join(ks, ","))
	}
	sort.Strings(out)
	return out
}

var reasonCode = map[string]string{
	generate.ReasonMissingEventName: "missing_field",
	generate.ReasonNoIdentifier:     "missing_identifier",
	generate.ReasonTimestamp1970:    "bad_timestamp",
	generate.ReasonTimestamp2100:    "bad_timestamp",
	generate.ReasonOversize:         "oversize",
}

// TestPipelineMatchesTruth runs generated traffic (with duplicates and
// invalid events) through Kafka and four concurrent identity processors,
// and checks every output against the generator's ground truth: each valid
// event resolved exactly once, each duplicate dropped, each invalid event
// dead-lettered with its reason, the grouping of identifiers scored by
// pairwise precision and recall (>= 0.99 each), no profile with two user
// ids, and the same grouping as one processor alone on the same events.
func TestPipelineMatchesTruth(t *testing.T) { pipelineMatchesTruth(t, "") }

// TestPipelineMatchesTruthOnRedisCluster is the same on a Redis Cluster
// of three redis-server processes.
func TestPipelineMatchesTruthOnRedisCluster(t *testing.T) {
	t.Parallel() // its own Redis
	pipelineMatchesTruth(t, testkit.StartRedisCluster(t, 3).URL())
}

func pipelineMatchesTruth(t *testing.T, redisURL string) {
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 400, 12000, 42
	cfg.DupShare, cfg.InvalidShare, cfg.LateShare = 0.03, 0.02, 0.05

	four := newStageOn(t, 4, redisURL)
	_, truth := four.produce(t, cfg)
	procs, stop := four.start(t, 4)
	four.waitConsumed(t, 2*time.Minute)
	stop()

	// Every valid message exactly once; nothing else.
	resolved := four.resolvedEachOnce(t, truth)
	for _, iv := range truth.InvalidEvents {
		if _, ok := resolved[iv.MessageID]; ok {
			t.Errorf("invalid event %s (%s) was resolved", iv.MessageID, iv.Reason)
		}
	}
	// Every invalid line dead-lettered with the code its reason implies.
	dead := map[string]string{}
	for _, rec := range four.readAll(t, four.dlqT) {
		e, err := dlq.Parse(rec)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := schemas.NewSerde(four.env.Registry(t)).Decode(testkit.Context(t), e.Value)
		id := ev.MessageID
		if err != nil {
			id = fmt.Sprintf("undecodable@%d", e.SourceOffset)
		}
		dead[id] = e.Code
	}
	if len(dead) != truth.Counts.Invalid {
		t.Errorf("%d dead letters, truth has %d invalid lines", len(dead), truth.Counts.Invalid)
	}
	for _, iv := range truth.InvalidEvents {
		if got, want := dead[iv.MessageID], reasonCode[iv.Reason]; got != want {
			t.Errorf("invalid event %s (%s): dead-letter code %q, want %q", iv.MessageID, iv.Reason, got, want)
		}
	}

	pred := grouping(t, procs[0].Graph(), truth)
	precision, recall := pairwise(pred, truth)
	t.Logf("pairwise precision %.4f, recall %.4f over %d identifiers in %d knowable groups", precision, recall, len(pred), len(truth.KnowableGroups))
	if precision < 0.99 || recall < 0.99 {
		t.Errorf("pairwise precision %.4f / recall %.4f, want both >= 0.99", precision, recall)
	}
	userIDs := map[string]int{}
	for k, p := range pred {
		if strings.HasPrefix(k, identity.TypeUserID+":") {
			userIDs[p]++
			if userIDs[p] > 1 {
				t.Errorf("profile %s holds more than one user_id", p)
			}
		}
	}
	// Every resolved event names the profile its identifiers resolve to now,
	// or one merged into it.
	for _, p := range procs[1:] {
		if got := grouping(t, p.Graph(), truth); !slices.Equal(partitionOf(got), partitionOf(pred)) {
			t.Fatalf("two instances see different graphs")
		}
	}

	// The same events through one processor give the same grouping.
	one := newStageOn(t, 4, redisURL)
	one.produce(t, cfg)
	procsOne, stopOne := one.start(t, 1)
	one.waitConsumed(t, 2*time.Minute)
	stopOne()
	if a, b := partitionOf(grouping(t, procsOne[0].Graph(), truth)), partitionOf(pred); !slices.Equal(a, b) {
		t.Errorf("one instance grouped the identifiers into %d profiles, four concurrent instances into %d", len(a), len(b))
	}
}

// TestBadInputIsDeadLettered feeds ten kinds of broken records straight to
// the raw topic and finds each in the dead-letter topic with its reason and
// its original bytes; a good record in between is resolved, so nothing is
// lost and nothing stops the partition.
func TestBadInputIsDeadLettered(t *testing.T) {
	s := newStage(t, 1)
	ctx := testkit.Context(t)
	serde := schemas.NewSerde(s.env.Registry(t))
	good := func(mut func(*schemas.Event)) []byte {
		ev, err := schemas.ParseJSON([]byte(`{"type":"track","event":"Product Viewed","messageId":"m-good","anonymousId":"a-1","timestamp":"2026-11-28T10:00:00Z","properties":{"product_id":"p-1","price":12.5}}`))
		if err != nil {
			t.Fatal(err)
		}
		ev.ReceivedAt = time.Now().UTC().Truncate(time.Millisecond)
		ev.SentAt, ev.OriginalTimestamp = ev.ReceivedAt, ev.ReceivedAt
		if mut != nil {
			mut(&ev)
		}
		b, err := serde.Encode(ctx, s.raw, ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := good(nil)
	cases := []struct {
		name, code string
		value      []byte
	}{
		{"empty value", schemas.CodeEmpty, nil},
		{"wrong magic byte", schemas.CodeWrongMagic, append([]byte{1}, valid[1:]...)},
		{"JSON instead of Avro", schemas.CodeWrongMagic, []byte(`{"type":"track"}`)},
		{"truncated header", schemas.CodeTruncated, valid[:3]},
		{"truncated Avro", schemas.CodeTruncated, valid[:len(valid)/2]},
		{"unknown schema id", schemas.CodeUnknownSchemaID, append([]byte{0, 0x7f, 0, 0, 1}, valid[5:]...)},
		{"garbage Avro", schemas.CodeBadAvro, append(slices.Clone(valid[:5]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
		{"missing identifiers", schemas.CodeMissingIdentifier, good(func(e *schemas.Event) { e.AnonymousID = "" })},
		{"track without event name", schemas.CodeMissingField, good(func(e *schemas.Event) { e.Event = ""; e.MessageID = "m-noname" })},
		{"absurd timestamp", schemas.CodeBadTimestamp, good(func(e *schemas.Event) {
			e.MessageID = "m-2100"
			e.OriginalTimestamp = e.OriginalTimestamp.AddDate(70, 0, 0)
			e.SentAt, e.ReceivedAt = e.OriginalTimestamp, e.OriginalTimestamp
		})},
		{"oversize", schemas.CodeOversize, good(func(e *schemas.Event) {
			e.MessageID = "m-big"
			e.Properties = map[string]json.RawMessage{"blob": schemas.JSONString(strings.Repeat("x", 40000))}
		})},
		{"blocked identifiers only", identity.CodeNoIdentifier, good(func(e *schemas.Event) { e.MessageID = "m-blocked"; e.AnonymousID = "undefined" })},
	}
	cl := s.env.Kafka(t)
	for i, tc := range cases {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: s.raw, Key: []byte(tc.name), Value: tc.value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if i == len(cases)/2 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: s.raw, Value: valid}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, stop := s.start(t, 1)
	s.waitConsumed(t, time.Minute)
	stop()

	got := map[string]dlq.Entry{}
	for _, rec := range s.readAll(t, s.dlqT) {
		e, err := dlq.Parse(rec)
		if err != nil {
			t.Fatal(err)
		}
		got[string(e.Key)] = e
	}
	if len(got) != len(cases) {
		t.Errorf("%d dead letters for %d bad records", len(got), len(cases))
	}
	for _, tc := range cases {
		e, ok := got[tc.name]
		switch {
		case !ok:
			t.Errorf("%s: not in the dead-letter topic", tc.name)
		case e.Code != tc.code:
			t.Errorf("%s: code %q (%s), want %q", tc.name, e.Code, e.Reason, tc.code)
		case string(e.Value) != string(tc.value):
			t.Errorf("%s: the dead letter does not carry the original bytes", tc.name)
		case e.Reason == "" || e.SourceTopic != s.raw:
			t.Errorf("%s: reason %q, source %q", tc.name, e.Reason, e.SourceTopic)
		}
	}
	if r := s.resolvedByMessage(t); len(r) != 1 || len(r["m-good"]) != 1 {
		t.Errorf("resolved %v, want only m-good once", r)
	}
}
