package segments

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/schemas"
)

// scoresRecord is a customer-scores record as the recommend processor
// writes it to profiles.scores.
func (pl *pipeline) scoresRecord(t testing.TB, profile string, version int64, at time.Time, rfm string, clv float64) *kgo.Record {
	t.Helper()
	m := map[string]any{"profile_id": profile, "version": version, "time": at.UTC(), "cause": "order",
		"trigger_message_id": map[string]any{"string": "order-" + profile}, "model": "test",
		"orders": int64(3), "revenue": 120.5, "first_order": at.Add(-30 * 24 * time.Hour).UTC(), "last_order": at.UTC(),
		"recency_days": 0.0, "r": int32(5), "f": int32(4), "m": int32(3), "rfm_segment": rfm,
		"expected_orders": map[string]any{"double": 1.5}, "clv": map[string]any{"double": clv},
		"p_alive": map[string]any{"double": 0.9}, "churn_risk": nil, "horizon_days": int32(365), "churn_days": int32(90)}
	v, err := pl.serde.EncodeNative(testkit.Context(t), pl.scores, schemas.CustomerScoresSchema, m)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: pl.scores, Key: []byte(profile), Value: v}
}

// Customer scores drive segments: the default topology's champions
// (traits.rfm_segment == "champions") and win_back (at_risk or
// cannot_lose_them) follow each profile's latest scores by time, a score
// older than the one held changes nothing, and scores of a merged-away
// profile reach its survivor.
func TestScoresDriveSegments(t *testing.T) {
	fspec, sspec := defaultSpecs(t)
	pl := newPipeline(t, fspec, sspec, nil)
	pl.withScores(t)
	defer pl.startSegments(t)()
	defer pl.startFeatures(t)()

	a, b, loser, survivor := pl.env.ID+"-a", pl.env.ID+"-b", pl.env.ID+"-l", pl.env.ID+"-s"
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	pl.produce(t, []*kgo.Record{
		pl.scoresRecord(t, a, 1, t0, "champions", 250),
		pl.scoresRecord(t, b, 1, t0, "at_risk", 80),
		pl.mergeRecord(t, loser, survivor),
	})
	pl.settle(t)
	pl.produce(t, []*kgo.Record{
		pl.scoresRecord(t, b, 2, t0.Add(time.Minute), "lost", 5),
		// Older than a's champions: it must not win.
		pl.scoresRecord(t, a, 2, t0.Add(-time.Minute), "hibernating", 1),
		// For the merged-away profile: it goes on to the survivor.
		pl.scoresRecord(t, loser, 1, t0, "champions", 400),
	})
	pl.settle(t)

	got := pl.memberships(t)
	in := func(profile, segment string) []string {
		var out []string
		for _, c := range got[profile] {
			if c.Segment == segment {
				out = append(out, c.Status)
			}
		}
		return out
	}
	for _, tc := range []struct {
		profile, segment string
		want             []string
	}{
		{a, "champions", []string{"entered"}},
		{a, "win_back", nil},
		{b, "win_back", []string{"entered", "exited"}},
		{b, "champions", nil},
		{survivor, "champions", []string{"entered"}},
		{loser, "champions", nil},
	} {
		if st := in(tc.profile, tc.segment); !slices.Equal(st, tc.want) {
			t.Errorf("%s in %s: %v, want %v (all: %v)", tc.profile, tc.segment, st, tc.want, got[tc.profile])
		}
	}

	// The scores are traits of the profiles.
	rdb, err := config.NewRedis(pl.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	fr := features.NewReader(rdb, pl.featuresConfig(), pl.fset)
	for _, tc := range []struct {
		ask, id, rfm string
		clv          float64
	}{{a, a, "champions", 250}, {b, b, "lost", 5}, {loser, survivor, "champions", 400}} {
		p, err := fr.Profile(testkit.Context(t), tc.ask, time.Now())
		if err != nil {
			t.Fatalf("profile %s: %v", tc.ask, err)
		}
		var rfm string
		var clv float64
		if err := json.Unmarshal(p.Traits["rfm_segment"], &rfm); err != nil {
			t.Fatalf("%s: rfm_segment trait %q: %v", tc.ask, p.Traits["rfm_segment"], err)
		}
		if err := json.Unmarshal(p.Traits["clv"], &clv); err != nil {
			t.Fatalf("%s: clv trait %q: %v", tc.ask, p.Traits["clv"], err)
		}
		if p.ID != tc.id || rfm != tc.rfm || clv != tc.clv {
			t.Errorf("profile %s: id %s rfm_segment %q clv %v, want %s %q %v", tc.ask, p.ID, rfm, clv, tc.id, tc.rfm, tc.clv)
		}
		if _, ok := p.Traits["churn_risk"]; ok {
			t.Errorf("%s: churn_risk was null in the scores, yet the profile has it: %s", tc.ask, p.Traits["churn_risk"])
		}
	}

	// Each scores record that changed something is a change of cause scores.
	causes := map[string]int{}
	for _, rec := range pl.env.ReadAll(t, pl.changes) {
		c, err := pl.serde.DecodeProfileChange(testkit.Context(t), rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if c.Cause == schemas.CauseScores {
			causes[c.ProfileID]++
		}
	}
	if want := map[string]int{a: 1, b: 2, survivor: 1}; !maps.Equal(causes, want) {
		t.Errorf("changes of cause scores by profile: %v, want %v", causes, want)
	}
}
