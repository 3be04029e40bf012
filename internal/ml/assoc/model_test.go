package assoc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

// The four baskets {a,b,c} {a,b} {a,c} {b,d}: B = 4, n = a3 b3 c2 d1,
// together counts ab 2, ac 2, bc 1, bd 1.
func smallModel() *Model {
	m := New(Config{})
	for _, b := range [][]string{{"a", "b", "c"}, {"b", "a"}, {"c", "a", "a"}, {"b", "d", ""}} {
		m.AddBasket(b)
	}
	return m
}

func TestCountsAndRules(t *testing.T) {
	m := smallModel()
	if s := m.Stats(); s.Items != 4 || s.Baskets != 4 || s.Pairs != 8 {
		t.Fatalf("stats %+v, want 4 items, 4 baskets, 8 directed counters", s)
	}
	for _, c := range []struct {
		item string
		n    float64
	}{{"a", 3}, {"b", 3}, {"c", 2}, {"d", 1}, {"zz", 0}} {
		if got := m.Count(c.item); got != c.n {
			t.Errorf("Count(%s) = %g, want %g", c.item, got, c.n)
		}
	}
	for _, c := range []struct {
		a, b string
		want Rule
	}{
		{"a", "b", Rule{Count: 2, Support: 0.5, Confidence: 2.0 / 3, Lift: 8.0 / 9}},
		{"a", "c", Rule{Count: 2, Support: 0.5, Confidence: 2.0 / 3, Lift: 4.0 / 3}},
		{"c", "a", Rule{Count: 2, Support: 0.5, Confidence: 1, Lift: 4.0 / 3}},
		{"b", "c", Rule{Count: 1, Support: 0.25, Confidence: 1.0 / 3, Lift: 2.0 / 3}},
		{"d", "b", Rule{Count: 1, Support: 0.25, Confidence: 1, Lift: 4.0 / 3}},
		{"a", "d", Rule{}},
		{"a", "a", Rule{}},
	} {
		got := m.Rule(Together, c.a, c.b)
		if !near(got.Count, c.want.Count) || !near(got.Support, c.want.Support) || !near(got.Confidence, c.want.Confidence) || !near(got.Lift, c.want.Lift) {
			t.Errorf("Rule(%s → %s) = %+v, want %+v", c.a, c.b, got, c.want)
		}
	}
}

func TestMeasures(t *testing.T) {
	m := smallModel()
	for _, c := range []struct {
		meas    Measure
		damping float64
		want    []Neighbour // of a
	}{
		{Cosine, 0, []Neighbour{{"c", 2, 2 / math.Sqrt(6)}, {"b", 2, 2.0 / 3}}},
		{Confidence, 0, []Neighbour{{"b", 2, 2.0 / 3}, {"c", 2, 2.0 / 3}}}, // tie on strength and count: by name
		{Lift, 0, []Neighbour{{"c", 2, 4.0 / 3}, {"b", 2, 8.0 / 9}}},
		{Jaccard, 0, []Neighbour{{"c", 2, 2.0 / 3}, {"b", 2, 0.5}}},
		{Confidence, 0.5, []Neighbour{{"c", 2, 2.0 / 3 / math.Sqrt(2)}, {"b", 2, 2.0 / 3 / math.Sqrt(3)}}},
		{Confidence, 1, []Neighbour{{"c", 2, 1.0 / 3}, {"b", 2, 2.0 / 9}}},
	} {
		t.Run(fmt.Sprintf("%v/%g", c.meas, c.damping), func(t *testing.T) {
			got := m.Neighbours("a", c.meas, c.damping, 0, 0)
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i].Item != c.want[i].Item || got[i].Count != c.want[i].Count || !near(got[i].Strength, c.want[i].Strength) {
					t.Fatalf("got %+v, want %+v", got, c.want)
				}
			}
		})
	}
	if got := m.Neighbours("b", Cosine, 0, 2, 0); len(got) != 1 || got[0].Item != "a" {
		t.Errorf("min count 2 should leave only b → a, got %+v", got)
	}
	if got := m.Neighbours("b", Cosine, 0, 0, 1); len(got) != 1 || got[0].Item != "a" {
		t.Errorf("n = 1 should keep the strongest (a: 2/3 against c 1/√6, d 1/√3), got %+v", got)
	}
}

