package features

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/schemas"
)

// stage is one test's features pipeline: its topics, and processors
// running on them.
type stage struct {
	env                                          *testkit.Env
	resolved, merges, fold, changes, dlqT, group string
	partitions                                   int
	set                                          *definition.Set
	serde                                        *schemas.Serde
}

func newStage(t testing.TB, partitions int32, set *definition.Set) *stage {
	return newStageOn(t, partitions, set, "")
}

// newStageOn is newStage with the feature store in the Redis (or Redis
// Cluster) redisURL names; empty is the stack's.
func newStageOn(t testing.TB, partitions int32, set *definition.Set, redisURL string) *stage {
	env := testkit.New(t)
	if redisURL != "" {
		env.Services.RedisURL = redisURL
	}
	env.Redis(t) // keys go when the test ends
	s := &stage{env: env, group: env.Services.TopicPrefix + "-features", partitions: int(partitions), set: set}
	s.resolved = env.Topic(t, "events.resolved", partitions)
	s.merges = env.Topic(t, "identity.merges", 2)
	s.fold = env.Topic(t, "features.fold", partitions)
	s.changes = env.Topic(t, "profiles.changes", partitions)
	s.dlqT = env.Topic(t, "events.dlq", 1)
	s.serde = schemas.NewSerde(env.Registry(t))
	return s
}

func (s *stage) config() Config {
	return Config{ResolvedTopic: s.resolved, MergesTopic: s.merges, FoldTopic: s.fold, ChangesTopic: s.changes,
		DLQTopic: s.dlqT, Partitions: s.partitions, Prefix: s.env.RedisPrefix()}
}

func (s *stage) redis(t testing.TB) *Reader {
	rdb, err := config.NewRedis(s.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return NewReader(rdb, s.config(), s.set)
}

// start runs n processors (each its own Processor and group member, like n
// processes) until stop is called.
func (s *stage) start(t testing.TB, n int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		rdb, err := config.NewRedis(s.env.Services.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		m := processing.NewMetrics(nil)
		p, err := NewProcessor(s.config(), s.set, s.serde, rdb, m, nil, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		r, err := processing.New(processing.Config{Name: "features", Brokers: s.env.Services.KafkaBrokers, Group: s.group,
			Inputs: []string{s.resolved, s.merges, s.fold}, InstanceID: fmt.Sprintf("%s-%d", s.env.ID, i), Metrics: m,
			MaxBackoff: 200 * time.Millisecond, Journal: p.Journal(), DeadLetterTopic: s.dlqT, KafkaOpts: p.KafkaOpts()}, p)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rdb.Close()
			if err := r.Run(ctx); err != nil {
				t.Errorf("runner %d: %v", i, err)
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// waitDone waits until the group has committed the end of every input
// (the fold topic grows while merges are handled).
func (s *stage) waitDone(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.env.WaitConsumed(t, timeout, 300*time.Millisecond, testkit.Consumed{Group: s.group, Topics: []string{s.resolved, s.merges, s.fold}})
}

// readAll reads a topic with read_committed to its end.
func (s *stage) readAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	return s.env.ReadAll(t, topic)
}

// changesByProfile decodes the changes topic and checks that each
// profile's versions run 1, 2, 3, ... without a gap or a repeat. They are
// returned sorted by version: a merge's change and an event's change, made
// by the partition's two tasks in one transaction, may be in either order
// on the topic (see doc.go).
func (s *stage) changesByProfile(t testing.TB) map[string][]schemas.ProfileChange {
	t.Helper()
	ctx := testkit.Context(t)
	out := map[string][]schemas.ProfileChange{}
	for _, rec := range s.readAll(t, s.changes) {
		c, err := s.serde.DecodeProfileChange(ctx, rec.Value)
		if err != nil {
			t.Fatalf("decoding a change: %v", err)
		}
		if string(rec.Key) != c.ProfileID {
			t.Fatalf("change keyed %q is for %q", rec.Key, c.ProfileID)
		}
		out[c.ProfileID] = append(out[c.ProfileID], c)
	}
	for id, cs := range out {
		slices.SortStableFunc(cs, func(a, b schemas.ProfileChange) int { return cmp.Compare(a.Version, b.Version) })
		for i, c := range cs {
			if c.Version != int64(i+1) {
				t.Fatalf("profile %s: change %d has version %d (versions %v)", id, i, c.Version, versions(cs))
			}
		}
	}
	return out
}

func versions(cs []schemas.ProfileChange) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.Version
	}
	return out
}

// checkChain checks what a consumer of the changes relies on: applying a
// profile's changes in version order, each change's old values are the
// values the consumer holds, and after the last one it holds the profile's
// values at its Clock (for a merged-away profile, the last change names the
// survivor). It returns the number of changes checked.
func checkChain(t testing.TB, rd *Reader, changes map[string][]schemas.ProfileChange) int {
	t.Helper()
	ctx := testkit.Context(t)
	e := rd.Engine()
	n := 0
	for id, cs := range changes {
		vals := map[string]schemas.FeatureValue{}
		for _, f := range e.Set().Features {
			switch f.Agg {
			case definition.Count, definition.Sum, definition.Distinct:
				vals[f.Name] = schemas.FeatureValue{Kind: schemas.FeatureNumber}
			default:
				vals[f.Name] = schemas.FeatureValue{}
			}
		}
		traits := map[string]string{}
		for _, c := range cs {
			n++
			for name, fc := range c.Features {
				if vals[name] != fc.Old {
					t.Fatalf("%s v%d: %s old %v, the consumer holds %v", id, c.Version, name, fc.Old, vals[name])
				}
				vals[name] = fc.New
			}
			for name, tc := range c.Traits {
				if traits[name] != tc.Old {
					t.Fatalf("%s v%d: trait %s old %q, the consumer holds %q", id, c.Version, name, tc.Old, traits[name])
				}
				traits[name] = tc.New
			}
		}
		last := cs[len(cs)-1]
		b, err := rd.rdb.HGet(ctx, rd.layout.Key(rd.layout.Partition(id), "s"), id).Bytes()
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		st, err := e.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if st.MergedInto != "" {
			if last.MergedInto != st.MergedInto {
				t.Fatalf("%s was merged into %s, its last change says %q", id, st.MergedInto, last.MergedInto)
			}
			continue
		}
		// (The Clock may have moved on since, with no value changed.)
		if last.Version != st.Version || last.Time > st.Clock {
			t.Fatalf("%s: last change v%d at %d, profile v%d at %d", id, last.Version, last.Time, st.Version, st.Clock)
		}
		for i, v := range e.Values(st, st.Clock) {
			if got := featureValue(v); vals[e.Set().Features[i].Name] != got {
				t.Fatalf("%s: the changes say %s = %v, the profile has %v", id, e.Set().Features[i].Name, vals[e.Set().Features[i].Name], got)
			}
		}
		for name, tr := range st.Traits {
			if traits[name] != tr.Value {
				t.Fatalf("%s: the changes say trait %s = %q, the profile has %q", id, name, traits[name], tr.Value)
			}
		}
	}
	return n
}
