package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/streamcdp/streamcdp/internal/ml/assoc"
	"github.com/streamcdp/streamcdp/internal/ml/clv"
)

var day0 = time.Date(2011, 1, 3, 9, 0, 0, 0, time.UTC)

// loyalBaskets: customer i has 1 + i%4 baskets, each {own-i, shared-(i%3)},
// one a day in customer order, so the split is known and buy-again is
// perfect on every test basket.
func loyalBaskets(customers int) []Basket {
	var out []Basket
	for round := range 4 {
		for i := range customers {
			if round >= 1+i%4 {
				continue
			}
			out = append(out, Basket{
				Customer: fmt.Sprint("c", i), Invoice: fmt.Sprintf("%d-%d", round, i),
				Time:  day0.Add(time.Duration(round*customers+i) * time.Hour),
				Items: []string{fmt.Sprint("own-", i), fmt.Sprint("shared-", i%3)},
			})
		}
	}
	return out
}

func TestSplit(t *testing.T) {
	baskets := loyalBaskets(8)
	test, val := split(baskets)
	for i, b := range baskets {
		var n, pos int // baskets of this customer, and this one's position
		for j, o := range baskets {
			if o.Customer == b.Customer {
				n++
				if j < i {
					pos++
				}
			}
		}
		if got, want := test[i], n >= 2 && pos == n-1; got != want {
			t.Errorf("basket %d (%d of %d): test %v, want %v", i, pos+1, n, got, want)
		}
		if got, want := val[i], n >= 3 && pos == n-2; got != want {
			t.Errorf("basket %d (%d of %d): validation %v, want %v", i, pos+1, n, got, want)
		}
	}
}

func smallGrid() Grid {
	return Grid{HalfLifeDays: []float64{0, 30}, MinCounts: []float64{1}, Measures: []assoc.Measure{assoc.Cosine},
		Dampings: []float64{0}, Neighbours: []int{10}, Next: []float64{0, 1}, Together: []float64{0, 0.5}}
}

