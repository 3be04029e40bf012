package assoc

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC)

func TestHistoryDecay(t *testing.T) {
	day := 24 * time.Hour
	h := NewHistory(HistoryConfig{HalfLife: day})
	h.AddBasket("p", []string{"a", "b", "a"}, t0)
	h.AddBasket("p", []string{"a"}, t0.Add(day))
	h.AddBasket("p", []string{"b"}, t0.Add(-day)) // late: older than the latest
	s := h.Snapshot("p", t0.Add(2*day))
	want := map[string]struct {
		count  int
		weight float64
		last   time.Time
	}{
		"a": {2, 0.25 + 0.5, t0.Add(day)}, // bought 2 days and 1 day before the query
		"b": {2, 0.25 + 0.125, t0},        // bought 2 and 3 days before
	}
	if len(s.Items) != 2 || s.Items[0].Item != "a" {
		t.Fatalf("snapshot items %+v, want a then b", s.Items)
	}
	for _, it := range s.Items {
		w := want[it.Item]
		if it.Count != w.count || math.Abs(it.Weight-w.weight) > 1e-12 || !it.Last.Equal(w.last) {
			t.Errorf("%s: got count %d weight %g last %v, want %d %g %v", it.Item, it.Count, it.Weight, it.Last, w.count, w.weight, w.last)
		}
	}
	if s.Baskets != 3 || math.Abs(s.BasketWeight-(0.25+0.5+0.125)) > 1e-12 {
		t.Errorf("baskets %d weight %g, want 3 and 0.875", s.Baskets, s.BasketWeight)
	}
	if !slices.Equal(s.LastBasket, []string{"b"}) {
		t.Errorf("last basket %v: want the latest by arrival, [b]", s.LastBasket)
	}
	if got := h.Snapshot("nobody", t0); len(got.Items) != 0 || got.Baskets != 0 {
		t.Errorf("unknown profile: %+v", got)
	}
}

func TestHistoryEviction(t *testing.T) {
	for _, c := range []struct {
		name     string
		halfLife time.Duration
		baskets  [][]string
		want     []string
	}{
		{"no decay: the least bought goes, ties to the older, never the newest basket", 0, [][]string{{"a", "b"}, {"b", "c"}, {"c"}, {"d"}}, []string{"c", "d"}},
		{"decay: the oldest goes", time.Hour, [][]string{{"a"}, {"a"}, {"a"}, {"b"}, {"c"}}, []string{"c", "b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := NewHistory(HistoryConfig{HalfLife: c.halfLife, MaxItems: 2})
			for i, b := range c.baskets {
				h.AddBasket("p", b, t0.Add(time.Duration(i)*24*time.Hour))
			}
			var got []string
			for _, it := range h.Snapshot("p", t0.Add(time.Duration(len(c.baskets))*24*time.Hour)).Items {
				got = append(got, it.Item)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("kept %v, want %v", got, c.want)
			}
		})
	}
}

// mixFixture is the hand-computed case of TestTopMix: profile u bought
// {x,y} then {x,z}; profile v bought {z} then {w}. Without decay u's repeat
// scores are x 1, y 0.5, z 0.5; its next scores (weights x ½, y ¼, z ¼ of
// the history) are x 0.75, z 0.75, w 0.25; its cosine together scores are
// y ½·1/√2, x ¼·1/√2 + ¼·½, z ½·½.
func mixFixture() *Recommender {
	r := NewRecommender(Config{}, HistoryConfig{})
	r.AddBasket("u", []string{"x", "y"}, t0)
	r.AddBasket("v", []string{"z"}, t0)
	r.AddBasket("u", []string{"x", "z"}, t0.Add(time.Hour))
	r.AddBasket("v", []string{"w"}, t0.Add(time.Hour))
	return r
}

