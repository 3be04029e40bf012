package clv

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/optimize"
)

// FitResult describes a maximum-likelihood fit.
type FitResult struct {
	LogLikelihood float64 `json:"log_likelihood"` // at the returned parameters, summed over customers
	Customers     int     `json:"customers"`
	Evaluations   int     `json:"evaluations"` // likelihood evaluations, both stages
	// Status is gonum's termination status of the Nelder–Mead and the BFGS
	// stage.
	Status string `json:"status"`
}

// maximize finds the maximum of the mean log-likelihood ll over
// log-parameters, from x0: Nelder–Mead (no gradient, robust from a poor
// start), then BFGS with central-difference gradients from its optimum
// (quadratic convergence near the top). The better of the two wins.
func maximize(ll func([]float64) float64, x0 []float64) ([]float64, FitResult, error) {
	var res FitResult
	evals := 0
	neg := func(x []float64) float64 {
		evals++
		v := ll(x)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return math.Inf(1) // outside where the likelihood is computable: never better
		}
		return -v
	}
	if math.IsInf(neg(x0), 1) {
		return nil, res, fmt.Errorf("the log-likelihood is not finite at the start %v", expAll(x0))
	}
	// Nelder–Mead twice: a restart from the first optimum rebuilds the
	// simplex, the usual remedy for a simplex that collapsed along a ridge
	// (Gamma-Gamma's p and γ are strongly correlated).
	best, bestF := x0, math.Inf(1)
	for range 2 {
		nm, err := optimize.Minimize(optimize.Problem{Func: neg}, best, &optimize.Settings{
			FuncEvaluations: 20000,
			Converger:       &optimize.FunctionConverge{Absolute: 1e-12, Relative: 1e-12, Iterations: 400},
		}, &optimize.NelderMead{})
		if err != nil && nm == nil {
			return nil, res, fmt.Errorf("Nelder–Mead: %w", err)
		}
		if nm.F < bestF {
			best, bestF = nm.X, nm.F
		}
		res.Status = "nelder-mead: " + nm.Status.String()
	}
	grad := func(g, x []float64) {
		fd.Gradient(g, neg, x, &fd.Settings{Formula: fd.Central, Step: 1e-6})
	}
	bf, err := optimize.Minimize(optimize.Problem{Func: neg, Grad: grad}, best, &optimize.Settings{
		GradientThreshold: 1e-7,
		FuncEvaluations:   5000,
		Converger:         &optimize.FunctionConverge{Absolute: 1e-13, Relative: 1e-13, Iterations: 50},
	}, &optimize.BFGS{})
	if bf != nil {
		if bf.F < bestF {
			best, bestF = bf.X, bf.F
			res.Status += ", bfgs: " + bf.Status.String()
		} else {
			res.Status += ", bfgs: no improvement (" + bf.Status.String() + ")"
		}
	} else if err != nil {
		res.Status += ", bfgs: " + err.Error()
	}
	res.Evaluations = evals
	if math.IsInf(bestF, 1) {
		return nil, res, fmt.Errorf("no parameters with a finite likelihood found (%s)", res.Status)
	}
	return best, res, nil
}

func expAll(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = math.Exp(v)
	}
	return out
}
