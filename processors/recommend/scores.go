package recommend

import (
	"fmt"
	"math"
	"time"

	"github.com/streamcdp/streamcdp/internal/ml/clv"
	"github.com/streamcdp/streamcdp/internal/ml/rfm"
)

// dayMs is the scores' time unit, a day, in milliseconds: BG/NBD's rates
// and the recency are per day, so the models fit a shop whose history is a
// week as well as one of years.
const dayMs = float64(24 * time.Hour / time.Millisecond)

// ScoreModel is one fit of the score models on the customer base sample:
// the RFM population, and BG/NBD and Gamma-Gamma parameters when those
// fits succeeded. It is immutable; a refit makes a new one.
type ScoreModel struct {
	// ID names the fit: its as-of time and customers, also the "model" of
	// every scores record made with it.
	ID string
	// AsOf is the store's clock at the fit (the latest order's event
	// time); Customers the sample size.
	AsOf      time.Time
	Customers int
	BGNBD     *clv.BGNBD
	Gamma     *clv.GammaGamma
	rfm       *rfm.Scorer
	asOfMs    int64
	horizon   float64 // days
	churn     float64 // days
}

// fitScores fits the models on base at asOf (ms), starting from prev's
// parameters when there are any. It fails only when base is too small for
// RFM; a BG/NBD or Gamma-Gamma fit that fails leaves that part nil.
func fitScores(base []summary, asOf int64, prev *ScoreModel, cfg Config) (*ScoreModel, error) {
	if len(base) < cfg.MinFitCustomers {
		return nil, fmt.Errorf("%d customers, a fit needs %d", len(base), cfg.MinFitCustomers)
	}
	sm := &ScoreModel{AsOf: time.UnixMilli(asOf).UTC(), Customers: len(base), asOfMs: asOf,
		horizon: float64(cfg.HorizonDays), churn: float64(cfg.ChurnDays)}
	sm.ID = fmt.Sprintf("rfm+bgnbd+gg@%s/n=%d", sm.AsOf.Format(time.RFC3339), len(base))
	pop := make([]rfm.Customer, len(base))
	var cs []clv.Customer
	var ss []clv.Spend
	for i, s := range base {
		pop[i] = rfm.Customer{Recency: float64(asOf-s.Last) / dayMs, Frequency: float64(s.Orders), Monetary: s.Revenue}
		if c := bgCustomer(s, asOf); c.T > 0 && c.Validate() == nil {
			cs = append(cs, c)
		}
		if sp := spend(s); sp.X > 0 && sp.Mean > 0 {
			ss = append(ss, sp)
		}
	}
	sm.rfm = rfm.NewScorer(pop)
	var startB *clv.BGNBD
	var startG *clv.GammaGamma
	if prev != nil {
		startB, startG = prev.BGNBD, prev.Gamma
	}
	// BG/NBD's drop-out and Gamma-Gamma's spread are learned from customers
	// who bought again: with a handful of them the likelihood is flat in
	// some direction and the optimum runs off to extreme parameters (a
	// store's first days gave r = 3.8e6, a = 9e-7), so both fits wait for
	// MinFitCustomers repeat buyers.
	if len(cs) >= cfg.MinFitCustomers && repeaters(cs) >= cfg.MinFitCustomers {
		if p, _, err := clv.FitBGNBD(cs, startB); err == nil {
			sm.BGNBD = &p
		}
	}
	if len(ss) >= cfg.MinFitCustomers {
		if g, _, err := clv.FitGammaGamma(ss, startG); err == nil && !math.IsInf(g.Mean(), 0) {
			sm.Gamma = &g
		}
	}
	return sm, nil
}

func repeaters(cs []clv.Customer) int {
	n := 0
	for _, c := range cs {
		if c.X > 0 {
			n++
		}
	}
	return n
}

// bgCustomer is s as BG/NBD sees it at ms: repeat orders, the last one's
// time and the customer's age, in days.
func bgCustomer(s summary, at int64) clv.Customer {
	c := clv.Customer{X: float64(s.Orders - 1), T: float64(at-s.First) / dayMs}
	if c.X > 0 {
		c.TX = float64(s.Last-s.First) / dayMs
	}
	return c
}

// spend is s as Gamma-Gamma sees it: the repeat orders and their mean value
// (the first order is left out, as in Fader & Hardie's CDNOW analysis).
func spend(s summary) clv.Spend {
	if s.Orders < 2 {
		return clv.Spend{}
	}
	x := float64(s.Orders - 1)
	return clv.Spend{X: x, Mean: (s.Revenue - s.FirstRevenue) / x}
}

// score returns the scores of a profile with summary s evaluated at ms:
// everything but the identity fields (profile, version, cause, trigger).
func (sm *ScoreModel) score(s summary, at int64) Scores {
	at = max(at, s.Last) // a late order is scored as of the profile's latest
	out := Scores{
		Time: time.UnixMilli(at).UTC(), Model: sm.ID, Orders: s.Orders, Revenue: s.Revenue,
		FirstOrder: time.UnixMilli(s.First).UTC(), LastOrder: time.UnixMilli(s.Last).UTC(),
		RecencyDays: float64(at-s.Last) / dayMs, HorizonDays: int(sm.horizon), ChurnDays: int(sm.churn),
	}
	// The quintiles rank by recency at the fit's as-of time, that is by the
	// last order's time: a profile that ordered since ranks above everyone.
	q := sm.rfm.Score(rfm.Customer{Recency: float64(sm.asOfMs-s.Last) / dayMs, Frequency: float64(s.Orders), Monetary: s.Revenue})
	out.R, out.F, out.M, out.RFMSegment = q.R, q.F, q.M, q.Segment.String()
	if sm.BGNBD == nil {
		return out
	}
	c := bgCustomer(s, at)
	// A first order placed at this very moment has age 0, outside the
	// model: a minute old is the same customer for every purpose.
	c.T = max(c.T, c.TX, 1.0/(24*60))
	if e, err := sm.BGNBD.ConditionalExpected(c, sm.horizon); err == nil && !math.IsNaN(e) {
		out.ExpectedOrders = &e
		if sm.Gamma != nil {
			v := e * sm.Gamma.ConditionalMean(spend(s))
			out.CLV = &v
		}
	}
	alive, risk := sm.BGNBD.PAlive(c), 1-sm.BGNBD.PActive(c, sm.churn)
	out.PAlive, out.ChurnRisk = &alive, &risk
	return out
}
