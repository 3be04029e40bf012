package segments

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
)

// The features processor runs ahead: every profile is in the feature store
// before the segments processor starts for the first time. With the whole
// changes topic still in Kafka, the first start evaluates each profile
// change by change from the topic (no backfill from the store, whose
// output would depend on how far the features processor had run). A second
// segments processor (its own state, group and output) starting after
// retention deleted the changes must backfill, and ends with every profile
// in the same segments.
func TestFirstStartFollowsTheChanges(t *testing.T) {
	fspec, sspec := defaultSpecs(t)
	pl := newPipeline(t, fspec, sspec, nil)
	stopF := pl.startFeatures(t)
	defer stopF()

	r := rand.New(rand.NewPCG(11, 12))
	now := time.Now()
	var ids []string
	var recs []*kgo.Record
	for i := range 600 {
		id := fmt.Sprintf("%s-f%d", pl.env.ID, i)
		ids = append(ids, id)
		for range 1 + r.IntN(8) {
			at := now.Add(-time.Duration(r.Int64N(int64(120 * 24 * time.Hour)))).Truncate(time.Millisecond)
			recs = append(recs, pl.eventRecord(t, id, segEvent(r, i, at), at))
		}
	}
	pl.produce(t, recs)
	pl.env.WaitConsumed(t, 2*time.Minute, 400*time.Millisecond,
		testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-features", Topics: pl.featureInputs()})

	// The segments processor starts with the store full and its input
	// still empty (a relay of the changes topic, filled afterwards): as if
	// the features processor had run far ahead of it.
	cfg := pl.segmentsConfig()
	cfg.ChangesTopic = pl.env.Topic(t, "profiles.changes.relay", int32(pl.parts))
	group := pl.env.Services.TopicPrefix + "-segments"
	stopS := pl.startSegmentsWith(t, cfg, group)
	rd := NewReader(pl.redis(t).rdb, cfg, pl.rules, nil)
	ctx := testkit.Context(t)
	waitEvaluated(t, rd)
	var relay []*kgo.Record
	for _, rec := range pl.env.ReadAll(t, pl.changes) {
		if !rec.Attrs.IsControl() {
			relay = append(relay, &kgo.Record{Topic: cfg.ChangesTopic, Partition: rec.Partition, Key: rec.Key, Value: rec.Value})
		}
	}
	if err := pl.env.Kafka(t, kgo.RecordPartitioner(kgo.ManualPartitioner())).ProduceSync(ctx, relay...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pl.env.WaitConsumed(t, 2*time.Minute, 400*time.Millisecond, testkit.Consumed{Group: group, Topics: []string{cfg.ChangesTopic}})
	stopS()
	first := pl.memberships(t)
	n, other, example := 0, 0, ""
	for id, cs := range first {
		for _, c := range cs {
			if c.Reason != "condition" {
				other++
				example = fmt.Sprintf("%s: %v", id, c)
			}
			n++
		}
	}
	if other > 0 {
		t.Errorf("%d of %d membership changes on the first start were not decided by a profile change (reason condition), e.g. %s", other, n, example)
	}
	if len(first) < len(ids)/2 || n == 0 {
		t.Fatalf("%d membership changes of %d profiles: the input does not exercise the first start", n, len(first))
	}
	want, in := map[string][]string{}, 0
	for _, id := range ids {
		want[id] = members(t, rd, id)
		in += len(want[id])
	}

	// Retention took every change: a new segments processor finds the
	// profiles in the feature store only.
	adm := pl.env.Admin(t)
	ends, err := adm.ListEndOffsets(ctx, pl.changes)
	if err != nil {
		t.Fatal(err)
	}
	del := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			del.AddOffset(o.Topic, o.Partition, o.Offset, -1)
		}
	})
	resp, err := adm.DeleteRecords(ctx, del)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Error(); err != nil {
		t.Fatal(err)
	}
	starts, err := adm.ListStartOffsets(ctx, pl.changes)
	if err != nil {
		t.Fatal(err)
	}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Offset != del[o.Topic][o.Partition].At {
			t.Errorf("partition %d starts at %d after deleting records, want %d", o.Partition, o.Offset, del[o.Topic][o.Partition].At)
		}
	})
	cfg = pl.segmentsConfig()
	cfg.Prefix = pl.env.RedisPrefix() + "again:"
	cfg.MembershipTopic = pl.env.Topic(t, "segments.membership.again", 3)
	stopS = pl.startSegmentsWith(t, cfg, pl.env.Services.TopicPrefix+"-segments-again")
	defer stopS()
	rd2 := NewReader(rd.rdb, cfg, pl.rules, nil)
	waitEvaluated(t, rd2)
	pl.env.WaitConsumed(t, 2*time.Minute, 400*time.Millisecond,
		testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-segments-again", Topics: []string{pl.changes}})
	backfilled := 0
	for _, cs := range pl.membershipsOf(t, cfg.MembershipTopic) {
		for _, c := range cs {
			if c.Reason == "backfill" {
				backfilled++
			}
		}
	}
	if backfilled != in {
		t.Errorf("%d membership changes came from the backfill after retention deleted the changes topic, want %d (an entry per membership)", backfilled, in)
	}
	for _, id := range ids {
		if got := members(t, rd2, id); !slices.Equal(got, want[id]) {
			t.Errorf("%s: in %v after the backfill, %v from the whole topic", id, got, want[id])
		}
	}
	t.Logf("first start: %d changes of %d profiles from the topic alone; after retention: %d changes from the backfill, same memberships", n, len(first), backfilled)
}
