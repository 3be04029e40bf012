package clv

import (
	"errors"
	"fmt"
	"math"
)

// Customer is one customer's calibration-period summary for BG/NBD, all
// times in the same unit.
type Customer struct {
	X  float64 // repeat purchases (purchases after the first)
	TX float64 // time of the last repeat purchase, from the first purchase; 0 when X is 0
	T  float64 // time from the first purchase to the end of calibration
}

// Validate reports a summary the model cannot describe.
func (c Customer) Validate() error {
	switch {
	case !(c.T > 0) || math.IsInf(c.T, 0):
		return fmt.Errorf("customer summary %+v: T must be positive", c)
	case c.X < 0 || c.X != math.Trunc(c.X):
		return fmt.Errorf("customer summary %+v: X must be a whole number ≥ 0", c)
	case c.TX < 0 || c.TX > c.T:
		return fmt.Errorf("customer summary %+v: TX must lie in [0, T]", c)
	case c.X == 0 && c.TX != 0:
		return fmt.Errorf("customer summary %+v: TX must be 0 without repeat purchases", c)
	}
	return nil
}

// BGNBD holds the four BG/NBD parameters: purchase rates λ ~ Gamma(R,
// Alpha) (shape, rate; Alpha is in the customers' time unit), drop-out
// probabilities p ~ Beta(A, B).
type BGNBD struct {
	R     float64 `json:"r"`
	Alpha float64 `json:"alpha"`
	A     float64 `json:"a"`
	B     float64 `json:"b"`
}

// Validate reports parameters outside the model (every one must be positive
// and finite).
func (p BGNBD) Validate() error {
	for _, v := range []float64{p.R, p.Alpha, p.A, p.B} {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("BG/NBD parameters %+v: each must be positive and finite", p)
		}
	}
	return nil
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

// logSumExp returns log(e^x + e^y) without overflow.
func logSumExp(x, y float64) float64 {
	if x < y {
		x, y = y, x
	}
	if math.IsInf(y, -1) {
		return x
	}
	return x + math.Log1p(math.Exp(y-x))
}

// LogLikelihood returns the log of the BG/NBD likelihood of one customer
// (package doc; FHL 2005 eq. 6).
func (p BGNBD) LogLikelihood(c Customer) float64 {
	r, al, a, b, x := p.R, p.Alpha, p.A, p.B, c.X
	a1 := lgamma(r+x) - lgamma(r) + r*math.Log(al)
	a2 := lgamma(a+b) + lgamma(b+x) - lgamma(b) - lgamma(a+b+x)
	a3 := -(r + x) * math.Log(al+c.T)
	if x == 0 {
		return a1 + a2 + a3
	}
	a4 := math.Log(a) - math.Log(b+x-1) - (r+x)*math.Log(al+c.TX)
	return a1 + a2 + logSumExp(a3, a4)
}

// TotalLogLikelihood sums LogLikelihood over customers.
func (p BGNBD) TotalLogLikelihood(cs []Customer) float64 {
	var s float64
	for _, c := range cs {
		s += p.LogLikelihood(c)
	}
	return s
}

// logOdds returns log(a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)), the log of the
// odds that a customer with x > 0 has dropped out.
func (p BGNBD) logOdds(c Customer) float64 {
	return math.Log(p.A) - math.Log(p.B+c.X-1) + (p.R+c.X)*(math.Log(p.Alpha+c.T)-math.Log(p.Alpha+c.TX))
}

// PAlive returns the probability that the customer has not dropped out by
// the end of calibration (1 without repeat purchases: the model lets
// customers drop out only right after a purchase).
func (p BGNBD) PAlive(c Customer) float64 {
	if c.X == 0 {
		return 1
	}
	return 1 / (1 + math.Exp(p.logOdds(c)))
}

// ChurnRisk is 1 − PAlive: the probability that the customer has already
// dropped out.
func (p BGNBD) ChurnRisk(c Customer) float64 { return 1 - p.PAlive(c) }

