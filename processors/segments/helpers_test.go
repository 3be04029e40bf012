package segments

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features"
	fdef "github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// clock is a simulated clock the processors and their runners read, so a
// test decides when windows fall.
type clock struct{ ms atomic.Int64 }

func (c *clock) Now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Set(t time.Time)     { c.ms.Store(t.UnixMilli()) }
func (c *clock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// pipeline is one test's features and segments processors and topics.
type pipeline struct {
	env                                                    *testkit.Env
	resolved, merges, fold, changes, membership, audiences string
	dlqT                                                   string
	scores                                                 string // set by withScores
	fset                                                   *fdef.Set
	rules                                                  *rules.Set
	serde                                                  *schemas.Serde
	clock                                                  *clock
	parts                                                  int
}

// defaultSpecs are the built-in topology's features and segments.
func defaultSpecs(t testing.TB) (fdef.Spec, rules.Spec) {
	t.Helper()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	return topo.Features, topo.Segments
}

func newPipeline(t testing.TB, fspec fdef.Spec, sspec rules.Spec, clk *clock) *pipeline {
	return newPipelineN(t, fspec, sspec, clk, 4)
}

// newPipelineN is newPipeline with parts partitions for the profile-keyed
// topics (the topology's 6, for a `cdp run` child process).
func newPipelineN(t testing.TB, fspec fdef.Spec, sspec rules.Spec, clk *clock, parts int32) *pipeline {
	t.Helper()
	env := testkit.New(t)
	env.Redis(t)
	fset, err := fdef.Compile(fspec)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile(sspec, fset)
	if err != nil {
		t.Fatal(err)
	}
	pl := &pipeline{env: env, fset: fset, rules: rs, serde: schemas.NewSerde(env.Registry(t)), clock: clk, parts: int(parts)}
	pl.resolved = env.Topic(t, "events.resolved", parts)
	pl.merges = env.Topic(t, "identity.merges", 2)
	pl.fold = env.Topic(t, "features.fold", parts)
	pl.changes = env.Topic(t, "profiles.changes", parts)
	pl.membership = env.Topic(t, "segments.membership", 3)
	pl.audiences = env.Topic(t, "segments.audiences", 2)
	pl.dlqT = env.Topic(t, "events.dlq", 1)
	return pl
}

func (pl *pipeline) now() time.Time {
	if pl.clock != nil {
		return pl.clock.Now()
	}
	return time.Now()
}

func (pl *pipeline) featuresConfig() features.Config {
	return features.Config{ResolvedTopic: pl.resolved, MergesTopic: pl.merges, FoldTopic: pl.fold, ChangesTopic: pl.changes,
		DLQTopic: pl.dlqT, ScoresTopic: pl.scores, Partitions: pl.parts, Prefix: pl.env.RedisPrefix(), Now: pl.now}
}

// withScores makes the features processor read customer scores from a
// topic of its own (co-partitioned with the resolved topic).
func (pl *pipeline) withScores(t testing.TB) {
	pl.scores = pl.env.Topic(t, "profiles.scores", int32(pl.parts))
}

// featureInputs are the topics the features processor consumes.
func (pl *pipeline) featureInputs() []string {
	in := []string{pl.resolved, pl.merges, pl.fold}
	if pl.scores != "" {
		in = append(in, pl.scores)
	}
	return in
}

func (pl *pipeline) segmentsConfig() Config {
	return Config{ChangesTopic: pl.changes, MembershipTopic: pl.membership, AudiencesTopic: pl.audiences, DLQTopic: pl.dlqT,
		Partitions: pl.parts, Prefix: pl.env.RedisPrefix(), Now: pl.now}
}

func (pl *pipeline) redis(t testing.TB) *Reader {
	rdb, err := config.NewRedis(pl.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return NewReader(rdb, pl.segmentsConfig(), pl.rules, nil)
}

// startFeatures and startSegments run one processor each in this process
// until stop is called.
func (pl *pipeline) startFeatures(t testing.TB) (stop func()) {
	t.Helper()
	rdb, err := config.NewRedis(pl.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	m := processing.NewMetrics(nil)
	p, err := features.NewProcessor(pl.featuresConfig(), pl.fset, pl.serde, rdb, m, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return pl.run(t, "features", pl.env.Services.TopicPrefix+"-features", pl.featureInputs(), p, p.Journal(), p.KafkaOpts(), m, rdb.Close)
}

func (pl *pipeline) startSegments(t testing.TB) (stop func()) {
	return pl.startSegmentsWith(t, pl.segmentsConfig(), pl.env.Services.TopicPrefix+"-segments")
}

// startSegmentsWith runs a segments processor with cfg in group.
func (pl *pipeline) startSegmentsWith(t testing.TB, cfg Config, group string) (stop func()) {
	t.Helper()
	rdb, err := config.NewRedis(pl.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	m := processing.NewMetrics(nil)
	store := features.NewReader(rdb, pl.featuresConfig(), pl.fset)
	p, err := NewProcessor(cfg, pl.rules, store, pl.serde, rdb, m, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return pl.run(t, "segments", group, []string{cfg.ChangesTopic}, p, p.Journal(), p.KafkaOpts(), m, rdb.Close)
}

func (pl *pipeline) run(t testing.TB, name, group string, inputs []string, p processing.Processor, j processing.Journal, opts []kgo.Opt, m *processing.Metrics, closeFn func() error) func() {
	t.Helper()
	cfg := processing.Config{Name: name, Brokers: pl.env.Services.KafkaBrokers, Group: group,
		Inputs: inputs, InstanceID: group, Metrics: m, MaxBackoff: 200 * time.Millisecond,
		Journal: j, DeadLetterTopic: pl.dlqT, KafkaOpts: opts, Logger: testLogger(t)}
	if pl.clock != nil {
		cfg.Now = pl.clock.Now
	}
	r, err := processing.New(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer closeFn()
		if err := r.Run(ctx); err != nil {
			t.Errorf("%s runner: %v", name, err)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// settle waits until both processors consumed everything (and timers that
// were due have fired and been processed).
func (pl *pipeline) settle(t testing.TB) {
	t.Helper()
	pl.env.WaitConsumed(t, 2*time.Minute, 400*time.Millisecond,
		testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-features", Topics: pl.featureInputs()},
		testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-segments", Topics: []string{pl.changes}})
}

func (pl *pipeline) produce(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	if err := pl.env.Kafka(t).ProduceSync(testkit.Context(t), recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

func (pl *pipeline) eventRecord(t testing.TB, profile string, ev schemas.Event, at time.Time) *kgo.Record {
	t.Helper()
	r := schemas.ResolvedEvent{ProfileID: profile, Timestamp: at, Event: ev}
	v, err := pl.serde.EncodeResolved(testkit.Context(t), pl.resolved, &r)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: pl.resolved, Key: []byte(profile), Value: v}
}

func (pl *pipeline) mergeRecord(t testing.TB, from, into string) *kgo.Record {
	t.Helper()
	m := map[string]any{"merge_id": "m-" + from, "from_profile": from, "into_profile": into,
		"identifiers": []any{}, "trigger_message_id": nil, "rule": "test", "time": time.UnixMilli(0).UTC()}
	v, err := pl.serde.EncodeNative(testkit.Context(t), pl.merges, schemas.IdentityMergeSchema, m)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: pl.merges, Key: []byte(into), Value: v}
}

// change is a membership change as read back.
type change struct {
	Segment, Status string
	Time            int64
	Version         int64
	Reason          string
}

func (c change) String() string {
	return fmt.Sprintf("v%d %s %s @%s (%s)", c.Version, c.Status, c.Segment, time.UnixMilli(c.Time).UTC().Format(time.RFC3339), c.Reason)
}

// memberships reads the membership topic by profile, in version order,
// checking that each profile's versions run 1, 2, 3 ... and that they are
// in that order on the topic.
func (pl *pipeline) memberships(t testing.TB) map[string][]change {
	return pl.membershipsOf(t, pl.membership)
}

// membershipsOf is memberships of another topic.
func (pl *pipeline) membershipsOf(t testing.TB, topic string) map[string][]change {
	t.Helper()
	ctx := testkit.Context(t)
	out := map[string][]change{}
	for _, rec := range pl.env.ReadAll(t, topic) {
		native, err := pl.serde.DecodeNative(ctx, rec.Value, schemas.SegmentMembershipSchema)
		if err != nil {
			t.Fatal(err)
		}
		m := native.(map[string]any)
		profile := m["profile_id"].(string)
		c := change{Segment: m["segment"].(string), Status: m["status"].(string), Time: m["time"].(time.Time).UnixMilli(),
			Version: m["version"].(int64)}
		if r, ok := m["reason"].(map[string]any); ok {
			c.Reason, _ = r["string"].(string)
		}
		if want := profile + "/" + c.Segment; string(rec.Key) != want {
			t.Fatalf("membership record keyed %q, want %q", rec.Key, want)
		}
		out[profile] = append(out[profile], c)
	}
	for id, cs := range out {
		if !slices.IsSortedFunc(cs, func(a, b change) int { return cmp.Compare(a.Version, b.Version) }) {
			t.Fatalf("%s: membership changes out of order on the topic: %v", id, cs)
		}
		for i, c := range cs {
			if c.Version != int64(i+1) {
				t.Fatalf("%s: change %d has version %d: %v", id, i, c.Version, cs)
			}
		}
	}
	return out
}

// testLogger logs warnings and errors to the test's output (CDP_TEST_LOG=debug
// for everything).
func testLogger(t testing.TB) *zap.Logger {
	level := zap.WarnLevel
	if os.Getenv("CDP_TEST_LOG") == "debug" {
		level = zap.DebugLevel
	}
	return zaptest.NewLogger(t, zaptest.Level(level))
}

// profileChanges lists a profile's changes on the changes topic, for
// failure messages.
func (pl *pipeline) profileChanges(t testing.TB, profile string) string {
	t.Helper()
	ctx := testkit.Context(t)
	var b strings.Builder
	for _, rec := range pl.env.ReadAll(t, pl.changes) {
		if string(rec.Key) != profile {
			continue
		}
		c, err := pl.serde.DecodeProfileChange(ctx, rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n  v%d %s @%s %d features %v merged_from %q into %q", c.Version, c.Cause,
			time.UnixMilli(c.Time).UTC().Format(time.RFC3339), len(c.Features), slices.Sorted(maps.Keys(c.Features)), c.MergedFrom, c.MergedInto)
	}
	return b.String()
}

// members are the segments profile id is in, sorted.
func members(t *testing.T, rd *Reader, id string) []string {
	t.Helper()
	ms, _, err := rd.Members(testkit.Context(t), id)
	if err != nil && err != ErrNotFound {
		t.Fatalf("memberships of %s: %v", id, err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Segment)
	}
	slices.Sort(out)
	return out
}

// waitEvaluated waits until every partition is marked evaluated with the
// current definitions (by a backfill, or by a first start that needs none).
func waitEvaluated(t *testing.T, rd *Reader) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := rd.Status(testkit.Context(t))
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for _, p := range st {
			done = done && p.Done
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partitions are not marked evaluated after 2 minutes: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