func TestTopMix(t *testing.T) {
	r := mixFixture()
	sqrt2 := math.Sqrt2
	for _, c := range []struct {
		mix     Mix
		k       int
		exclude bool
		want    []string
		scores  []float64
	}{
		// y, z tie: z is more popular; w scores 0 under this mix and comes as popular fill.
		{Mix{Repeat: 1}, 4, false, []string{"x", "z", "y", "w"}, []float64{1, 0.5, 0.5, 0}},
		{Mix{Repeat: 1, Next: 1}, 4, false, []string{"x", "z", "y", "w"}, []float64{1.75, 1.25, 0.5, 0.25}},
		// x, z tie and are as popular: by name. y, in the history, stays a candidate at 0.
		{Mix{Next: 1}, 4, false, []string{"x", "z", "w", "y"}, []float64{0.75, 0.75, 0.25, 0}},
		{Mix{Together: 1}, 4, false, []string{"y", "x", "z", "w"}, []float64{0.5 / sqrt2, 0.25/sqrt2 + 0.125, 0.25, 0}},
		{Mix{Repeat: 1, Next: 1}, 2, false, []string{"x", "z"}, []float64{1.75, 1.25}},
		{Mix{Repeat: 1, Next: 1}, 4, true, []string{"w"}, []float64{0.25}}, // everything else was bought: no fill left
	} {
		t.Run(fmt.Sprintf("%+v/k%d/exclude=%v", c.mix, c.k, c.exclude), func(t *testing.T) {
			o := Options{K: c.k, Mix: c.mix, ExcludeBought: c.exclude, Measure: Cosine}
			got := r.Recommend("u", t0.Add(2*time.Hour), o)
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %v", got, c.want)
			}
			for i, rec := range got {
				if rec.Item != c.want[i] || math.Abs(rec.Score-c.scores[i]) > 1e-12 {
					t.Fatalf("got %+v, want %v with scores %v", got, c.want, c.scores)
				}
				if rec.Repeat != (rec.Item != "w") {
					t.Fatalf("%s: Repeat = %v", rec.Item, rec.Repeat)
				}
			}
		})
	}
}

func TestRecommendFillAndContext(t *testing.T) {
	r := mixFixture()
	// A stranger gets the most popular items (x and z in 2 baskets, ties by name).
	var got []string
	for _, rec := range r.Recommend("stranger", t0, Options{K: 3, Mix: Mix{Repeat: 1}}) {
		got = append(got, rec.Item)
	}
	if !slices.Equal(got, []string{"x", "z", "w"}) {
		t.Fatalf("popular fill %v, want [x z w]", got)
	}
	// Viewing y now makes x, its only bought-together neighbour, the first
	// pick for the stranger.
	recs := r.Recommend("stranger", t0, Options{K: 1, Mix: Mix{Together: 1}, Context: []string{"y"}})
	if len(recs) != 1 || recs[0].Item != "x" || recs[0].Repeat {
		t.Fatalf("with context y: %+v, want x (explore)", recs)
	}
	if err := (Options{Mix: Mix{Repeat: -1}}).Validate(); err == nil {
		t.Fatal("a negative weight must not validate")
	}
	if r.Recommend("u", t0, Options{K: -1}) != nil {
		t.Fatal("invalid options must return nil")
	}
}

func TestTransitionsFromRecommender(t *testing.T) {
	r := mixFixture()
	m := r.Model()
	if got := m.Rule(Next, "x", "x"); got.Count != 1 || got.Confidence != 1 {
		t.Errorf("x → x next: %+v, want count 1, confidence 1 (u bought x again)", got)
	}
	if got := m.Rule(Next, "z", "w"); got.Count != 1 {
		t.Errorf("z → w next: %+v, want count 1 (v bought w after z)", got)
	}
	if got := m.Rule(Next, "x", "w"); got.Count != 0 {
		t.Errorf("x → w next: %+v: transitions must stay within one profile", got)
	}
}

// TestHistoryExportImport checks that a history stored and loaded again
// (as the recommend processor does between events) answers and learns
// exactly like the original.
func TestHistoryExportImport(t *testing.T) {
	day := 24 * time.Hour
	for _, hl := range []time.Duration{0, 30 * day} {
		orig := NewHistory(HistoryConfig{HalfLife: hl, MaxItems: 3})
		orig.AddBasket("p", []string{"a", "b"}, t0)
		orig.AddBasket("p", []string{"b", "c"}, t0.Add(day))
		orig.AddBasket("p", []string{"a"}, t0.Add(-day)) // late
		s, ok := orig.Export("p")
		if !ok || len(s.Items) != 3 || s.Items[0].Item != "a" || s.Baskets != 3 {
			t.Fatalf("half-life %s: Export = %+v, %v", hl, s, ok)
		}
		copyH := NewHistory(HistoryConfig{HalfLife: hl, MaxItems: 3})
		copyH.Import("p", s)
		for _, h := range []*History{orig, copyH} {
			h.AddBasket("p", []string{"d", "a"}, t0.Add(2*day)) // evicts one item
		}
		a, b := orig.Snapshot("p", t0.Add(3*day)), copyH.Snapshot("p", t0.Add(3*day))
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("half-life %s: after a round trip and one more basket\n%+v\nwant\n%+v", hl, b, a)
		}
		if len(a.Items) != 3 {
			t.Errorf("half-life %s: %d items, want the cap of 3", hl, len(a.Items))
		}
		copyH.Forget("p")
		if _, ok := copyH.Export("p"); ok || copyH.Profiles() != 0 {
			t.Errorf("Forget left the profile")
		}
	}
}
