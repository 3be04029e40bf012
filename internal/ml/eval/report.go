package eval

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// table is one titled table, rendered as aligned text or as Markdown.
type table struct {
	title  string
	note   string
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func f3(v float64) string { return fmt.Sprintf("%.3f", v) }
func f4(v float64) string { return fmt.Sprintf("%.4f", v) }

// tables builds the report's tables in order.
func (r *Report) tables() []table {
	var out []table
	if rr := r.Recommend; rr != nil {
		d := rr.Data
		data := table{title: "UCI Online Retail: data", header: []string{"rows", "without customer", "cancellation rows", "non-product rows", "quantity/price <= 0", "rows used", "baskets", "customers", "items"}}
		data.add(fmt.Sprint(d.Rows), fmt.Sprint(d.NoCustomer), fmt.Sprint(d.Cancelled), fmt.Sprint(d.NonProduct), fmt.Sprint(d.NonPositive), fmt.Sprint(d.Used), fmt.Sprint(d.Baskets), fmt.Sprint(d.Customers), fmt.Sprint(d.Items))
		out = append(out, data)
		metrics := func(title, note string, res []MethodResult) table {
			t := table{title: title, note: note, header: []string{"method", "customers", fmt.Sprintf("hit-rate@%d", rr.K), fmt.Sprintf("precision@%d", rr.K),
				fmt.Sprintf("recall@%d", rr.K), fmt.Sprintf("MAP@%d", rr.K), "hits", "repeat hits", "explore hits", "repeat slots"}}
			for _, m := range res {
				t.add(m.Method, fmt.Sprint(m.Customers), f4(m.HitRate), f4(m.Precision), f4(m.Recall), f4(m.MAP), fmt.Sprint(m.Hits),
					fmt.Sprintf("%d (%.1f%%)", m.RepeatHits, 100*m.RepeatShare), fmt.Sprintf("%d (%.1f%%)", m.ExploreHits, 100*m.ExploreShare), fmt.Sprintf("%.1f%%", 100*m.RepeatSlots))
			}
			return t
		}
		out = append(out, metrics("Recommendations, test: each customer's last basket", rr.Protocol, rr.Test))
		cmp := table{title: "Differences on the test baskets (paired by customer, ± 95% CI)", header: []string{"method", "baseline", "hit-rate", "precision", "recall", "MAP"}}
		pm := func(d Diff) string { return fmt.Sprintf("%+.4f ± %.4f", d.Mean, d.CI95) }
		for _, c := range rr.Comparisons {
			cmp.add(c.Method, c.Baseline, pm(c.HitRate), pm(c.Precision), pm(c.Recall), pm(c.MAP))
		}
		out = append(out, cmp)
		out = append(out, metrics(fmt.Sprintf("Recommendations, validation: second-to-last baskets (%d grid points tried)", rr.GridPoints),
			"chosen: "+rr.Best.String(), rr.Validation))
		lead := table{title: "Best grid points on validation", header: []string{"rank", "hit-rate", "precision", "parameters"}}
		for i, g := range rr.Leaders {
			lead.add(fmt.Sprint(i+1), f4(g.HitRate), f4(g.Precision), g.Params.String())
		}
		if g := rr.BestWithTogether; g != nil {
			lead.add("best with together > 0", f4(g.HitRate), f4(g.Precision), g.Params.String())
		}
		out = append(out, lead)
		ms := rr.ModelStats
		mem := table{title: "Association model after the test replay", header: []string{"items", "counters", "bound (2 x items x capacity)", "baskets", "transitions", "elapsed"}}
		mem.add(fmt.Sprint(ms.Items), fmt.Sprint(ms.Pairs), fmt.Sprint(rr.MaxPairs), fmt.Sprint(ms.Baskets), fmt.Sprint(ms.Transitions), rr.Elapsed)
		out = append(out, mem)
	}
	if c := r.CLV; c != nil && r.Has(EvalCLV) {
		data := table{title: "CDNOW sample: data", header: []string{"lines", "purchase days", "customers", "calibration (weeks)", "holdout (weeks)", "repeat purchases in calibration", "in holdout"}}
		data.add(fmt.Sprint(c.Transactions), fmt.Sprint(c.PurchaseDays), fmt.Sprint(c.Customers), fmt.Sprintf("%.2f", c.CalibrationWeek), fmt.Sprintf("%.0f", c.HoldoutWeeks), fmt.Sprint(c.RepeatCal), fmt.Sprint(c.HoldoutActual))
		out = append(out, data)
		bg := table{title: "BG/NBD fit (weeks)", note: "published: Fader, Hardie & Lee (2005), Marketing Science 24(2)", header: []string{"", "r", "alpha", "a", "b", "log-likelihood"}}
		bg.add("fitted", f4(c.BGNBD.R), f4(c.BGNBD.Alpha), f4(c.BGNBD.A), f4(c.BGNBD.B), fmt.Sprintf("%.3f", c.BGNBDFit.LogLikelihood))
		bg.add("published", f3(c.Published.R), f3(c.Published.Alpha), f3(c.Published.A), f3(c.Published.B), fmt.Sprintf("%.1f (ours at these values: %.3f)", c.PublishedLL, c.LLAtPublished))
		out = append(out, bg)
		hold := table{title: "Holdout repeat purchases (39 weeks) by calibration frequency", header: []string{"x", "customers", "actual (mean)", "predicted (mean)", "actual (sum)", "predicted (sum)"}}
		for _, g := range c.Groups {
			hold.add(g.X, fmt.Sprint(g.Customers), f3(g.Actual), f3(g.Predicted), fmt.Sprintf("%.0f", g.Actual*float64(g.Customers)), fmt.Sprintf("%.1f", g.Predicted*float64(g.Customers)))
		}
		hold.add("all", fmt.Sprint(c.Customers), f3(float64(c.HoldoutActual)/float64(c.Customers)), f3(c.HoldoutExpected/float64(c.Customers)), fmt.Sprint(c.HoldoutActual), fmt.Sprintf("%.1f", c.HoldoutExpected))
		out = append(out, hold)
		gg := table{title: fmt.Sprintf("Gamma-Gamma fit (%d customers with repeat purchases, mean repeat spend)", c.GammaGammaFit.Customers),
			note: "published: Fader & Hardie (2013), note 025", header: []string{"", "p", "q", "gamma", "log-likelihood", "mean spend p*gamma/(q-1)"}}
		gg.add("fitted", f4(c.GammaGamma.P), f4(c.GammaGamma.Q), f4(c.GammaGamma.Gamma), fmt.Sprintf("%.3f", c.GammaGammaFit.LogLikelihood), fmt.Sprintf("%.2f", c.MeanSpendModel))
		gg.add("published", fmt.Sprintf("%.2f", c.PublishedGG.P), fmt.Sprintf("%.2f", c.PublishedGG.Q), fmt.Sprintf("%.2f", c.PublishedGG.Gamma), fmt.Sprintf("%.3f (ours at these values)", c.GGLLAtPublished), fmt.Sprintf("%.2f", c.PublishedGG.Mean()))
		out = append(out, gg)
		sp := table{title: "Holdout spend", header: []string{"actual", "predicted (sum of E[X*] x E[M])", "ratio"}}
		sp.add(fmt.Sprintf("%.2f", c.HoldoutSpend), fmt.Sprintf("%.2f", c.HoldoutSpendPred), f3(c.HoldoutSpendPred/c.HoldoutSpend))
		out = append(out, sp)
	}
	if c := r.CLV; c != nil && r.Has(EvalChurn) {
		dec := func(title, note string, ds []Decile) table {
			t := table{title: title, note: note, header: []string{"decile", "customers", "churn risk", "P(alive)", "P(active)", "observed active"}}
			for _, d := range ds {
				t.add(fmt.Sprint(d.Decile), fmt.Sprint(d.Customers), f3(d.ChurnRisk), f3(d.PAlive), f3(d.PActive), f3(d.ObservedActive))
			}
			return t
		}
		out = append(out, dec("Churn risk (1 - P(alive)) by decile, lowest risk first", fmt.Sprintf(
			"observed active = share with a holdout purchase (%.3f overall); Brier score as a forecast of it: P(alive) %.4f, P(active) %.4f",
			c.ActiveShare, c.BrierPAlive, c.BrierPActive), c.ChurnByRisk))
		out = append(out, dec("P(active in the holdout) by decile, lowest first", "", c.ActiveByPAct))
	}
	if c := r.CLV; c != nil && r.Has(EvalRFM) {
		t := table{title: "RFM segments at the end of calibration (CDNOW) and their holdout", header: []string{"segment", "customers", "observed active", "mean holdout purchases", "mean holdout spend", "mean P(active)"}}
		for _, s := range c.RFM {
			t.add(s.Segment.String(), fmt.Sprint(s.Customers), f3(s.ObservedActive), f3(s.HoldoutX), fmt.Sprintf("%.2f", s.HoldoutSpend), f3(s.PActive))
		}
		out = append(out, t)
	}
	return out
}

// WriteText writes the report as aligned text tables.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.tables() {
		fmt.Fprintf(tw, "== %s\n", t.title)
		if t.note != "" {
			fmt.Fprintf(tw, "   %s\n", t.note)
		}
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, row := range t.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "datasets %s, elapsed %s\n", r.Datasets, r.Elapsed)
	return tw.Flush()
}

// WriteMarkdown writes the report as Markdown tables.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	for _, t := range r.tables() {
		fmt.Fprintf(&b, "#### %s\n\n", t.title)
		if t.note != "" {
			fmt.Fprintf(&b, "%s\n\n", t.note)
		}
		fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(t.header, " | "), strings.Repeat("---|", len(t.header)))
		for _, row := range t.rows {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Datasets `%s`, elapsed %s.\n", r.Datasets, r.Elapsed)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
