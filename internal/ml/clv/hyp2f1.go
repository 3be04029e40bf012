package clv

import (
	"fmt"
	"math"
)

// hypMaxTerms bounds the series of Hyp2F1; at |z| = 0.99 it needs about
// 4,000 terms for full precision, so this is generous.
const hypMaxTerms = 200000

// Hyp2F1 returns the Gauss hypergeometric function ₂F₁(a, b; c; z) for
// |z| < 1 by its power series Σ (a)_n (b)_n / ((c)_n n!) zⁿ, summed until a
// term no longer changes the sum in double precision. The BG/NBD
// conditional expectation evaluates it at z = t/(α+T+t) < 1. It returns an
// error for |z| ≥ 1, for c a non-positive integer, and when the series has
// not converged within hypMaxTerms terms.
func Hyp2F1(a, b, c, z float64) (float64, error) {
	if math.Abs(z) >= 1 {
		return math.NaN(), fmt.Errorf("2F1(%g, %g; %g; %g): |z| must be below 1", a, b, c, z)
	}
	if c <= 0 && c == math.Trunc(c) {
		return math.NaN(), fmt.Errorf("2F1(%g, %g; %g; %g): c is a non-positive integer", a, b, c, z)
	}
	sum, term := 1.0, 1.0
	for n := 0; n < hypMaxTerms; n++ {
		fn := float64(n)
		ratio := (a + fn) * (b + fn) / ((c + fn) * (fn + 1)) * z
		term *= ratio
		if term == 0 { // a or b a non-positive integer: the series terminates
			return sum, nil
		}
		next := sum + term
		// Stop once a term no longer changes the sum while the terms shrink:
		// a tiny term followed by growing ones (possible when z is near 1)
		// must not end the sum early.
		if next == sum && math.Abs(ratio) < 1 {
			return sum, nil
		}
		sum = next
	}
	return math.NaN(), fmt.Errorf("2F1(%g, %g; %g; %g): series did not converge in %d terms", a, b, c, z, hypMaxTerms)
}
