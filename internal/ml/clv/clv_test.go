package clv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/integrate/quad"
	"gonum.org/v1/gonum/stat/distuv"
)

func relErr(got, want float64) float64 { return math.Abs(got-want) / math.Max(math.Abs(want), 1e-300) }

func TestHyp2F1(t *testing.T) {
	for _, c := range []struct {
		a, b, c, z, want float64
	}{
		{1, 1, 2, 0.5, -math.Log(1-0.5) / 0.5},          // −ln(1−z)/z
		{1, 1, 2, -0.9, -math.Log(1+0.9) / -0.9},        // alternating
		{1, 1, 2, 0.99, -math.Log(1-0.99) / 0.99},       // slow convergence near 1
		{2.5, 3, 3, 0.7, math.Pow(1-0.7, -2.5)},         // b = c: (1−z)^−a
		{0.5, 0.5, 1.5, 0.36, math.Asin(0.6) / 0.6},     // arcsin(√z)/√z
		{-2, 3, 4, 0.5, 1 - 2*3*0.5/4 + 3*4*0.25/(4*5)}, // terminating polynomial
		{0.243, 2.426, 2.219, 0, 1},                     // z = 0
		{7.243, 9.426, 10.219, 0.45, 0},                 // checked against the integral below
	} {
		want := c.want
		if c.a == 7.243 {
			// Euler's integral: B(b, c−b) 2F1 = ∫ x^(b−1) (1−x)^(c−b−1) (1−zx)^(−a) dx, c > b > 0.
			f := func(x float64) float64 {
				return math.Pow(x, c.b-1) * math.Pow(1-x, c.c-c.b-1) * math.Pow(1-c.z*x, -c.a)
			}
			lb, _ := math.Lgamma(c.b)
			lcb, _ := math.Lgamma(c.c - c.b)
			lc, _ := math.Lgamma(c.c)
			want = graded(f, 0, 1) / math.Exp(lb+lcb-lc)
		}
		got, err := Hyp2F1(c.a, c.b, c.c, c.z)
		if err != nil {
			t.Fatalf("2F1(%g,%g;%g;%g): %v", c.a, c.b, c.c, c.z, err)
		}
		if relErr(got, want) > 1e-9 {
			t.Errorf("2F1(%g,%g;%g;%g) = %.15g, want %.15g", c.a, c.b, c.c, c.z, got, want)
		}
	}
	for _, c := range [][4]float64{{1, 1, 2, 1}, {1, 1, 2, -1.5}, {1, 1, -2, 0.5}} {
		if _, err := Hyp2F1(c[0], c[1], c[2], c[3]); err == nil {
			t.Errorf("2F1%v: want an error", c)
		}
	}
}

// graded integrates f over [lo, hi] with 32-point Gauss–Legendre rules on
// intervals shrinking geometrically towards both ends, which copes with the
// integrable singularities x^(s−1) of the mixing densities (hp quadrature).
func graded(f func(float64) float64, lo, hi float64) float64 {
	mid := (lo + hi) / 2
	var sum float64
	for _, end := range [][2]float64{{lo, mid}, {hi, mid}} {
		a, b := end[0], end[1]
		for k := 0; k < 200; k++ { // [a + (b−a)/2^(k+1), a + (b−a)/2^k]; 2^−200 keeps ∫ x^(s−1) complete for s ≥ 0.2
			x0, x1 := a+(b-a)/math.Exp2(float64(k+1)), a+(b-a)/math.Exp2(float64(k))
			sum += math.Abs(quad.Fixed(f, math.Min(x0, x1), math.Max(x0, x1), 32, quad.Legendre{}, 0))
		}
	}
	return sum
}

// integrate0Inf integrates a non-negative f over (0, ∞): graded on
// [0, step], then unit rules over [k·step, (k+1)·step) until the tail
// contributes nothing.
func integrate0Inf(f func(float64) float64, step float64) float64 {
	sum := graded(f, 0, step)
	for k := 1; k < 10000; k++ {
		part := quad.Fixed(f, float64(k)*step, float64(k+1)*step, 64, quad.Legendre{}, 0)
		sum += part
		if k > 4 && math.Abs(part) < 1e-17*math.Abs(sum) {
			break
		}
	}
	return sum
}

