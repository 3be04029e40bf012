package eval

import (
	"math"
	"testing"
)

func TestScoreList(t *testing.T) {
	set := func(items ...string) map[string]bool { return setOf(items) }
	for _, c := range []struct {
		name   string
		recs   []string
		target map[string]bool
		k      int
		want   Scores
	}{
		// b at rank 2: AP = (1/2) / min(2, 3).
		{"one hit at rank 2", []string{"a", "b", "c"}, set("b", "d"), 3, Scores{Hit: 1, Precision: 1.0 / 3, Recall: 0.5, AP: 0.25, Hits: 1}},
		// ranks 1 and 3: AP = (1/1 + 2/3) / 2.
		{"hits at ranks 1 and 3", []string{"a", "b", "c", "d"}, set("a", "c"), 4, Scores{Hit: 1, Precision: 0.5, Recall: 1, AP: 5.0 / 6, Hits: 2}},
		{"no hit", []string{"x", "y"}, set("a"), 10, Scores{}},
		{"a repeated item counts once", []string{"a", "a", "b"}, set("a", "b"), 3, Scores{Hit: 1, Precision: 2.0 / 3, Recall: 1, AP: (1 + 2.0/3) / 2, Hits: 2}},
		{"only the first k count", []string{"x", "a"}, set("a"), 1, Scores{}},
		{"a short list: empty slots miss", []string{"a"}, set("a"), 10, Scores{Hit: 1, Precision: 0.1, Recall: 1, AP: 1, Hits: 1}},
		// AP divides by min(|target|, k) = 2 even though 3 items are wanted.
		{"more targets than k", []string{"a", "x"}, set("a", "b", "c"), 2, Scores{Hit: 1, Precision: 0.5, Recall: 1.0 / 3, AP: 0.5, Hits: 1}},
		{"empty target", []string{"a"}, set(), 10, Scores{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ScoreList(c.recs, c.target, c.k)
			if got.Hits != c.want.Hits || math.Abs(got.Hit-c.want.Hit) > 1e-12 || math.Abs(got.Precision-c.want.Precision) > 1e-12 ||
				math.Abs(got.Recall-c.want.Recall) > 1e-12 || math.Abs(got.AP-c.want.AP) > 1e-12 {
				t.Fatalf("ScoreList(%v, %v, %d) = %+v, want %+v", c.recs, c.target, c.k, got, c.want)
			}
		})
	}
}

func TestMethodResultAndCompare(t *testing.T) {
	bought := func(s string) bool { return s == "r" }
	var a, b MethodResult
	// Customer 1: a hits r (repeat) and e (explore); b hits nothing.
	a.add([]string{"r", "e"}, setOf([]string{"r", "e"}), 2, bought)
	b.add([]string{"x", "y"}, setOf([]string{"r", "e"}), 2, bought)
	// Customer 2: both hit r at rank 1.
	a.add([]string{"r", "z"}, setOf([]string{"r"}), 2, bought)
	b.add([]string{"r", "z"}, setOf([]string{"r"}), 2, bought)
	a.finish()
	b.finish()
	if a.Customers != 2 || a.HitRate != 1 || a.Precision != 0.75 || a.Recall != 1 || a.MAP != 1 {
		t.Errorf("a = %+v, want 2 customers, hit 1, precision 0.75, recall 1, MAP 1", a)
	}
	if a.Hits != 3 || a.RepeatHits != 2 || a.ExploreHits != 1 || math.Abs(a.RepeatShare-2.0/3) > 1e-12 || a.RepeatSlots != 0.5 {
		t.Errorf("a hits %d (repeat %d, explore %d, share %g, repeat slots %g), want 3, 2, 1, 2/3, 0.5", a.Hits, a.RepeatHits, a.ExploreHits, a.RepeatShare, a.RepeatSlots)
	}
	c := compare(&a, &b)
	// Hit differences 1 and 0: mean 0.5, sample sd √0.5, CI 1.96·√0.5/√2 = 0.98.
	if math.Abs(c.HitRate.Mean-0.5) > 1e-12 || math.Abs(c.HitRate.CI95-0.98) > 1e-12 {
		t.Errorf("hit-rate difference %+v, want 0.5 ± 0.98", c.HitRate)
	}
	if math.Abs(c.Precision.Mean-0.5) > 1e-12 || math.Abs(c.MAP.Mean-0.5) > 1e-12 {
		t.Errorf("precision %+v, MAP %+v: want means 0.5", c.Precision, c.MAP)
	}
}
