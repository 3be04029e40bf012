package segments

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/features/reference"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
)

// Segments are changed while profiles exist: one removed, one edited (a
// param), one added. The processor, started with the new definitions,
// backfills every profile: the removed segment's members exit, and every
// profile ends in exactly the segments the new conditions give on its
// values, computed by the brute-force reference from its events.
func TestDefinitionChangeIsBackfilled(t *testing.T) {
	fspec, sspec := defaultSpecs(t)
	pl := newPipeline(t, fspec, sspec, nil)
	stopS := pl.startSegments(t)
	stopF := pl.startFeatures(t)
	defer stopF()

	r := rand.New(rand.NewPCG(7, 8))
	now := time.Now()
	events := map[string][]reference.Event{}
	var recs []*kgo.Record
	for i := range 120 {
		id := fmt.Sprintf("%s-b%d", pl.env.ID, i)
		for range 2 + r.IntN(10) {
			at := now.Add(-time.Duration(r.Int64N(int64(200 * 24 * time.Hour)))).Truncate(time.Millisecond)
			ev := segEvent(r, i, at)
			recs = append(recs, pl.eventRecord(t, id, ev, at))
			events[id] = append(events[id], reference.Event{Ev: ev, T: at.UnixMilli()})
		}
	}
	pl.produce(t, recs)
	pl.settle(t)
	stopS()
	before := pl.memberships(t)
	loyal := 0
	for _, cs := range before {
		for _, c := range cs {
			if c.Segment == "loyalists" && c.Status == "entered" {
				loyal++
			}
		}
	}

	// The new definitions.
	next := rules.Spec{Params: map[string]float64{"high_value_revenue": 100}, AudienceEvents: true, BackfillRate: 400}
	for _, d := range sspec.Definitions {
		if d.Name != "loyalists" {
			next.Definitions = append(next.Definitions, d)
		}
	}
	next.Definitions = append(next.Definitions, rules.SegmentSpec{Name: "big_spenders", Condition: "revenue_30d >= 200"})
	set, err := rules.Compile(next, pl.fset)
	if err != nil {
		t.Fatal(err)
	}
	if set.ID == pl.rules.ID {
		t.Fatal("the definitions' fingerprint did not change")
	}
	pl.rules = set
	stopS = pl.startSegments(t)
	defer stopS()
	rdb, err := config.NewRedis(pl.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	rd := NewReader(rdb, pl.segmentsConfig(), set, features.NewReader(rdb, pl.featuresConfig(), pl.fset))
	ctx := testkit.Context(t)
	start := time.Now()
	waitEvaluated(t, rd)
	took := time.Since(start)
	pl.settle(t)

	after := pl.memberships(t)
	exits := 0
	for _, cs := range after {
		for _, c := range cs {
			if c.Segment == "loyalists" && c.Status == "exited" && c.Reason == "segment removed" {
				exits++
			}
		}
	}
	if exits != loyal-countExits(before, "loyalists") {
		t.Errorf("%d exits from the removed segment, want %d", exits, loyal-countExits(before, "loyalists"))
	}
	sizes := map[string]int64{}
	store := features.NewReader(rdb, pl.featuresConfig(), pl.fset)
	for id, evs := range events {
		fs, err := store.Own(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]any{"params": next.Params}
		for _, name := range set.Features {
			f := pl.fset.Features[pl.fset.Index(name)]
			env[name] = rules.Value(f.Agg, reference.Value(f, evs, fs.Clock))
		}
		traits := map[string]any{}
		for k, raw := range reference.Traits(evs) {
			var x any
			_ = json.Unmarshal([]byte(raw), &x)
			traits[k] = x
		}
		env["traits"] = traits
		var want []string
		for _, seg := range set.Segments {
			if in, _ := seg.Eval(env); in {
				want = append(want, seg.Name)
				sizes[seg.Name]++
			}
		}
		slices.Sort(want)
		if got := members(t, rd, id); !slices.Equal(got, want) {
			t.Fatalf("%s: in %v after the backfill, the new definitions give %v", id, got, want)
		}
	}
	got, err := rd.Sizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seg, n := range got {
		if n != sizes[seg] {
			t.Errorf("size of %s: %d, want %d", seg, n, sizes[seg])
		}
	}
	n, err := rd.StoreProfiles(ctx)
	if err != nil || n != int64(len(events)) {
		t.Errorf("the store has %d profiles (%v), want %d", n, err, len(events))
	}
	t.Logf("backfill of %d profiles took %s: %d exits from the removed segment; sizes now %v", len(events), took.Round(time.Millisecond), exits, sizes)
}

func countExits(m map[string][]change, segment string) int {
	n := 0
	for _, cs := range m {
		for _, c := range cs {
			if c.Segment == segment && c.Status == "exited" {
				n++
			}
		}
	}
	return n
}