// TestBGNBDLogLikelihoodByQuadrature checks the closed form against a direct
// computation of the same likelihood: the individual likelihood given λ
// and p (FHL 2005 eq. 3), (1−p)^x λ^x e^(−λT) + [x>0] p(1−p)^(x−1) λ^x
// e^(−λ t_x), integrated numerically over the Gamma and Beta mixing
// densities, themselves normalised numerically (no Lgamma).
func TestBGNBDLogLikelihoodByQuadrature(t *testing.T) {
	for _, p := range []BGNBD{{R: 2.3, Alpha: 3, A: 2.5, B: 3.5}, {R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}} {
		gammaPDF := func(l float64) float64 { return math.Pow(l, p.R-1) * math.Exp(-p.Alpha*l) }
		betaPDF := func(q float64) float64 { return math.Pow(q, p.A-1) * math.Pow(1-q, p.B-1) }
		step := 2 * (p.R + 1) / p.Alpha
		zl := integrate0Inf(gammaPDF, step)
		zp := graded(betaPDF, 0, 1)
		for _, c := range []Customer{{X: 0, TX: 0, T: 10}, {X: 1, TX: 2.5, T: 30}, {X: 3, TX: 5, T: 12}, {X: 7, TX: 11.5, T: 12}} {
			el := func(T float64) float64 { // E[λ^x e^(−λT)]
				return integrate0Inf(func(l float64) float64 { return math.Pow(l, c.X) * math.Exp(-l*T) * gammaPDF(l) }, step) / zl
			}
			ep := func(f func(q float64) float64) float64 {
				return graded(func(q float64) float64 { return f(q) * betaPDF(q) }, 0, 1) / zp
			}
			l := ep(func(q float64) float64 { return math.Pow(1-q, c.X) }) * el(c.T)
			if c.X > 0 {
				l += ep(func(q float64) float64 { return q * math.Pow(1-q, c.X-1) }) * el(c.TX)
			}
			if got, want := p.LogLikelihood(c), math.Log(l); math.Abs(got-want) > 1e-7 {
				t.Errorf("%+v %+v: closed form %.10f, quadrature %.10f", p, c, got, want)
			}
		}
	}
}

// simulated is one customer drawn from the BG/NBD model.
type simulated struct {
	cal     Customer
	holdout float64 // purchases in (T, T+holdout]
	alive   bool    // not dropped out at T
}

// simulateBGNBD draws n customers with first purchases spread over the
// first 12 of calib time units and a holdout of length hold after calib.
func simulateBGNBD(p BGNBD, n int, calib, hold float64, seed uint64) []simulated {
	src := rand.NewPCG(seed, 1)
	r := rand.New(src)
	lam := distuv.Gamma{Alpha: p.R, Beta: p.Alpha, Src: src}
	drop := distuv.Beta{Alpha: p.A, Beta: p.B, Src: src}
	out := make([]simulated, n)
	for i := range out {
		l, q := lam.Rand(), drop.Rand()
		birth := 12 * r.Float64()
		T := calib - birth
		c := Customer{T: T}
		s := simulated{alive: true}
		t := 0.0
		for {
			t += r.ExpFloat64() / l
			if t > T+hold {
				break
			}
			if t <= T {
				c.X++
				c.TX = t
			} else {
				s.holdout++
			}
			if r.Float64() < q { // drops out right after this purchase
				if t <= T {
					s.alive = false
				}
				break
			}
		}
		s.cal = c
		out[i] = s
	}
	return out
}

func TestFitBGNBDRecoversSimulated(t *testing.T) {
	truth := BGNBD{R: 0.5, Alpha: 4, A: 0.8, B: 2.5}
	sim := simulateBGNBD(truth, 10000, 39, 39, 11)
	cs := make([]Customer, len(sim))
	for i, s := range sim {
		cs[i] = s.cal
	}
	got, res, err := FitBGNBD(cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("truth %+v, fitted %+v, %+v", truth, got, res)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"r", got.R, truth.R}, {"alpha", got.Alpha, truth.Alpha}, {"a", got.A, truth.A}, {"b", got.B, truth.B}} {
		if relErr(c.got, c.want) > 0.2 {
			t.Errorf("%s = %g, truth %g: more than 20%% off with 10,000 customers", c.name, c.got, c.want)
		}
	}
	// The maximum likelihood is at least the likelihood of the truth.
	if res.LogLikelihood < truth.TotalLogLikelihood(cs)-1e-6 {
		t.Errorf("fitted log-likelihood %.4f below the truth's %.4f: the optimizer stopped short", res.LogLikelihood, truth.TotalLogLikelihood(cs))
	}
	if res.Customers != len(cs) || res.Evaluations == 0 {
		t.Errorf("fit result %+v", res)
	}
}

