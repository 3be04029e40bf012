package clv

import (
	"fmt"
	"math"
)

// Spend is one customer's monetary summary for Gamma-Gamma: the number of
// transactions averaged (usually the repeat ones) and their mean value.
type Spend struct {
	X    float64 // transactions averaged, > 0 to take part in a fit
	Mean float64 // their mean value m_x, > 0
}

// GammaGamma holds the three Gamma-Gamma parameters: transaction values
// Gamma(P, ν) with ν ~ Gamma(Q, Gamma) (shape, rate) across customers.
type GammaGamma struct {
	P     float64 `json:"p"`
	Q     float64 `json:"q"`
	Gamma float64 `json:"gamma"`
}

// Validate reports parameters outside the model.
func (g GammaGamma) Validate() error {
	for _, v := range []float64{g.P, g.Q, g.Gamma} {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("Gamma-Gamma parameters %+v: each must be positive and finite", g)
		}
	}
	return nil
}

// LogLikelihood returns the log density of s.Mean given s.X (package doc;
// Fader & Hardie 2013, note 025).
func (g GammaGamma) LogLikelihood(s Spend) float64 {
	px := g.P * s.X
	return lgamma(px+g.Q) - lgamma(px) - lgamma(g.Q) + g.Q*math.Log(g.Gamma) +
		(px-1)*math.Log(s.Mean) + px*math.Log(s.X) - (px+g.Q)*math.Log(g.Gamma+s.X*s.Mean)
}

// TotalLogLikelihood sums LogLikelihood over spends.
func (g GammaGamma) TotalLogLikelihood(ss []Spend) float64 {
	var t float64
	for _, s := range ss {
		t += g.LogLikelihood(s)
	}
	return t
}

// Mean returns the population mean transaction value pγ/(q−1) (+Inf when
// q ≤ 1: the mean does not exist).
func (g GammaGamma) Mean() float64 {
	if g.Q <= 1 {
		return math.Inf(1)
	}
	return g.P * g.Gamma / (g.Q - 1)
}

// ConditionalMean returns E[M | x, m_x], the expected value of this
// customer's future transactions: (γ + x·m_x)·p / (px + q − 1). Without
// observed transactions it is the population mean.
func (g GammaGamma) ConditionalMean(s Spend) float64 {
	if s.X <= 0 {
		return g.Mean()
	}
	return (g.Gamma + s.X*s.Mean) * g.P / (g.P*s.X + g.Q - 1)
}

// FitGammaGamma returns the maximum-likelihood Gamma-Gamma parameters for
// the spends with X > 0 (the others carry no information), starting from
// start (nil: p = q = γ = 1).
func FitGammaGamma(ss []Spend, start *GammaGamma) (GammaGamma, FitResult, error) {
	var use []Spend
	for _, s := range ss {
		if s.X <= 0 {
			continue
		}
		if !(s.Mean > 0) || math.IsInf(s.Mean, 0) {
			return GammaGamma{}, FitResult{}, fmt.Errorf("fitting Gamma-Gamma: spend %+v: the mean value must be positive", s)
		}
		use = append(use, s)
	}
	if len(use) == 0 {
		return GammaGamma{}, FitResult{}, ErrNoCustomers
	}
	st := GammaGamma{P: 1, Q: 1, Gamma: 1}
	if start != nil {
		if err := start.Validate(); err != nil {
			return GammaGamma{}, FitResult{}, fmt.Errorf("fitting Gamma-Gamma from a start: %w", err)
		}
		st = *start
	}
	n := float64(len(use))
	x, res, err := maximize(func(th []float64) float64 {
		g := GammaGamma{P: math.Exp(th[0]), Q: math.Exp(th[1]), Gamma: math.Exp(th[2])}
		return g.TotalLogLikelihood(use) / n
	}, []float64{math.Log(st.P), math.Log(st.Q), math.Log(st.Gamma)})
	if err != nil {
		return GammaGamma{}, res, fmt.Errorf("fitting Gamma-Gamma to %d customers: %w", len(use), err)
	}
	g := GammaGamma{P: math.Exp(x[0]), Q: math.Exp(x[1]), Gamma: math.Exp(x[2])}
	res.LogLikelihood = g.TotalLogLikelihood(use)
	res.Customers = len(use)
	return g, res, nil
}
