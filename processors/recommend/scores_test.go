package recommend

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// simulateBase draws n customers from a BG/NBD-like process over a year:
// first orders spread over the year, daily order rates from a Gamma,
// dropping out after an order with a Beta-distributed probability, order
// values around a per-customer mean.
func simulateBase(n int, seed uint64) ([]summary, int64) {
	r := rand.New(rand.NewPCG(seed, 1))
	asOf := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	year := 365 * int64(dayMs)
	out := make([]summary, n)
	for i := range out {
		at := asOf - year + r.Int64N(year)
		rate := r.ExpFloat64() / 15 // orders per day, mean one every 15 days
		drop := r.Float64() * 0.5
		mean := 10 + r.ExpFloat64()*40
		var s summary
		for at <= asOf {
			s.add(at, mean*(0.5+r.Float64()))
			if r.Float64() < drop {
				break
			}
			at += int64(r.ExpFloat64() / rate * dayMs)
		}
		out[i] = s
	}
	return out, asOf
}

// TestFitAndScore fits the three models on a simulated base and checks that
// customers at the extremes get the scores they should.
func TestFitAndScore(t *testing.T) {
	cfg := DefaultConfig()
	base, asOf := simulateBase(1000, 7)
	sm, err := fitScores(base, asOf, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sm.BGNBD == nil || sm.Gamma == nil || sm.Customers != 1000 {
		t.Fatalf("fit = %+v: want BG/NBD and Gamma-Gamma on 1000 customers", sm)
	}
	if err := sm.BGNBD.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Logf("BG/NBD %+v, Gamma-Gamma %+v", *sm.BGNBD, *sm.Gamma)
	day := int64(dayMs)
	champion := summary{Orders: 30, Revenue: 3000, First: asOf - 300*day, FirstRevenue: 100, Last: asOf - day}
	lapsed := summary{Orders: 8, Revenue: 400, First: asOf - 360*day, FirstRevenue: 50, Last: asOf - 300*day}
	once := summary{Orders: 1, Revenue: 5, First: asOf - 340*day, FirstRevenue: 5, Last: asOf - 340*day}
	c, l, o := sm.score(champion, asOf), sm.score(lapsed, asOf), sm.score(once, asOf)
	if c.RFMSegment != "champions" || c.R != 5 || c.F != 5 || c.M != 5 {
		t.Errorf("champion scored %d%d%d %s", c.R, c.F, c.M, c.RFMSegment)
	}
	if l.R > 2 || (l.RFMSegment != "at_risk" && l.RFMSegment != "cannot_lose_them") {
		t.Errorf("a frequent buyer gone for 300 days scored R%d %s, want at risk or cannot lose them", l.R, l.RFMSegment)
	}
	if o.RFMSegment != "lost" && o.RFMSegment != "hibernating" {
		t.Errorf("a one-off small buyer of 340 days ago scored %d%d%d %s", o.R, o.F, o.M, o.RFMSegment)
	}
	if !(*c.ExpectedOrders > *l.ExpectedOrders && *c.CLV > 10**l.CLV) {
		t.Errorf("expected orders %.2f vs %.2f, CLV %.2f vs %.2f: the champion should lead by far", *c.ExpectedOrders, *l.ExpectedOrders, *c.CLV, *l.CLV)
	}
	if !(*l.ChurnRisk > 0.5 && *c.ChurnRisk < 0.2 && *l.PAlive < *c.PAlive) {
		t.Errorf("churn risk lapsed %.3f champion %.3f, P(alive) %.3f %.3f", *l.ChurnRisk, *c.ChurnRisk, *l.PAlive, *c.PAlive)
	}
	if c.RecencyDays != 1 || c.Orders != 30 || !c.LastOrder.Equal(time.UnixMilli(asOf-day).UTC()) {
		t.Errorf("champion's measures %+v", c)
	}
	// A refit from the previous parameters lands on the same optimum.
	sm2, err := fitScores(base, asOf, sm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(sm2.BGNBD.R-sm.BGNBD.R) / sm.BGNBD.R; d > 1e-3 {
		t.Errorf("warm refit r = %g, cold %g", sm2.BGNBD.R, sm.BGNBD.R)
	}
	if _, err := fitScores(base[:5], asOf, nil, cfg); err == nil {
		t.Error("a fit on 5 customers succeeded; want the minimum enforced")
	}
}

// TestScoreWithoutRepeatBuyers: a base where nobody bought twice gets RFM
// but no BG/NBD or Gamma-Gamma, and nulls in those fields.
func TestScoreWithoutRepeatBuyers(t *testing.T) {
	base, asOf := simulateBase(200, 3)
	for i := range base {
		base[i] = summary{Orders: 1, Revenue: base[i].FirstRevenue, First: base[i].First, FirstRevenue: base[i].FirstRevenue, Last: base[i].First}
	}
	sm, err := fitScores(base, asOf, nil, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if sm.BGNBD != nil || sm.Gamma != nil {
		t.Fatalf("fits without repeat buyers: %+v %+v", sm.BGNBD, sm.Gamma)
	}
	s := sm.score(base[0], asOf)
	if s.RFMSegment == "" || s.ExpectedOrders != nil || s.CLV != nil || s.ChurnRisk != nil {
		t.Errorf("scores %+v: want RFM only", s)
	}
}

// BenchmarkFitScores measures one refit (RFM, BG/NBD and Gamma-Gamma, cold
// and warm-started from the previous fit) on a simulated base the size of
// the default sample bound.
//
//	go test -run ^$ -bench FitScores -benchtime 1x ./processors/recommend/
func BenchmarkFitScores(b *testing.B) {
	cfg := DefaultConfig()
	base, asOf := simulateBase(cfg.MaxFitProfiles, 7)
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			var prev *ScoreModel
			if warm {
				var err error
				if prev, err = fitScores(base, asOf, nil, cfg); err != nil {
					b.Fatal(err)
				}
				// A refit an hour later: the same customers, an hour older.
				asOf += int64(dayMs / 24)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := fitScores(base, asOf, prev, cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