// TestPredictionsMatchSimulation checks E[X(T,T+t) | ...], P(alive) and
// P(active) at the true parameters against what the simulated customers did.
func TestPredictionsMatchSimulation(t *testing.T) {
	truth := BGNBD{R: 0.5, Alpha: 4, A: 0.8, B: 2.5}
	sim := simulateBGNBD(truth, 40000, 39, 39, 12)
	type acc struct{ n, pred, act, alive, palive, active, pactive float64 }
	var all acc
	groups := map[string]*acc{}
	for _, s := range sim {
		e, err := truth.ConditionalExpected(s.cal, 39)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint(min(s.cal.X, 3))
		g := groups[key]
		if g == nil {
			g = &acc{}
			groups[key] = g
		}
		for _, a := range []*acc{&all, g} {
			a.n++
			a.pred += e
			a.act += s.holdout
			a.palive += truth.PAlive(s.cal)
			a.pactive += truth.PActive(s.cal, 39)
			if s.alive {
				a.alive++
			}
			if s.holdout > 0 {
				a.active++
			}
		}
	}
	check := func(name string, a *acc) {
		if relErr(a.pred, a.act) > 0.05 {
			t.Errorf("%s: predicted %.0f holdout purchases, simulated %.0f", name, a.pred, a.act)
		}
		if math.Abs(a.palive-a.alive)/a.n > 0.015 {
			t.Errorf("%s: mean P(alive) %.4f, share alive %.4f", name, a.palive/a.n, a.alive/a.n)
		}
		if math.Abs(a.pactive-a.active)/a.n > 0.015 {
			t.Errorf("%s: mean P(active) %.4f, share active %.4f", name, a.pactive/a.n, a.active/a.n)
		}
		t.Logf("%s: n %.0f, holdout predicted %.0f simulated %.0f, P(alive) %.3f vs %.3f, P(active) %.3f vs %.3f",
			name, a.n, a.pred, a.act, a.palive/a.n, a.alive/a.n, a.pactive/a.n, a.active/a.n)
	}
	check("all", &all)
	for _, k := range []string{"0", "1", "2", "3"} {
		check("x="+k+"(+)", groups[k])
	}
}

func TestExpectedPurchasesMatchesSimulation(t *testing.T) {
	truth := BGNBD{R: 0.7, Alpha: 3, A: 1.4, B: 2.2}
	const n, horizon = 40000, 30
	src := rand.NewPCG(5, 5)
	r := rand.New(src)
	lam := distuv.Gamma{Alpha: truth.R, Beta: truth.Alpha, Src: src}
	drop := distuv.Beta{Alpha: truth.A, Beta: truth.B, Src: src}
	var total float64
	for range n {
		l, q := lam.Rand(), drop.Rand()
		for t := r.ExpFloat64() / l; t <= horizon; t += r.ExpFloat64() / l {
			total++
			if r.Float64() < q {
				break
			}
		}
	}
	e, err := truth.ExpectedPurchases(horizon)
	if err != nil {
		t.Fatal(err)
	}
	if relErr(e, total/n) > 0.03 {
		t.Errorf("E[X(%d)] = %.4f, simulated mean %.4f", horizon, e, total/n)
	}
}

func TestGammaGammaLogLikelihoodByQuadrature(t *testing.T) {
	g := GammaGamma{P: 6, Q: 4, Gamma: 15}
	gammaLogPDF := func(x, shape, rate float64) float64 {
		lg, _ := math.Lgamma(shape)
		return shape*math.Log(rate) + (shape-1)*math.Log(x) - rate*x - lg
	}
	for _, s := range []Spend{{X: 1, Mean: 20}, {X: 3, Mean: 35.5}, {X: 12, Mean: 80}} {
		// m_x | ν is Gamma(px, νx): the mean of x Gamma(p, ν) values.
		f := func(nu float64) float64 {
			return math.Exp(gammaLogPDF(s.Mean, g.P*s.X, nu*s.X) + gammaLogPDF(nu, g.Q, g.Gamma))
		}
		want := math.Log(integrate0Inf(f, 0.05))
		if got := g.LogLikelihood(s); math.Abs(got-want) > 1e-7 {
			t.Errorf("%+v: closed form %.10f, quadrature %.10f", s, got, want)
		}
	}
}

func TestFitGammaGammaRecoversSimulated(t *testing.T) {
	truth := GammaGamma{P: 6, Q: 4, Gamma: 15}
	src := rand.NewPCG(8, 8)
	r := rand.New(src)
	nu := distuv.Gamma{Alpha: truth.Q, Beta: truth.Gamma, Src: src}
	var ss []Spend
	for range 10000 {
		v := nu.Rand()
		z := distuv.Gamma{Alpha: truth.P, Beta: v, Src: src}
		x := 1 + r.IntN(10)
		var sum float64
		for range x {
			sum += z.Rand()
		}
		ss = append(ss, Spend{X: float64(x), Mean: sum / float64(x)})
	}
	ss = append(ss, Spend{X: 0}) // no repeat purchase: ignored by the fit
	got, res, err := FitGammaGamma(ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("truth %+v, fitted %+v, %+v", truth, got, res)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p", got.P, truth.P}, {"q", got.Q, truth.Q}, {"gamma", got.Gamma, truth.Gamma}} {
		if relErr(c.got, c.want) > 0.2 {
			t.Errorf("%s = %g, truth %g: more than 20%% off with 10,000 customers", c.name, c.got, c.want)
		}
	}
	if res.Customers != 10000 {
		t.Errorf("fit used %d customers, want the 10000 with transactions", res.Customers)
	}
	if res.LogLikelihood < truth.TotalLogLikelihood(ss[:10000])-1e-6 {
		t.Errorf("fitted log-likelihood %.4f below the truth's %.4f", res.LogLikelihood, truth.TotalLogLikelihood(ss[:10000]))
	}
}

