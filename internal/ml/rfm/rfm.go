// Package rfm scores customers by recency, frequency and monetary value
// (RFM) and names the usual RFM segments.
//
// # Scores
//
// Recency is the time since a customer's last purchase (days), frequency
// the number of purchases (orders) and monetary the total spent, all as of
// one date. Each is turned into a quintile score 1–5 (5 best: most recent,
// most frequent, highest spend) relative to the scored customers:
//
//	score(v) = 1 + ⌊5 · (customers with a strictly worse value) / n⌋
//
// which gives five equal groups when values are distinct, and gives equal
// values equal scores (a customer's score never depends on the order of the
// input). With ties the groups are unequal: when 60% of customers bought
// once, all of them score F = 1 and the next value scores 4.
//
// # Segments
//
// The named segments follow the R and FM ranges of the widely used table
// popularised by Putler's RFM guide and reproduced, for example, in
// churned.io's RFM model documentation: Champions R 4–5 / FM 4–5, Loyal R
// 2–5 / FM 3–5, Potential loyalist R 3–5 / FM 1–3, New customers R 4–5 / FM
// ≤ 1, Promising R 3–4 / FM ≤ 1, Need attention R 2–3 / FM 2–3, About to
// sleep R 2–3 / FM ≤ 2, At risk R ≤ 2 / FM 2–5, Cannot lose them R ≤ 1 / FM
// 4–5, Hibernating R 1–2 / FM 1–2, Lost R ≤ 2 / FM ≤ 2, where FM is the mean
// of the F and M scores rounded half up. Those ranges overlap, so this
// package resolves every (R, FM) cell to exactly one segment, the narrower
// range winning (DefaultGrid; R rows from 5 down, FM columns 1 to 5):
//
//	R5  new customers  potential loyalist  loyal           champions        champions
//	R4  new customers  potential loyalist  loyal           champions        champions
//	R3  promising      need attention      need attention  loyal            loyal
//	R2  about to sleep hibernating         at risk         at risk          at risk
//	R1  lost           hibernating         at risk         cannot lose them cannot lose them
//
// The grid is data: Grid.ScoreAll scores with another one.
//
// # Cost
//
// Scoring n customers sorts each measure once: O(n log n) time, O(n)
// memory. Scores are relative, so they change when other customers do;
// rescore the whole base on a schedule rather than per event.
package rfm

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Customer is one customer's RFM measures.
type Customer struct {
	ID        string  `json:"id"`
	Recency   float64 `json:"recency_days"` // time since the last purchase, days
	Frequency float64 `json:"frequency"`    // number of purchases
	Monetary  float64 `json:"monetary"`     // total spent
}

// Purchase is one order.
type Purchase struct {
	Customer string
	Time     time.Time
	Amount   float64
}

