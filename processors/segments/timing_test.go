package segments

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
	fdef "github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
	"github.com/streamcdp/streamcdp/schemas"
)

// With the processors otherwise idle and the real clock, a profile exits a
// segment when its window falls (and enters one that waits for it), from
// the runtime's timers, without an event. The lateness (membership record
// consumed − the moment the window fell) is logged; the assertion is
// generous, the goal is under a second.
func TestTimeBasedChangesArriveOnTime(t *testing.T) {
	fspec := fdef.Spec{Definitions: []fdef.FeatureSpec{
		{Name: "carts_8s", Type: "track", Events: []string{"Product Added"}, Agg: "count", Window: "8s", Buckets: 8},
		{Name: "seen", Agg: "count"},
	}}
	sspec := rules.Spec{Definitions: []rules.SegmentSpec{
		{Name: "carting", Condition: "carts_8s > 0"},
		{Name: "gone_quiet", Condition: "seen > 0 && carts_8s == 0"},
	}}
	pl := newPipeline(t, fspec, sspec, nil)
	stopS := pl.startSegments(t)
	defer stopS()
	pl.settle(t)
	stopF := pl.startFeatures(t)
	defer stopF()

	const profiles = 40
	now := time.Now()
	var recs []*kgo.Record
	for i := range profiles {
		id := fmt.Sprintf("%s-q%d", pl.env.ID, i)
		at := now.Add(time.Duration(i) * 75 * time.Millisecond) // falls spread over 3 s
		ev := schemas.Event{MessageID: id, Type: schemas.Track, Event: "Product Added"}
		recs = append(recs, pl.eventRecord(t, id, ev, at))
	}
	pl.produce(t, recs)

	ctx := testkit.Context(t)
	cl := pl.env.Kafka(t, kgo.ConsumeTopics(pl.membership), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	var late []time.Duration
	entered, exited := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for (entered < profiles || exited < profiles) && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		seen := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			native, err := pl.serde.DecodeNative(ctx, r.Value, schemas.SegmentMembershipSchema)
			if err != nil {
				t.Fatal(err)
			}
			m := native.(map[string]any)
			seg, status := m["segment"].(string), m["status"].(string)
			at := m["time"].(time.Time)
			switch {
			case seg == "carting" && status == "exited":
				exited++
				late = append(late, seen.Sub(at))
			case seg == "gone_quiet" && status == "entered":
				entered++
				late = append(late, seen.Sub(at))
			}
		})
	}
	if entered != profiles || exited != profiles {
		t.Fatalf("within a minute: %d of %d exits from carting, %d of %d entries into gone_quiet", exited, profiles, entered, profiles)
	}
	slices.Sort(late)
	t.Logf("time-based membership changes (%d): lateness p50 %s, p99 %s, max %s", len(late),
		late[len(late)/2].Round(time.Millisecond), late[len(late)*99/100].Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond))
	if late[len(late)-1] > 5*time.Second {
		t.Errorf("a time-based change came %s after its moment", late[len(late)-1])
	}
}