func TestConditionalMean(t *testing.T) {
	g := GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	for _, c := range []struct {
		s    Spend
		want float64
	}{
		{Spend{}, 6.25 * 15.44 / 2.74},                               // population mean
		{Spend{X: 2, Mean: 40}, (15.44 + 80) * 6.25 / (12.5 + 2.74)}, // (γ + x m) p / (px + q − 1)
	} {
		if got := g.ConditionalMean(c.s); relErr(got, c.want) > 1e-12 {
			t.Errorf("ConditionalMean(%+v) = %g, want %g", c.s, got, c.want)
		}
	}
	if !math.IsInf((GammaGamma{P: 1, Q: 0.5, Gamma: 1}).Mean(), 1) {
		t.Error("q ≤ 1 has no mean")
	}
}

func TestPAliveAndChurn(t *testing.T) {
	p := BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	for _, c := range []struct {
		c    Customer
		want float64
	}{
		{Customer{X: 0, T: 30}, 1},
		// 1 / (1 + a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))
		{Customer{X: 2, TX: 10, T: 30}, 1 / (1 + 0.793/3.426*math.Pow(34.414/14.414, 2.243))},
		{Customer{X: 5, TX: 30, T: 30}, 1 / (1 + 0.793/6.426)},
	} {
		if got := p.PAlive(c.c); relErr(got, c.want) > 1e-12 {
			t.Errorf("PAlive(%+v) = %.12f, want %.12f", c.c, got, c.want)
		}
		if got := p.ChurnRisk(c.c); math.Abs(got-(1-c.want)) > 1e-12 {
			t.Errorf("ChurnRisk(%+v) = %g, want %g", c.c, got, 1-c.want)
		}
	}
	// Hundreds of purchases stay finite (the #NUM! problem of naive formulas).
	big := Customer{X: 400, TX: 38, T: 39}
	if ll, pa := p.LogLikelihood(big), p.PAlive(big); math.IsNaN(ll) || math.IsInf(ll, 0) || math.IsNaN(pa) {
		t.Errorf("x = 400: log-likelihood %g, P(alive) %g", ll, pa)
	}
}

func TestCLVDiscounting(t *testing.T) {
	b := BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	g := GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
	c, s := Customer{X: 3, TX: 20, T: 30}, Spend{X: 3, Mean: 30}
	undiscounted, err := CLV(b, g, c, s, 52, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := b.ConditionalExpected(c, 52)
	if relErr(undiscounted, e*g.ConditionalMean(s)) > 1e-12 {
		t.Errorf("undiscounted CLV %g, want E[X] × E[M] = %g", undiscounted, e*g.ConditionalMean(s))
	}
	discounted, _ := CLV(b, g, c, s, 52, 0.01)
	if !(discounted > 0 && discounted < undiscounted) {
		t.Errorf("discounted CLV %g should lie in (0, %g)", discounted, undiscounted)
	}
}

func TestValidation(t *testing.T) {
	for _, c := range []Customer{{X: 1, TX: 5, T: 0}, {X: -1, T: 3}, {X: 1.5, TX: 1, T: 3}, {X: 2, TX: 4, T: 3}, {X: 0, TX: 1, T: 3}} {
		if c.Validate() == nil {
			t.Errorf("%+v should not validate", c)
		}
	}
	if _, _, err := FitBGNBD([]Customer{{X: 2, TX: 4, T: 3}}, nil); err == nil {
		t.Error("fit with an invalid customer should fail")
	}
	if _, _, err := FitBGNBD(nil, nil); err != ErrNoCustomers {
		t.Errorf("fit without customers: %v", err)
	}
	if _, _, err := FitGammaGamma([]Spend{{X: 2, Mean: -1}}, nil); err == nil {
		t.Error("a negative mean spend should fail")
	}
	if (BGNBD{R: 1, Alpha: 0, A: 1, B: 1}).Validate() == nil || (GammaGamma{P: 1, Q: 1, Gamma: math.Inf(1)}).Validate() == nil {
		t.Error("non-positive or infinite parameters should not validate")
	}
}