// PActive returns the probability that the customer makes at least one
// purchase in the t time units after calibration: alive, and a purchase
// before t under the posterior rate Gamma(r+x, α+T). Dropping out needs a
// purchase first, so an alive customer buys in t with probability
// 1 − ((α+T)/(α+T+t))^(r+x).
func (p BGNBD) PActive(c Customer, t float64) float64 {
	noBuy := math.Exp((p.R + c.X) * (math.Log(p.Alpha+c.T) - math.Log(p.Alpha+c.T+t)))
	return p.PAlive(c) * (1 - noBuy)
}

// aMinus1 keeps the factor 1/(a−1) of eqs. 7 and 10 finite at a = 1, where
// the expressions have a removable singularity.
func aMinus1(a float64) float64 {
	if d := a - 1; math.Abs(d) > 1e-9 {
		return d
	}
	return 1e-9
}

// ExpectedPurchases returns E[X(t)], the expected repeat purchases of a
// customer in the t time units after her first purchase (FHL 2005 eq. 7).
func (p BGNBD) ExpectedPurchases(t float64) (float64, error) {
	if t <= 0 {
		return 0, nil
	}
	f, err := Hyp2F1(p.R, p.B, p.A+p.B-1, t/(p.Alpha+t))
	if err != nil {
		return math.NaN(), fmt.Errorf("expected purchases in %g: %w", t, err)
	}
	return (p.A + p.B - 1) / aMinus1(p.A) * (1 - math.Pow(p.Alpha/(p.Alpha+t), p.R)*f), nil
}

// ConditionalExpected returns E[X(T, T+t) | x, t_x, T], the expected
// purchases of this customer in the t time units after calibration (FHL
// 2005 eq. 10).
func (p BGNBD) ConditionalExpected(c Customer, t float64) (float64, error) {
	if t <= 0 {
		return 0, nil
	}
	r, al, a, b, x := p.R, p.Alpha, p.A, p.B, c.X
	f, err := Hyp2F1(r+x, b+x, a+b+x-1, t/(al+c.T+t))
	if err != nil {
		return math.NaN(), fmt.Errorf("conditional expectation of %+v over %g: %w", c, t, err)
	}
	num := (a + b + x - 1) / aMinus1(a) * (1 - math.Exp((r+x)*(math.Log(al+c.T)-math.Log(al+c.T+t)))*f)
	if x == 0 {
		return num, nil
	}
	return num * p.PAlive(c), nil // 1/(1 + odds) is PAlive
}

// ErrNoCustomers is returned by a fit without data.
var ErrNoCustomers = errors.New("no customers to fit")

// FitBGNBD returns the maximum-likelihood BG/NBD parameters for cs, starting
// from start (nil: r = α = a = b = 1).
func FitBGNBD(cs []Customer, start *BGNBD) (BGNBD, FitResult, error) {
	if len(cs) == 0 {
		return BGNBD{}, FitResult{}, ErrNoCustomers
	}
	for _, c := range cs {
		if err := c.Validate(); err != nil {
			return BGNBD{}, FitResult{}, fmt.Errorf("fitting BG/NBD: %w", err)
		}
	}
	s := BGNBD{R: 1, Alpha: 1, A: 1, B: 1}
	if start != nil {
		if err := start.Validate(); err != nil {
			return BGNBD{}, FitResult{}, fmt.Errorf("fitting BG/NBD from a start: %w", err)
		}
		s = *start
	}
	n := float64(len(cs))
	x, res, err := maximize(func(th []float64) float64 {
		p := BGNBD{R: math.Exp(th[0]), Alpha: math.Exp(th[1]), A: math.Exp(th[2]), B: math.Exp(th[3])}
		return p.TotalLogLikelihood(cs) / n
	}, []float64{math.Log(s.R), math.Log(s.Alpha), math.Log(s.A), math.Log(s.B)})
	if err != nil {
		return BGNBD{}, res, fmt.Errorf("fitting BG/NBD to %d customers: %w", len(cs), err)
	}
	p := BGNBD{R: math.Exp(x[0]), Alpha: math.Exp(x[1]), A: math.Exp(x[2]), B: math.Exp(x[3])}
	res.LogLikelihood = p.TotalLogLikelihood(cs)
	res.Customers = len(cs)
	return p, res, nil
}
