package clv

import (
	"fmt"
	"math"
)

// CLV returns the expected value of a customer's purchases in the next
// periods time units after calibration, each period's expected purchases
// (from ConditionalExpected) valued at the Gamma-Gamma conditional mean and
// discounted at rate discount per period (0: undiscounted).
func CLV(b BGNBD, g GammaGamma, c Customer, s Spend, periods int, discount float64) (float64, error) {
	value := g.ConditionalMean(s)
	var total, prev float64
	for k := 1; k <= periods; k++ {
		e, err := b.ConditionalExpected(c, float64(k))
		if err != nil {
			return math.NaN(), fmt.Errorf("lifetime value: %w", err)
		}
		total += (e - prev) * value / math.Pow(1+discount, float64(k))
		prev = e
	}
	return total, nil
}
