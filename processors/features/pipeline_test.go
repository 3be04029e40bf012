package features

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features/reference"
	"github.com/streamcdp/streamcdp/schemas"
)

// person is one customer of a generated stream: the profiles identity gave
// them before it learnt they are one (a tree of merges into the root), and
// their events.
type person struct {
	root   string
	ids    []string
	parent map[string]string
	events []reference.Event
}

// genPersons makes n persons with 1-4 profiles each and their events.
func genPersons(r *rand.Rand, tag string, n int, base time.Time) []*person {
	out := make([]*person, n)
	for i := range out {
		p := &person{parent: map[string]string{}}
		k := 1 + r.IntN(4)
		for j := range k {
			id := fmt.Sprintf("%s-p%d-%d", tag, i, j)
			p.ids = append(p.ids, id)
			if j > 0 {
				p.parent[id] = p.ids[r.IntN(j)]
			}
		}
		p.root = p.ids[0]
		for range 3 + r.IntN(30) {
			p.events = append(p.events, randomEvent(r, i, base))
			if r.IntN(12) == 0 {
				// A duplicate (same message id) that escaped identity's
				// dedup window: the processor and the reference both
				// count it again.
				p.events = append(p.events, p.events[len(p.events)-1])
			}
		}
		out[i] = p
	}
	return out
}

// streamRecords is the persons' resolved events (each to a random one of
// its person's profiles, as identity would have resolved it before or,
// adversarially, after a merge) and their merges, shuffled together: merges
// may come before, between or after the events they concern, and a chain's
// merges in any order.
func (s *stage) streamRecords(t testing.TB, r *rand.Rand, persons []*person) []*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t)
	var recs []*kgo.Record
	for _, p := range persons {
		for _, re := range p.events {
			id := p.ids[r.IntN(len(p.ids))]
			ev := schemas.ResolvedEvent{ProfileID: id, Timestamp: time.UnixMilli(re.T), Event: re.Ev}
			v, err := s.serde.EncodeResolved(ctx, s.resolved, &ev)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: s.resolved, Key: []byte(id), Value: v})
		}
		for _, from := range p.ids[1:] {
			into := p.parent[from]
			m := map[string]any{"merge_id": "m-" + from, "from_profile": from, "into_profile": into,
				"identifiers": []any{}, "trigger_message_id": nil, "rule": "test", "time": time.UnixMilli(0).UTC()}
			v, err := s.serde.EncodeNative(ctx, s.merges, schemas.IdentityMergeSchema, m)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: s.merges, Key: []byte(into), Value: v})
		}
	}
	r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	return recs
}

func (s *stage) produce(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	cl := s.env.Kafka(t)
	if err := cl.ProduceSync(testkit.Context(t), recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// Random streams (late and out-of-order events, identifies with conflicting
// traits, merges in any order relative to the events, chains of merges)
// through the processor over Kafka and Redis give, for every person, the
// reference's value of every feature and trait at several read times, and
// every other profile of the person reads as the survivor.
func TestPipelineMatchesReference(t *testing.T) { pipelineMatchesReference(t, "") }

// TestPipelineOnRedisCluster is the same with the feature store on a Redis
// Cluster of three redis-server processes: every script's keys share the
// partition's slot, and the partitions spread over the three shards.
func TestPipelineOnRedisCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	pipelineMatchesReference(t, c.URL())
	// Each shard holds some partitions' state.
	rdb, err := config.NewRedis(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cc := rdb.(*redis.ClusterClient)
	var shards atomic.Int32 // ForEachMaster asks the shards in parallel
	err = cc.ForEachMaster(testkit.Context(t), func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if n > 0 {
			shards.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := shards.Load(); n != 3 {
		t.Errorf("state on %d of 3 shards", n)
	}
}

func pipelineMatchesReference(t *testing.T, redisURL string) {
	set := testSet(t)
	s := newStageOn(t, 4, set, redisURL)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	base := time.Now().Truncate(time.Millisecond)
	persons := genPersons(r, s.env.ID, 80, base)
	recs := s.streamRecords(t, r, persons)
	// A third before the processors start, a third while they run, and
	// the last after they caught up: by then most merges are done, so the
	// events of merged-away profiles meet their tombstones and go on.
	n := len(recs) / 3
	s.produce(t, recs[:n])
	stop := s.start(t, 2)
	s.produce(t, recs[n:2*n])
	s.waitDone(t, 2*time.Minute)
	s.produce(t, recs[2*n:])
	s.waitDone(t, 2*time.Minute)
	stop()

	ctx := testkit.Context(t)
	rd := s.redis(t)
	e := rd.Engine()
	changes := s.changesByProfile(t)
	merged := 0
	for _, p := range persons {
		st, id, err := rd.State(ctx, p.root)
		if err != nil {
			t.Fatalf("person %s: %v", p.root, err)
		}
		if id != p.root {
			t.Fatalf("person %s reads as %s", p.root, id)
		}
		checkAgainstReference(t, e, st, p.events, "person "+p.root)
		for _, other := range p.ids[1:] {
			merged++
			if _, id, err := rd.State(ctx, other); err != nil || id != p.root {
				t.Errorf("profile %s of person %s reads as %s (%v)", other, p.root, id, err)
			}
		}
	}
	// The pipelined read, all profiles in one pipeline, answers what
	// Profile answers, merged-away profiles followed to their survivor.
	at := time.Now()
	pipe := rd.rdb.Pipeline()
	queued := map[string]func() (*Profile, error){}
	for _, p := range persons {
		for _, id := range p.ids {
			queued[id] = rd.QueueProfile(ctx, pipe, id, at)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range persons {
		for _, id := range p.ids {
			got, err := queued[id]()
			want, werr := rd.Profile(ctx, id, at)
			if err != nil || werr != nil || got.ID != p.root || !reflect.DeepEqual(got, want) {
				t.Errorf("QueueProfile(%s) = %+v %v\nProfile = %+v %v (survivor %s)", id, got, err, want, werr, p.root)
			}
		}
	}

	checked := checkChain(t, rd, changes)
	t.Logf("%d persons, %d records, %d merged-away profiles, %d changes of %d profiles, each continuing the one before", len(persons), len(recs), merged, checked, len(changes))
	if dl := s.readAll(t, s.dlqT); len(dl) != 0 {
		t.Errorf("%d records dead-lettered", len(dl))
	}
}
