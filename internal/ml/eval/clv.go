package eval

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/streamcdp/streamcdp/internal/ml/clv"
	"github.com/streamcdp/streamcdp/internal/ml/rfm"
)

// Published fits on the CDNOW 1/10 sample, 39-week calibration, for
// comparison. BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers"
// the Easy Way, Marketing Science 24(2); the values are also the reference
// of CLVTools' test suite (tests/testthat/test_correctness_bgnbd.R, "As
// reported in Fader, Hardie, Lee (2005)"). Gamma-Gamma: Fader & Hardie
// (2013), "The Gamma-Gamma Model of Monetary Value" (note 025), as cited by
// CLVTools' tests/testthat/test_correctness_gg.R; the paper reports no
// log-likelihood, CLVTools' test expects -4055.9177.
var (
	PublishedBGNBD      = clv.BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	PublishedBGNBDLL    = -9582.4
	PublishedGammaGamma = clv.GammaGamma{P: 6.25, Q: 3.74, Gamma: 15.44}
)

// CLVConfig sets the CDNOW protocol. The zero value is the usual one.
type CLVConfig struct {
	CalibrationEnd time.Time // last day of calibration, default 1997-09-30
	HoldoutEnd     time.Time // last day of the holdout, default 1998-06-30 (39 more weeks)
	Unit           time.Duration
}

func (c CLVConfig) withDefaults() CLVConfig {
	if c.CalibrationEnd.IsZero() {
		c.CalibrationEnd = time.Date(1997, 9, 30, 0, 0, 0, 0, time.UTC)
	}
	if c.HoldoutEnd.IsZero() {
		c.HoldoutEnd = time.Date(1998, 6, 30, 0, 0, 0, 0, time.UTC)
	}
	if c.Unit <= 0 {
		c.Unit = 7 * 24 * time.Hour
	}
	return c
}

// FreqGroup compares predicted and actual holdout purchases for the
// customers with one calibration frequency.
type FreqGroup struct {
	X         string  `json:"x"` // "0" … "6", "7+"
	Customers int     `json:"customers"`
	Actual    float64 `json:"actual_mean"`
	Predicted float64 `json:"predicted_mean"`
}

// Decile is one tenth of the customers ranked by a score.
type Decile struct {
	Decile         int     `json:"decile"` // 1 = lowest score
	Customers      int     `json:"customers"`
	ChurnRisk      float64 `json:"mean_churn_risk"`
	PAlive         float64 `json:"mean_p_alive"`
	PActive        float64 `json:"mean_p_active"`
	ObservedActive float64 `json:"observed_active"` // share with a holdout purchase
}

// CLVReport is the result of EvaluateCLV.
type CLVReport struct {
	Transactions    int     `json:"transactions"`      // lines read
	PurchaseDays    int     `json:"purchase_days"`     // after merging a customer's same-day lines
	Customers       int     `json:"customers"`         // whose first purchase is in calibration
	CalibrationWeek float64 `json:"calibration_units"` // length of calibration in units (39)
	HoldoutWeeks    float64 `json:"holdout_units"`
	RepeatCal       int     `json:"calibration_repeat_purchases"`

	BGNBD           clv.BGNBD     `json:"bgnbd"`
	BGNBDFit        clv.FitResult `json:"bgnbd_fit"`
	Published       clv.BGNBD     `json:"published_bgnbd"`
	PublishedLL     float64       `json:"published_log_likelihood"`
	LLAtPublished   float64       `json:"log_likelihood_at_published"` // our likelihood of the published parameters
	HoldoutActual   int           `json:"holdout_actual"`
	HoldoutExpected float64       `json:"holdout_predicted"` // Σ E[X(T, T+39) | x, t_x, T]
	Groups          []FreqGroup   `json:"by_calibration_frequency"`

	GammaGamma       clv.GammaGamma `json:"gamma_gamma"`
	GammaGammaFit    clv.FitResult  `json:"gamma_gamma_fit"`
	PublishedGG      clv.GammaGamma `json:"published_gamma_gamma"`
	GGLLAtPublished  float64        `json:"gamma_gamma_log_likelihood_at_published"`
	MeanSpendModel   float64        `json:"population_mean_spend"` // pγ/(q−1)
	HoldoutSpend     float64        `json:"holdout_spend_actual"`
	HoldoutSpendPred float64        `json:"holdout_spend_predicted"` // Σ E[X*] · E[M | x, m_x]

	ChurnByRisk  []Decile `json:"churn_by_risk_decile"`
	ActiveByPAct []Decile `json:"active_by_p_active_decile"`
	BrierPAlive  float64  `json:"brier_p_alive"`  // P(alive) as a forecast of "active in the holdout"
	BrierPActive float64  `json:"brier_p_active"` // P(active in the holdout) as that forecast
	ActiveShare  float64  `json:"holdout_active_share"`
	// RFM segments as of the end of calibration, with what their customers
	// did in the holdout: a check that the names mean something.
	RFM            []RFMRow        `json:"rfm_segments"`
	CustomerScores []CustomerScore `json:"-"`
}