func TestEvaluateRecommendationsLoyal(t *testing.T) {
	baskets := loyalBaskets(40)
	rep, err := EvaluateRecommendations(context.Background(), baskets, RecConfig{K: 10, Grid: smallGrid(), Workers: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 40 customers with 1..4 baskets: 30 have at least two, 20 at least three.
	if rep.ValidationCustomers != 20 || rep.GridPoints != 8 {
		t.Errorf("validation customers %d, grid points %d; want 20 and 8", rep.ValidationCustomers, rep.GridPoints)
	}
	byName := map[string]MethodResult{}
	for _, m := range rep.Test {
		byName[m.Method] = m
		if m.Customers != 30 {
			t.Errorf("%s scored %d customers, want 30", m.Method, m.Customers)
		}
		for _, v := range []float64{m.HitRate, m.Precision, m.Recall, m.MAP, m.RepeatShare} {
			if v < 0 || v > 1 {
				t.Errorf("%s: metric %g outside [0, 1]", m.Method, v)
			}
		}
	}
	// Each target is exactly the two items the customer always buys: buy-again
	// ranks them first and second.
	ba := byName[MethodBuyAgain]
	if ba.HitRate != 1 || math.Abs(ba.Precision-0.2) > 1e-12 || ba.Recall != 1 || ba.MAP != 1 || ba.RepeatShare != 1 {
		t.Errorf("buy-again: hit %g precision %g recall %g MAP %g repeat share %g, want 1, 0.2, 1, 1, 1", ba.HitRate, ba.Precision, ba.Recall, ba.MAP, ba.RepeatShare)
	}
	if r := byName[MethodRecommender]; r.HitRate != 1 || r.Recall != 1 {
		t.Errorf("recommender: hit %g recall %g: every mix ranks the two repeat items first here", r.HitRate, r.Recall)
	}
	if e := byName[MethodExplore]; e.RepeatHits != 0 || e.RepeatSlots != 0 {
		t.Errorf("exclude bought recommended repeat items: %d hits, %g of slots", e.RepeatHits, e.RepeatSlots)
	}
	if len(rep.Comparisons) != 4 || rep.Comparisons[0].Baseline != MethodBuyAgain {
		t.Errorf("comparisons %+v", rep.Comparisons)
	}
	if rep.ModelStats.Pairs > rep.MaxPairs {
		t.Errorf("model %+v above its bound %d", rep.ModelStats, rep.MaxPairs)
	}
	unsorted := slices.Clone(baskets)
	unsorted[0], unsorted[1] = unsorted[1], unsorted[0]
	if _, err := EvaluateRecommendations(context.Background(), unsorted, RecConfig{Grid: smallGrid()}, nil); err == nil {
		t.Error("unsorted baskets must be refused")
	}
}

// simulatedCDNOW draws customers from BG/NBD (first purchases in the first
// quarter of 1997, like CDNOW's cohort) with Gamma-Gamma amounts, as daily
// transaction lines.
func simulatedCDNOW(b clv.BGNBD, g clv.GammaGamma, n int, seed uint64) []CDNOWTxn {
	src := rand.NewPCG(seed, 3)
	r := rand.New(src)
	lam := distuv.Gamma{Alpha: b.R, Beta: b.Alpha, Src: src}
	drop := distuv.Beta{Alpha: b.A, Beta: b.B, Src: src}
	nu := distuv.Gamma{Alpha: g.Q, Beta: g.Gamma, Src: src}
	start := time.Date(1997, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(1998, 6, 30, 0, 0, 0, 0, time.UTC)
	var out []CDNOWTxn
	for id := 1; id <= n; id++ {
		l, q := lam.Rand(), drop.Rand()
		spend := distuv.Gamma{Alpha: g.P, Beta: nu.Rand(), Src: src}
		birth := start.AddDate(0, 0, r.IntN(90))
		weeks := 0.0
		for {
			d := birth.AddDate(0, 0, int(math.Round(weeks*7)))
			if d.After(end) {
				break
			}
			out = append(out, CDNOWTxn{Customer: id, Date: d, CDs: 1, Amount: spend.Rand()})
			if weeks > 0 && r.Float64() < q {
				break
			}
			weeks += r.ExpFloat64() / l
		}
	}
	return out
}

func TestEvaluateCLVSimulated(t *testing.T) {
	truth := clv.BGNBD{R: 0.5, Alpha: 10, A: 0.8, B: 2.5}
	gg := clv.GammaGamma{P: 6, Q: 4, Gamma: 15}
	txns := simulatedCDNOW(truth, gg, 6000, 21)
	rep, err := EvaluateCLV(txns, CLVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fitted %+v (truth %+v), Gamma-Gamma %+v (truth %+v), holdout %d actual, %.1f predicted",
		rep.BGNBD, truth, rep.GammaGamma, gg, rep.HoldoutActual, rep.HoldoutExpected)
	if rep.Customers != 6000 || rep.Transactions != len(txns) {
		t.Fatalf("customers %d, transactions %d", rep.Customers, rep.Transactions)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"r", rep.BGNBD.R, truth.R}, {"alpha", rep.BGNBD.Alpha, truth.Alpha}, {"a", rep.BGNBD.A, truth.A}, {"b", rep.BGNBD.B, truth.B},
		{"p", rep.GammaGamma.P, gg.P}, {"q", rep.GammaGamma.Q, gg.Q}, {"gamma", rep.GammaGamma.Gamma, gg.Gamma}} {
		if math.Abs(c.got-c.want)/c.want > 0.3 {
			t.Errorf("%s = %g, truth %g: the protocol (weeks from days, same-day merge) loses the parameters", c.name, c.got, c.want)
		}
	}
	if math.Abs(rep.HoldoutExpected-float64(rep.HoldoutActual)) > 0.1*float64(rep.HoldoutActual) {
		t.Errorf("holdout predicted %.1f, actual %d: off by more than 10%% on data from the model", rep.HoldoutExpected, rep.HoldoutActual)
	}
	var n int
	var actual float64
	for _, g := range rep.Groups {
		n += g.Customers
		actual += g.Actual * float64(g.Customers)
	}
	if n != rep.Customers || math.Abs(actual-float64(rep.HoldoutActual)) > 1e-6 {
		t.Errorf("groups hold %d customers and %g purchases, want %d and %d", n, actual, rep.Customers, rep.HoldoutActual)
	}
	for _, ds := range [][]Decile{rep.ChurnByRisk, rep.ActiveByPAct} {
		n = 0
		for _, d := range ds {
			n += d.Customers
		}
		if n != rep.Customers || len(ds) != 10 {
			t.Errorf("%d deciles hold %d customers, want 10 and %d", len(ds), n, rep.Customers)
		}
	}
	for i := 1; i < 10; i++ {
		if rep.ActiveByPAct[i].PActive < rep.ActiveByPAct[i-1].PActive || rep.ChurnByRisk[i].ChurnRisk < rep.ChurnByRisk[i-1].ChurnRisk {
			t.Errorf("deciles are not in ascending order of their score at %d", i+1)
		}
	}
	if rep.BrierPActive >= rep.BrierPAlive {
		t.Errorf("Brier P(active) %.4f not below P(alive) %.4f as a forecast of activity", rep.BrierPActive, rep.BrierPAlive)
	}
	var seg int
	for _, s := range rep.RFM {
		seg += s.Customers
	}
	if seg != rep.Customers {
		t.Errorf("RFM segments hold %d customers, want %d", seg, rep.Customers)
	}
}