func TestTransitions(t *testing.T) {
	m := New(Config{})
	m.AddTransition([]string{"a", "b"}, []string{"a", "c"})
	m.AddTransition([]string{"b"}, []string{"b", "d"})
	m.AddTransition(nil, []string{"x"}) // no previous basket: nothing
	if s := m.Stats(); s.Transitions != 2 || s.Pairs != 6 {
		t.Fatalf("stats %+v, want 2 transitions and 6 next-basket counters", s)
	}
	for _, c := range []struct {
		a, b string
		want Rule
	}{
		{"a", "a", Rule{Count: 1, Support: 0.5, Confidence: 1, Lift: 2}},
		{"b", "a", Rule{Count: 1, Support: 0.5, Confidence: 0.5, Lift: 1}},
		{"b", "b", Rule{Count: 1, Support: 0.5, Confidence: 0.5, Lift: 1}},
		{"a", "d", Rule{}},
	} {
		got := m.Rule(Next, c.a, c.b)
		if !near(got.Count, c.want.Count) || !near(got.Support, c.want.Support) || !near(got.Confidence, c.want.Confidence) || !near(got.Lift, c.want.Lift) {
			t.Errorf("Rule(Next, %s → %s) = %+v, want %+v", c.a, c.b, got, c.want)
		}
	}
	got := m.NextNeighbours("b", 0, 0)
	want := []string{"a", "b", "c", "d"} // all 0.5, count 1: by name
	if len(got) != len(want) {
		t.Fatalf("NextNeighbours(b) = %+v", got)
	}
	for i := range want {
		if got[i].Item != want[i] || got[i].Strength != 0.5 {
			t.Fatalf("NextNeighbours(b) = %+v, want %v at 0.5", got, want)
		}
	}
}

func TestSession(t *testing.T) {
	m := New(Config{SessionWeight: 0.25})
	m.AddSession([]string{"v1", "v2", "b"}, []string{"b"})
	for _, c := range []struct {
		a, b string
		want float64
	}{{"v1", "b", 0.25}, {"v2", "b", 0.25}, {"b", "v1", 0}, {"b", "b", 0}} {
		if got := m.PairCount(Together, c.a, c.b); got != c.want {
			t.Errorf("PairCount(%s → %s) = %g, want %g", c.a, c.b, got, c.want)
		}
	}
	if m.Count("v1") != 0.25 || m.Count("b") != 0.25 || m.Stats().Baskets != 0 {
		t.Errorf("counts v1 %g b %g baskets %g: views add the session weight, no basket", m.Count("v1"), m.Count("b"), m.Stats().Baskets)
	}
}

// zipfBaskets draws n baskets of 1–maxSize distinct items from a Zipf
// popularity over items, deterministically.
func zipfBaskets(seed uint64, n, items, maxSize int) [][]string {
	r := rand.New(rand.NewPCG(seed, 7))
	z := rand.NewZipf(r, 1.1, 4, uint64(items-1))
	out := make([][]string, n)
	for i := range out {
		size := 1 + r.IntN(maxSize)
		for range size {
			out[i] = append(out[i], fmt.Sprintf("i%04d", z.Uint64()))
		}
	}
	return out
}