// RFMRow is one RFM segment's holdout behaviour.
type RFMRow struct {
	Segment        rfm.Segment `json:"segment"`
	Customers      int         `json:"customers"`
	ObservedActive float64     `json:"observed_active"` // share with a holdout purchase
	HoldoutX       float64     `json:"mean_holdout_purchases"`
	HoldoutSpend   float64     `json:"mean_holdout_spend"`
	PActive        float64     `json:"mean_p_active"`
}

// CustomerScore holds one customer's summaries and predictions.
type CustomerScore struct {
	ID         int
	Cal        clv.Customer
	Spend      clv.Spend
	HoldoutX   int
	HoldoutAmt float64
	Expected   float64
	PAlive     float64
	PActive    float64
	MeanSpend  float64
}

// EvaluateCLV fits BG/NBD and Gamma-Gamma on the calibration period of the
// CDNOW sample and compares their predictions with the holdout. A
// customer's lines on the same day are merged into one purchase (their
// amounts summed), as Fader, Hardie and Lee did and BTYD's
// dc.MergeTransactionsOnSameDate does; times are days / 7 (weeks). T runs
// from the first purchase to the end of calibration, t_x to the last repeat
// purchase in calibration. The Gamma-Gamma inputs are each customer's repeat
// purchases in calibration (the first purchase excluded, as in note 025).
// Churn: deciles of churn risk 1 − P(alive) and of P(active in the holdout),
// each with the observed share of customers who bought in the holdout.
func EvaluateCLV(txns []CDNOWTxn, cfg CLVConfig) (*CLVReport, error) {
	cfg = cfg.withDefaults()
	if !cfg.HoldoutEnd.After(cfg.CalibrationEnd) {
		return nil, fmt.Errorf("holdout end %s is not after calibration end %s", cfg.HoldoutEnd.Format(time.DateOnly), cfg.CalibrationEnd.Format(time.DateOnly))
	}
	unit := float64(cfg.Unit)
	units := func(d time.Duration) float64 { return float64(d) / unit }
	rep := &CLVReport{Transactions: len(txns), Published: PublishedBGNBD, PublishedLL: PublishedBGNBDLL, PublishedGG: PublishedGammaGamma,
		HoldoutWeeks: units(cfg.HoldoutEnd.Sub(cfg.CalibrationEnd))}
	type day struct {
		t   time.Time
		amt float64
	}
	byCust := map[int]map[time.Time]float64{}
	for _, t := range txns {
		m := byCust[t.Customer]
		if m == nil {
			m = map[time.Time]float64{}
			byCust[t.Customer] = m
		}
		m[t.Date] += t.Amount
	}
	ids := make([]int, 0, len(byCust))
	for id := range byCust {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var (
		cust      []clv.Customer
		spends    []clv.Spend
		scores    []CustomerScore
		purchases []rfm.Purchase
	)
	var first time.Time
	for _, id := range ids {
		days := make([]day, 0, len(byCust[id]))
		for t, a := range byCust[id] {
			days = append(days, day{t, a})
		}
		slices.SortFunc(days, func(a, b day) int { return a.t.Compare(b.t) })
		rep.PurchaseDays += len(days)
		birth := days[0].t
		if birth.After(cfg.CalibrationEnd) {
			continue // not yet a customer in calibration
		}
		if first.IsZero() || birth.Before(first) {
			first = birth
		}
		cs := CustomerScore{ID: id, Cal: clv.Customer{T: units(cfg.CalibrationEnd.Sub(birth))}}
		var repeatSum float64
		for _, d := range days {
			if !d.t.After(cfg.CalibrationEnd) {
				purchases = append(purchases, rfm.Purchase{Customer: strconv.Itoa(id), Time: d.t, Amount: d.amt})
			}
		}
		for _, d := range days[1:] {
			switch {
			case !d.t.After(cfg.CalibrationEnd):
				cs.Cal.X++
				cs.Cal.TX = units(d.t.Sub(birth))
				repeatSum += d.amt
			case !d.t.After(cfg.HoldoutEnd):
				cs.HoldoutX++
				cs.HoldoutAmt += d.amt
			}
		}
		if cs.Cal.X > 0 {
			cs.Spend = clv.Spend{X: cs.Cal.X, Mean: repeatSum / cs.Cal.X}
			spends = append(spends, cs.Spend)
		}
		cust = append(cust, cs.Cal)
		scores = append(scores, cs)
		rep.RepeatCal += int(cs.Cal.X)
		rep.HoldoutActual += cs.HoldoutX
		rep.HoldoutSpend += cs.HoldoutAmt
	}
	rep.Customers = len(cust)
	if rep.Customers == 0 {
		return nil, fmt.Errorf("no customer made a first purchase by %s", cfg.CalibrationEnd.Format(time.DateOnly))
	}
	rep.CalibrationWeek = units(cfg.CalibrationEnd.Sub(first))

	var err error
	rep.BGNBD, rep.BGNBDFit, err = clv.FitBGNBD(cust, nil)
	if err != nil {
		return nil, err
	}
	rep.LLAtPublished = PublishedBGNBD.TotalLogLikelihood(cust)
	rep.GammaGamma, rep.GammaGammaFit, err = clv.FitGammaGamma(spends, nil)
	if err != nil {
		return nil, err
	}
	rep.GGLLAtPublished = PublishedGammaGamma.TotalLogLikelihood(spends)
	rep.MeanSpendModel = rep.GammaGamma.Mean()

	groups := make([]FreqGroup, 8)
	for i := range groups {
		groups[i].X = strconv.Itoa(i)
	}
	groups[7].X = "7+"
	var brierAlive, brierActive float64
	active := 0
	for i := range scores {
		s := &scores[i]
		e, err := rep.BGNBD.ConditionalExpected(s.Cal, rep.HoldoutWeeks)
		if err != nil {
			return nil, fmt.Errorf("predicting customer %d: %w", s.ID, err)
		}
		s.Expected = e
		s.PAlive = rep.BGNBD.PAlive(s.Cal)
		s.PActive = rep.BGNBD.PActive(s.Cal, rep.HoldoutWeeks)
		s.MeanSpend = rep.GammaGamma.ConditionalMean(s.Spend)
		rep.HoldoutExpected += e
		rep.HoldoutSpendPred += e * s.MeanSpend
		g := &groups[min(int(s.Cal.X), 7)]
		g.Customers++
		g.Actual += float64(s.HoldoutX)
		g.Predicted += e
		obs := 0.0
		if s.HoldoutX > 0 {
			obs = 1
			active++
		}
		brierAlive += (s.PAlive - obs) * (s.PAlive - obs)
		brierActive += (s.PActive - obs) * (s.PActive - obs)
	}
	for i := range groups {
		if n := float64(groups[i].Customers); n > 0 {
			groups[i].Actual /= n
			groups[i].Predicted /= n
		}
	}
	rep.Groups = groups
	n := float64(len(scores))
	rep.BrierPAlive, rep.BrierPActive, rep.ActiveShare = brierAlive/n, brierActive/n, float64(active)/n

	// Deciles of churn risk; ties (every customer without a repeat purchase
	// has risk 0) are ordered by P(active), most likely to buy first, then id.
	byRisk := slices.Clone(scores)
	slices.SortFunc(byRisk, func(a, b CustomerScore) int {
		return cmp.Or(cmp.Compare(1-a.PAlive, 1-b.PAlive), cmp.Compare(b.PActive, a.PActive), cmp.Compare(a.ID, b.ID))
	})
	rep.ChurnByRisk = deciles(byRisk)
	byAct := slices.Clone(scores)
	slices.SortFunc(byAct, func(a, b CustomerScore) int {
		return cmp.Or(cmp.Compare(a.PActive, b.PActive), cmp.Compare(a.ID, b.ID))
	})
	rep.ActiveByPAct = deciles(byAct)
	rep.CustomerScores = scores
	rep.RFM = rfmRows(purchases, cfg.CalibrationEnd, scores)
	if math.IsNaN(rep.HoldoutExpected) {
		return nil, fmt.Errorf("BG/NBD predictions are not finite with %+v", rep.BGNBD)
	}
	return rep, nil
}

// deciles splits ranked customers into ten groups of sizes differing by at
// most one and averages each.
func deciles(ranked []CustomerScore) []Decile {
	out := make([]Decile, 0, 10)
	n := len(ranked)
	for d := range 10 {
		lo, hi := d*n/10, (d+1)*n/10
		dec := Decile{Decile: d + 1, Customers: hi - lo}
		for _, s := range ranked[lo:hi] {
			dec.ChurnRisk += 1 - s.PAlive
			dec.PAlive += s.PAlive
			dec.PActive += s.PActive
			if s.HoldoutX > 0 {
				dec.ObservedActive++
			}
		}
		if c := float64(dec.Customers); c > 0 {
			dec.ChurnRisk /= c
			dec.PAlive /= c
			dec.PActive /= c
			dec.ObservedActive /= c
		}
		out = append(out, dec)
	}
	return out
}

// rfmRows scores the calibration purchases with RFM as of asOf and
// summarises each segment's holdout behaviour.
func rfmRows(purchases []rfm.Purchase, asOf time.Time, scores []CustomerScore) []RFMRow {
	byID := map[string]*CustomerScore{}
	for i := range scores {
		byID[strconv.Itoa(scores[i].ID)] = &scores[i]
	}
	rows := map[rfm.Segment]*RFMRow{}
	for _, s := range rfm.ScoreAll(rfm.Summarise(purchases, asOf)) {
		cs := byID[s.ID]
		if cs == nil {
			continue
		}
		r := rows[s.Segment]
		if r == nil {
			r = &RFMRow{Segment: s.Segment}
			rows[s.Segment] = r
		}
		r.Customers++
		if cs.HoldoutX > 0 {
			r.ObservedActive++
		}
		r.HoldoutX += float64(cs.HoldoutX)
		r.HoldoutSpend += cs.HoldoutAmt
		r.PActive += cs.PActive
	}
	var out []RFMRow
	for _, seg := range rfm.Segments() {
		r := rows[seg]
		if r == nil {
			continue
		}
		n := float64(r.Customers)
		r.ObservedActive /= n
		r.HoldoutX /= n
		r.HoldoutSpend /= n
		r.PActive /= n
		out = append(out, *r)
	}
	return out
}
