package eval

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The evaluations Run knows.
const (
	EvalRecommend = "recommend" // UCI Online Retail, last-basket split
	EvalCLV       = "clv"       // CDNOW, BG/NBD and Gamma-Gamma against the holdout
	EvalChurn     = "churn"     // CDNOW, churn risk and P(active) by decile
	EvalRFM       = "rfm"       // CDNOW, RFM segments against the holdout
)

// Evaluations lists every evaluation name in report order.
func Evaluations() []string { return []string{EvalRecommend, EvalCLV, EvalChurn, EvalRFM} }

// Options configure Run.
type Options struct {
	// Datasets is the directory holding online-retail/ and cdnow/ (see the
	// datasets README).
	Datasets string
	// Only names the evaluations to run (nil: all).
	Only     []string
	K        int   // list length for recommendations, default 10
	Workers  int   // parallel tuning workers, default 1
	Grid     *Grid // tuning grid, default DefaultGrid
	Progress Progress
}

// Report is everything Run measured. Sections not run are nil.
type Report struct {
	Datasets  string     `json:"datasets"`
	Ran       []string   `json:"evaluations"`
	Recommend *RecReport `json:"recommend,omitempty"`
	// CLV holds the CDNOW results; the churn and rfm evaluations read their
	// sections from it.
	CLV     *CLVReport `json:"cdnow,omitempty"`
	Elapsed string     `json:"elapsed"`
}

// Has reports whether evaluation name ran.
func (r *Report) Has(name string) bool { return slices.Contains(r.Ran, name) }

// Run reads the datasets the chosen evaluations need and runs them.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	only := o.Only
	if len(only) == 0 {
		only = Evaluations()
	}
	for _, n := range only {
		if !slices.Contains(Evaluations(), n) {
			return nil, fmt.Errorf("unknown evaluation %q (want some of %s)", n, strings.Join(Evaluations(), ", "))
		}
	}
	if o.Datasets == "" {
		return nil, errors.New("no datasets directory given")
	}
	if st, err := os.Stat(o.Datasets); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("datasets directory %s does not exist: point --datasets (or CDP_DATASETS) at the directory holding %s/ and cdnow/", o.Datasets, RetailDir)
	}
	rep := &Report{Datasets: o.Datasets}
	for _, n := range Evaluations() { // report order, not flag order
		if slices.Contains(only, n) {
			rep.Ran = append(rep.Ran, n)
		}
	}
	if rep.Has(EvalRecommend) {
		baskets, st, err := LoadRetail(filepath.Join(o.Datasets, RetailDir))
		if err != nil {
			return nil, fmt.Errorf("loading UCI Online Retail: %w", err)
		}
		grid := DefaultGrid()
		if o.Grid != nil {
			grid = *o.Grid
		}
		rr, err := EvaluateRecommendations(ctx, baskets, RecConfig{K: o.K, Grid: grid, Workers: o.Workers}, o.Progress)
		if err != nil {
			return nil, fmt.Errorf("evaluating recommendations: %w", err)
		}
		rr.Data = st
		rep.Recommend = rr
	}
	if rep.Has(EvalCLV) || rep.Has(EvalChurn) || rep.Has(EvalRFM) {
		txns, err := ReadCDNOW(filepath.Join(o.Datasets, CDNOWFile))
		if err != nil {
			return nil, err
		}
		cr, err := EvaluateCLV(txns, CLVConfig{})
		if err != nil {
			return nil, fmt.Errorf("evaluating lifetime value on CDNOW: %w", err)
		}
		rep.CLV = cr
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}
