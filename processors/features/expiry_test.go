package features

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/schemas"
)

// A window that falls with no event is a change (cause expiry) at the
// moment it falls, from the runtime's timers, with the processor otherwise
// idle. The lateness (change consumed − due time) is logged; the assertion
// is generous, the goal is under a second.
func TestExpiryChangesArriveOnTime(t *testing.T) {
	set, err := definition.Compile(definition.Spec{Definitions: []definition.FeatureSpec{
		{Name: "views_10s", Type: "page", Agg: "count", Window: "10s", Buckets: 10},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := newStage(t, 4, set)
	stop := s.start(t, 1)
	defer stop()
	ctx := testkit.Context(t)
	const profiles = 40
	now := time.Now()
	var recs []*kgo.Record
	for i := range profiles {
		id := s.env.ID + "-e" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		at := now.Add(time.Duration(i) * 50 * time.Millisecond) // due times spread over 2 s
		ev := schemas.ResolvedEvent{ProfileID: id, Timestamp: at, Event: schemas.Event{MessageID: id, Type: schemas.Page, Name: "Home"}}
		v, err := s.serde.EncodeResolved(ctx, s.resolved, &ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: s.resolved, Key: []byte(id), Value: v})
	}
	s.produce(t, recs)

	cl := s.env.Kafka(t, kgo.ConsumeTopics(s.changes), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	var late []time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for len(late) < profiles && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		seen := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			c, err := s.serde.DecodeProfileChange(ctx, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if c.Cause != schemas.CauseExpiry {
				return
			}
			fc := c.Features["views_10s"]
			if fc.Old.Num != 1 || fc.New.Num != 0 {
				t.Errorf("%s: expiry %v -> %v, want 1 -> 0", c.ProfileID, fc.Old, fc.New)
			}
			late = append(late, seen.Sub(time.UnixMilli(c.Time)))
		})
	}
	if len(late) != profiles {
		t.Fatalf("%d of %d expiry changes within a minute", len(late), profiles)
	}
	slices.Sort(late)
	t.Logf("expiry change lateness over %d profiles: p50 %s, p99 %s, max %s", profiles,
		late[len(late)/2].Round(time.Millisecond), late[len(late)*99/100].Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond))
	if late[len(late)-1] > 5*time.Second {
		t.Errorf("an expiry change came %s after its due time", late[len(late)-1])
	}
}