// Summarise returns the RFM measures of every customer with a purchase at or
// before asOf, sorted by ID. Later purchases are ignored.
func Summarise(purchases []Purchase, asOf time.Time) []Customer {
	type agg struct {
		last time.Time
		n    float64
		sum  float64
	}
	by := map[string]*agg{}
	for _, p := range purchases {
		if p.Time.After(asOf) {
			continue
		}
		a := by[p.Customer]
		if a == nil {
			a = &agg{last: p.Time}
			by[p.Customer] = a
		}
		if p.Time.After(a.last) {
			a.last = p.Time
		}
		a.n++
		a.sum += p.Amount
	}
	out := make([]Customer, 0, len(by))
	for id, a := range by {
		out = append(out, Customer{ID: id, Recency: asOf.Sub(a.last).Hours() / 24, Frequency: a.n, Monetary: a.sum})
	}
	slices.SortFunc(out, func(a, b Customer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Quintiles returns the 1–5 score of each value (package doc); higher values
// are better when higherIsBetter, lower ones otherwise. NaN values score 1.
func Quintiles(values []float64, higherIsBetter bool) []int {
	n := len(values)
	out := make([]int, n)
	if n == 0 {
		return out
	}
	worse := func(v float64) float64 { // a key where smaller is worse
		if math.IsNaN(v) {
			return math.Inf(-1)
		}
		if higherIsBetter {
			return v
		}
		return -v
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(worse(values[a]), worse(values[b])) })
	for pos := 0; pos < n; {
		end := pos
		for end < n && worse(values[idx[end]]) == worse(values[idx[pos]]) {
			end++
		}
		s := 1 + 5*pos/n // pos customers are strictly worse than this run of ties
		for _, i := range idx[pos:end] {
			out[i] = min(s, 5)
		}
		pos = end
	}
	return out
}

// Segment is a named RFM segment.
type Segment int

// The segments, in the order of the package doc's table.
const (
	Champions Segment = iota + 1
	Loyal
	PotentialLoyalist
	NewCustomers
	Promising
	NeedAttention
	AboutToSleep
	AtRisk
	CannotLose
	Hibernating
	Lost
)

var segmentNames = map[Segment]string{
	Champions: "champions", Loyal: "loyal", PotentialLoyalist: "potential_loyalist", NewCustomers: "new_customers",
	Promising: "promising", NeedAttention: "need_attention", AboutToSleep: "about_to_sleep", AtRisk: "at_risk",
	CannotLose: "cannot_lose_them", Hibernating: "hibernating", Lost: "lost",
}

// Segments lists every segment in order.
func Segments() []Segment {
	return []Segment{Champions, Loyal, PotentialLoyalist, NewCustomers, Promising, NeedAttention, AboutToSleep, AtRisk, CannotLose, Hibernating, Lost}
}

// String returns the segment's name as used in segment conditions
// ("champions", "at_risk", ...).
func (s Segment) String() string {
	if n, ok := segmentNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Segment(%d)", int(s))
}

// ParseSegment is the inverse of String.
func ParseSegment(name string) (Segment, error) {
	for s, n := range segmentNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown RFM segment %q", name)
}

// MarshalText writes the segment's name.
func (s Segment) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a segment's name.
func (s *Segment) UnmarshalText(b []byte) error {
	v, err := ParseSegment(string(b))
	*s = v
	return err
}

// Grid maps (R, FM) scores to segments: Grid[R-1][FM-1].
type Grid [5][5]Segment

// DefaultGrid is the table of the package doc.
var DefaultGrid = Grid{
	{Lost, Hibernating, AtRisk, CannotLose, CannotLose},            // R1
	{AboutToSleep, Hibernating, AtRisk, AtRisk, AtRisk},            // R2
	{Promising, NeedAttention, NeedAttention, Loyal, Loyal},        // R3
	{NewCustomers, PotentialLoyalist, Loyal, Champions, Champions}, // R4
	{NewCustomers, PotentialLoyalist, Loyal, Champions, Champions}, // R5
}

// FM returns the combined frequency-monetary score: the mean of f and m
// rounded half up.
func FM(f, m int) int { return (f + m + 1) / 2 }

// Segment returns the segment of scores r, f, m (each 1–5; out-of-range
// scores are clamped).
func (g *Grid) Segment(r, f, m int) Segment {
	clamp := func(v int) int { return min(max(v, 1), 5) }
	return g[clamp(r)-1][clamp(FM(clamp(f), clamp(m)))-1]
}

// Score is one customer's RFM scores and segment.
type Score struct {
	Customer
	R       int     `json:"r"`
	F       int     `json:"f"`
	M       int     `json:"m"`
	Segment Segment `json:"segment"`
}

// ScoreAll scores customers relative to each other and names their
// segments with DefaultGrid. The result is in the input order.
func ScoreAll(cs []Customer) []Score { return DefaultGrid.ScoreAll(cs) }

// ScoreAll is the package-level ScoreAll with grid g.
func (g *Grid) ScoreAll(cs []Customer) []Score {
	rec := make([]float64, len(cs))
	freq := make([]float64, len(cs))
	mon := make([]float64, len(cs))
	for i, c := range cs {
		rec[i], freq[i], mon[i] = c.Recency, c.Frequency, c.Monetary
	}
	r, f, m := Quintiles(rec, false), Quintiles(freq, true), Quintiles(mon, true)
	out := make([]Score, len(cs))
	for i, c := range cs {
		out[i] = Score{Customer: c, R: r[i], F: f[i], M: m[i], Segment: g.Segment(r[i], f[i], m[i])}
	}
	return out
}

// Scorer scores customers one at a time against a fixed population, for a
// stream that scores each customer when she buys instead of the whole base
// at once: a member of the population gets exactly the score ScoreAll gives
// her, any other customer the score she would get with the population's
// counts (customers strictly worse, over the population's size). Building
// it sorts each measure once, O(n log n); a score costs O(log n).
type Scorer struct {
	grid           *Grid
	rec, freq, mon []float64 // ascending, in a key where smaller is worse
}

// NewScorer returns a Scorer over population with DefaultGrid.
func NewScorer(population []Customer) *Scorer { return DefaultGrid.NewScorer(population) }

// NewScorer is the package-level NewScorer with grid g.
func (g *Grid) NewScorer(population []Customer) *Scorer {
	s := &Scorer{grid: g, rec: make([]float64, len(population)), freq: make([]float64, len(population)), mon: make([]float64, len(population))}
	for i, c := range population {
		s.rec[i], s.freq[i], s.mon[i] = worseKey(c.Recency, false), worseKey(c.Frequency, true), worseKey(c.Monetary, true)
	}
	slices.Sort(s.rec)
	slices.Sort(s.freq)
	slices.Sort(s.mon)
	return s
}

// worseKey maps a measure to a key where smaller is worse, NaN worst of all,
// the order Quintiles ranks by.
func worseKey(v float64, higherIsBetter bool) float64 {
	switch {
	case math.IsNaN(v):
		return math.Inf(-1)
	case higherIsBetter:
		return v
	}
	return -v
}

// Len returns the population's size.
func (s *Scorer) Len() int { return len(s.rec) }

// Score returns c's scores and segment. With an empty population every
// score is 1.
func (s *Scorer) Score(c Customer) Score {
	q := func(sorted []float64, key float64) int {
		if len(sorted) == 0 {
			return 1
		}
		worse, _ := slices.BinarySearch(sorted, key) // values strictly below key
		return min(1+5*worse/len(sorted), 5)
	}
	r, f, m := q(s.rec, worseKey(c.Recency, false)), q(s.freq, worseKey(c.Frequency, true)), q(s.mon, worseKey(c.Monetary, true))
	return Score{Customer: c, R: r, F: f, M: m, Segment: s.grid.Segment(r, f, m)}
}
