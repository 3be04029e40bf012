package rfm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestQuintiles(t *testing.T) {
	for _, c := range []struct {
		name   string
		values []float64
		higher bool
		want   []int
	}{
		{"ten distinct: five equal groups", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, true, []int{1, 1, 2, 2, 3, 3, 4, 4, 5, 5}},
		{"input order does not matter", []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, true, []int{5, 1, 5, 1, 4, 2, 4, 2, 3, 3}},
		{"lower is better (recency)", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false, []int{5, 5, 4, 4, 3, 3, 2, 2, 1, 1}},
		// Six of ten bought once: all score 1; 2 has six worse → 1+⌊3⌋ = 4;
		// 3 has seven worse → 1+⌊3.5⌋ = 4; 4 → 1+⌊4⌋ = 5; 5 → 1+⌊4.5⌋ = 5.
		{"ties share a score", []float64{1, 1, 1, 1, 1, 1, 2, 3, 4, 5}, true, []int{1, 1, 1, 1, 1, 1, 4, 4, 5, 5}},
		{"all equal", []float64{3, 3, 3}, true, []int{1, 1, 1}},
		{"one customer", []float64{42}, true, []int{1}},
		{"seven: 1+⌊5k/7⌋", []float64{1, 2, 3, 4, 5, 6, 7}, true, []int{1, 1, 2, 3, 3, 4, 5}},
		{"NaN is worst", []float64{math.NaN(), 1, 2, 3, 4}, true, []int{1, 2, 3, 4, 5}},
		{"none", nil, true, []int{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Quintiles(c.values, c.higher); !slices.Equal(got, c.want) {
				t.Fatalf("Quintiles(%v, %v) = %v, want %v", c.values, c.higher, got, c.want)
			}
		})
	}
}

func TestSegments(t *testing.T) {
	for _, c := range []struct {
		r, f, m int
		want    Segment
	}{
		{5, 5, 5, Champions},
		{4, 4, 3, Champions}, // FM = ⌊(4+3+1)/2⌋ = 4
		{4, 3, 3, Loyal},
		{3, 5, 4, Loyal},
		{5, 2, 1, PotentialLoyalist}, // FM 2
		{5, 1, 1, NewCustomers},
		{4, 1, 2, PotentialLoyalist}, // FM rounds half up to 2
		{3, 1, 1, Promising},
		{3, 2, 3, NeedAttention},
		{2, 1, 1, AboutToSleep},
		{2, 2, 2, Hibernating},
		{1, 2, 1, Hibernating},
		{2, 5, 5, AtRisk},
		{1, 3, 3, AtRisk},
		{1, 5, 4, CannotLose},
		{1, 1, 1, Lost},
		{0, 9, -3, AtRisk}, // clamped to R1 F5 M1: FM = ⌊(5+1+1)/2⌋ = 3
	} {
		if got := DefaultGrid.Segment(c.r, c.f, c.m); got != c.want {
			t.Errorf("Segment(R%d F%d M%d) = %v, want %v", c.r, c.f, c.m, got, c.want)
		}
	}
	// Every cell has a segment and every named segment has a cell.
	seen := map[Segment]bool{}
	for _, row := range DefaultGrid {
		for _, s := range row {
			if s == 0 {
				t.Fatal("a cell of DefaultGrid has no segment")
			}
			seen[s] = true
		}
	}
	for _, s := range Segments() {
		if !seen[s] {
			t.Errorf("segment %v has no cell in DefaultGrid", s)
		}
		p, err := ParseSegment(s.String())
		if err != nil || p != s {
			t.Errorf("ParseSegment(%q) = %v, %v", s.String(), p, err)
		}
	}
	if len(seen) != 11 {
		t.Errorf("%d segments in the grid, want 11", len(seen))
	}
}

func TestSummariseAndScore(t *testing.T) {
	asOf := time.Date(2011, 12, 10, 0, 0, 0, 0, time.UTC)
	day := func(d int) time.Time { return asOf.AddDate(0, 0, -d) }
	var ps []Purchase
	// Customer cN buys N times, the last time 6−N days ago, 10·N per order.
	for n := 1; n <= 5; n++ {
		for k := range n {
			ps = append(ps, Purchase{Customer: "c" + string(rune('0'+n)), Time: day(6 - n + 10*k), Amount: 10 * float64(n)})
		}
	}
	ps = append(ps, Purchase{Customer: "late", Time: asOf.Add(time.Hour), Amount: 1000}) // after asOf: ignored
	cs := Summarise(ps, asOf)
	if len(cs) != 5 {
		t.Fatalf("got %d customers, want 5 (the late one ignored): %+v", len(cs), cs)
	}
	for i, c := range cs {
		n := float64(i + 1)
		if c.ID != "c"+string(rune('1'+i)) || c.Recency != 6-n || c.Frequency != n || c.Monetary != 10*n*n {
			t.Errorf("customer %d: %+v, want recency %g frequency %g monetary %g", i, c, 6-n, n, 10*n*n)
		}
	}
	sc := ScoreAll(cs)
	// Five distinct customers: scores 1..5 on every measure, c5 best.
	for i, s := range sc {
		if s.R != i+1 || s.F != i+1 || s.M != i+1 {
			t.Errorf("%s: R%d F%d M%d, want all %d", s.ID, s.R, s.F, s.M, i+1)
		}
	}
	if sc[4].Segment != Champions || sc[0].Segment != Lost || sc[2].Segment != NeedAttention {
		t.Errorf("segments %v %v %v, want champions, lost, need attention", sc[4].Segment, sc[0].Segment, sc[2].Segment)
	}
}

// TestScorerMatchesScoreAll scores every member of random populations (with
// many ties) one at a time and expects ScoreAll's scores; outsiders better
// or worse than everyone score 5 or 1.
func TestScorerMatchesScoreAll(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 7, 10, 101, 1000} {
		cs := make([]Customer, n)
		for i := range cs {
			cs[i] = Customer{ID: fmt.Sprint(i), Recency: float64(r.IntN(60)), Frequency: float64(1 + r.IntN(4)), Monetary: math.Round(r.ExpFloat64()*100) / 4}
		}
		if n > 2 {
			cs[1].Monetary = math.NaN()
		}
		want := ScoreAll(cs)
		s := NewScorer(cs)
		if s.Len() != n {
			t.Fatalf("Len = %d, want %d", s.Len(), n)
		}
		for i, c := range cs {
			got := s.Score(c)
			if got.R != want[i].R || got.F != want[i].F || got.M != want[i].M || got.Segment != want[i].Segment {
				t.Fatalf("n=%d customer %+v: Scorer %d%d%d %s, ScoreAll %d%d%d %s", n, c, got.R, got.F, got.M, got.Segment, want[i].R, want[i].F, want[i].M, want[i].Segment)
			}
		}
		best := s.Score(Customer{Recency: -1, Frequency: 1e9, Monetary: 1e9})
		worst := s.Score(Customer{Recency: 1e9, Frequency: 0, Monetary: math.NaN()})
		if best.R != 5 || best.F != 5 || best.M != 5 || best.Segment != Champions {
			t.Errorf("n=%d: best outsider scored %+v", n, best)
		}
		if worst.R != 1 || worst.F != 1 || worst.M != 1 || worst.Segment != Lost {
			t.Errorf("n=%d: worst outsider scored %+v", n, worst)
		}
	}
	if got := NewScorer(nil).Score(Customer{Recency: 3, Frequency: 2, Monetary: 10}); got.R != 1 || got.F != 1 || got.M != 1 {
		t.Errorf("empty population: %+v, want all 1", got)
	}
}