// TestPruningBound checks the Misra–Gries guarantees of the package doc
// against exact counting (a plain map, a different implementation) on a
// skewed stream that overflows small tables many times.
func TestPruningBound(t *testing.T) {
	for _, capacity := range []int{4, 16, 64} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			m := New(Config{Capacity: capacity})
			exact := map[[2]string]float64{}
			offered := map[string]float64{}
			for _, b := range zipfBaskets(uint64(capacity), 4000, 400, 12) {
				m.AddBasket(b)
				set := slices.Compact(slices.Sorted(slices.Values(b)))
				for _, x := range set {
					for _, y := range set {
						if x != y {
							exact[[2]string{x, y}]++
							offered[x]++
						}
					}
				}
			}
			st := m.Stats()
			if st.Pairs > m.MaxPairs() {
				t.Fatalf("%d counters exceed the bound %d", st.Pairs, m.MaxPairs())
			}
			var counters, kept, pruned int
			for _, it := range m.items {
				pr := m.Pruning(it.name, Together)
				counters += pr.Counters
				if pr.Counters > capacity {
					t.Fatalf("item %s holds %d counters, capacity %d", it.name, pr.Counters, capacity)
				}
				if !near(pr.Offered, offered[it.name]) {
					t.Fatalf("item %s: offered %g, exact %g", it.name, pr.Offered, offered[it.name])
				}
				if bound := 2 * pr.Offered / float64(capacity+1); pr.Pruned > bound+1e-9 {
					t.Fatalf("item %s: pruned %g exceeds 2N/(C+1) = %g", it.name, pr.Pruned, bound)
				}
				if pr.Pruned > 0 {
					pruned++
				}
			}
			if counters != st.Pairs {
				t.Fatalf("tables hold %d counters, stats say %d", counters, st.Pairs)
			}
			for pair, ex := range exact {
				got := m.PairCount(Together, pair[0], pair[1])
				pr := m.Pruning(pair[0], Together)
				if got > ex+1e-9 || ex-got > pr.Pruned+1e-9 {
					t.Fatalf("pair %v: kept %g, exact %g, pruned %g: want exact-pruned <= kept <= exact", pair, got, ex, pr.Pruned)
				}
				if ex > 2*pr.Offered/float64(capacity+1) && got == 0 {
					t.Fatalf("pair %v: exact %g above 2N/(C+1) = %g was dropped", pair, ex, 2*pr.Offered/float64(capacity+1))
				}
				if got > 0 {
					kept++
				}
			}
			if pruned == 0 {
				t.Fatalf("no table overflowed: the test does not exercise pruning")
			}
			t.Logf("capacity %d: %d of %d pairs kept, %d items pruned, %d counters (bound %d)", capacity, kept, len(exact), pruned, st.Pairs, m.MaxPairs())
		})
	}
}

// TestOrderIndependent: shuffling items within baskets (and repeating
// some) changes nothing, pruning included.
func TestOrderIndependent(t *testing.T) {
	baskets := zipfBaskets(3, 2000, 200, 15)
	a, b := New(Config{Capacity: 8}), New(Config{Capacity: 8})
	r := rand.New(rand.NewPCG(9, 9))
	for _, bk := range baskets {
		a.AddBasket(bk)
		sh := slices.Clone(bk)
		r.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		b.AddBasket(append(sh, sh[0]))
	}
	for _, it := range a.items {
		x, y := a.Neighbours(it.name, Cosine, 0, 0, 0), b.Neighbours(it.name, Cosine, 0, 0, 0)
		if !slices.Equal(x, y) {
			t.Fatalf("neighbours of %s differ:\n%+v\n%+v", it.name, x, y)
		}
	}
}

func TestMaxBasketItems(t *testing.T) {
	var basket []string
	for i := range 10 {
		basket = append(basket, fmt.Sprint("x", i))
	}
	m1, m2 := New(Config{MaxBasketItems: 4}), New(Config{MaxBasketItems: 4})
	m1.AddBasket(basket)
	rev := slices.Clone(basket)
	slices.Reverse(rev)
	m2.AddBasket(rev)
	if s := m1.Stats(); s.Pairs != 4*3 {
		t.Fatalf("a 10-item basket capped at 4 items should give 12 counters, got %d", s.Pairs)
	}
	var sampled int
	for _, x := range basket {
		if len(m1.Neighbours(x, Cosine, 0, 0, 0)) > 0 {
			sampled++
		}
		if !slices.Equal(m1.Neighbours(x, Cosine, 0, 0, 0), m2.Neighbours(x, Cosine, 0, 0, 0)) {
			t.Fatalf("the sampled items depend on the order of the basket (item %s)", x)
		}
	}
	if sampled != 4 {
		t.Fatalf("%d items have neighbours, want the 4 sampled", sampled)
	}
	for _, it := range basket {
		if m1.Count(it) != 1 {
			t.Fatalf("Count(%s) = %g: every item is counted, not only the sampled ones", it, m1.Count(it))
		}
	}
}
