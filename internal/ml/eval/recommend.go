package eval

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/streamcdp/streamcdp/internal/ml/assoc"
)

// RecParams are the tunable settings of the recommender.
type RecParams struct {
	HalfLifeDays float64       `json:"half_life_days"` // 0: no decay
	MinCount     float64       `json:"min_count"`
	Measure      assoc.Measure `json:"measure"`
	Damping      float64       `json:"damping"`
	Neighbours   int           `json:"neighbours"`
	Mix          assoc.Mix     `json:"mix"`
}

func (p RecParams) options(k int) assoc.Options {
	return assoc.Options{K: k, Mix: p.Mix, Measure: p.Measure, Damping: p.Damping,
		Neighbours: p.Neighbours, MinCount: p.MinCount}
}

func (p RecParams) String() string {
	s := fmt.Sprintf("half-life %gd, min count %g, mix repeat %g / next %g / together %g",
		p.HalfLifeDays, p.MinCount, p.Mix.Repeat, p.Mix.Next, p.Mix.Together)
	if p.Mix.Together > 0 {
		s += fmt.Sprintf(" (%v, damping %g, %d neighbours)", p.Measure, p.Damping, p.Neighbours)
	}
	return s
}

// effective zeroes the bought-together settings when the mix does not weigh
// them: such points rank identically.
func (p RecParams) effective() RecParams {
	if p.Mix.Together == 0 {
		p.Measure, p.Damping, p.Neighbours = 0, 0, 0
	}
	return p
}

// Grid lists the values tried for each parameter on the validation split;
// every combination is evaluated. The mix's repeat weight is 1 (only ratios
// matter).
type Grid struct {
	HalfLifeDays []float64       `json:"half_life_days"`
	MinCounts    []float64       `json:"min_counts"`
	Measures     []assoc.Measure `json:"measures"`
	Dampings     []float64       `json:"dampings"`
	Neighbours   []int           `json:"neighbours"`
	Next         []float64       `json:"next_weights"`
	Together     []float64       `json:"together_weights"`
}

// DefaultGrid is the grid `cdp ml eval` tunes over.
func DefaultGrid() Grid {
	return Grid{
		HalfLifeDays: []float64{0, 90, 365},
		MinCounts:    []float64{2},
		Measures:     []assoc.Measure{assoc.Cosine, assoc.Confidence, assoc.Lift, assoc.Jaccard},
		Dampings:     []float64{0},
		Neighbours:   []int{50},
		Next:         []float64{0, 0.5, 1, 2, 4, 8},
		Together:     []float64{0, 0.02, 0.05, 0.1, 0.2, 0.5},
	}
}

func (g Grid) size() int {
	return len(g.HalfLifeDays) * len(g.MinCounts) * len(g.Measures) * len(g.Dampings) * len(g.Neighbours) * len(g.Next) * len(g.Together)
}

// GridResult is one grid point's validation score.
type GridResult struct {
	Params    RecParams `json:"params"`
	HitRate   float64   `json:"hit_rate"`
	Precision float64   `json:"precision"`
}

// RecConfig configures EvaluateRecommendations.
type RecConfig struct {
	K     int          // list length, default 10
	Model assoc.Config // the association model's bounds
	// MaxHistory caps the items remembered per customer (default
	// assoc.DefaultMaxItems).
	MaxHistory int
	Grid       Grid
	// Workers evaluate grid points in parallel during tuning (default 1;
	// the result does not depend on it).
	Workers int
}

// RecReport is the result of EvaluateRecommendations.
type RecReport struct {
	K    int         `json:"k"`
	Data RetailStats `json:"data"`
	// Protocol describes the split in words.
	Protocol string `json:"protocol"`
	// Validation: the customers scored while tuning, the grid, the baselines
	// on the validation targets and the best point.
	ValidationCustomers int            `json:"validation_customers"`
	Grid                Grid           `json:"grid"`
	GridPoints          int            `json:"grid_points"`
	Validation          []MethodResult `json:"validation"`
	Best                RecParams      `json:"best"`
	// Leaders are the best grid points on validation, best first, and
	// BestWithTogether the best one that weighs the bought-together part.
	Leaders          []GridResult `json:"leaders"`
	BestWithTogether *GridResult  `json:"best_with_together,omitempty"`
	// Test holds the baselines and the tuned recommender on the last baskets.
	Test []MethodResult `json:"test"`
	// Comparisons: the recommender minus each baseline on the test
	// baskets, paired by customer.
	Comparisons []Comparison `json:"comparisons"`
	// ModelStats is the association model at the end of the test replay.
	ModelStats assoc.Stats `json:"model_stats"`
	MaxPairs   int         `json:"max_pairs"` // the memory bound, 2 × items × capacity
	Elapsed    string      `json:"elapsed"`
}

// Names of the methods in RecReport.
const (
	MethodPopularity  = "popularity"
	MethodBuyAgain    = "buy-again"
	MethodRecommender = "recommender"
	MethodExplore     = "recommender, exclude bought"
	// MethodPopularNew is popularity without the customer's own items: the
	// baseline of the exclude-bought list.
	MethodPopularNew = "popularity, exclude bought"
	// MethodBuyAgainRecent is buy-again with count ties broken by the more
	// recent purchase instead of popularity, to show what the tie-break is
	// worth.
	MethodBuyAgainRecent = "buy-again, ties by recency"
)

// EvaluateRecommendations runs the last-basket protocol of issue 12 on
// baskets sorted by time (as LoadRetail returns them):
//
//   - test: every customer with at least two baskets has the last one held
//     out; the models have seen exactly the baskets before it in time (all
//     customers', replayed in order, as the streaming processor would), and
//     the list is scored against it;
//   - validation: the same replay without any test basket, scoring every
//     customer with at least three baskets on the second-to-last one. The
//     grid is tuned here, choosing the point with the highest hit-rate@K
//     plus precision@K, so the test baskets never influence a choice.
//
// Baselines: popularity (the K items in the most baskets so far) and
// buy-again (the customer's own items by number of baskets, ties to the
// more popular, filled with popular items; a variant breaks ties by
// recency).
func EvaluateRecommendations(ctx context.Context, baskets []Basket, cfg RecConfig, prog Progress) (*RecReport, error) {
	start := time.Now()
	if cfg.K <= 0 {
		cfg.K = 10
	}
	if cfg.Grid.size() == 0 {
		return nil, fmt.Errorf("recommendation grid is empty: every parameter needs at least one value")
	}
	prog = orNop(prog)
	k := cfg.K
	for i := 1; i < len(baskets); i++ {
		if baskets[i].Time.Before(baskets[i-1].Time) {
			return nil, fmt.Errorf("baskets are not sorted by time at %s", baskets[i].Invoice)
		}
	}
	test, val := split(baskets)
	rep := &RecReport{K: k, Grid: cfg.Grid, GridPoints: cfg.Grid.size(),
		Protocol: "prequential last-basket split: baskets replayed in time order; each customer with >= 2 baskets is scored on the last one, " +
			"the model having seen every basket before it; tuning on the second-to-last basket of customers with >= 3 baskets in a replay without the test baskets"}

	// Validation replay: all grid points at once.
	type point struct {
		p   RecParams
		res MethodResult
	}
	g := cfg.Grid
	var points []*point
	for _, h := range g.HalfLifeDays {
		for _, mc := range g.MinCounts {
			for _, ms := range g.Measures {
				for _, d := range g.Dampings {
					for _, nb := range g.Neighbours {
						for _, nx := range g.Next {
							for _, tg := range g.Together {
								points = append(points, &point{p: RecParams{HalfLifeDays: h, MinCount: mc, Measure: ms, Damping: d, Neighbours: nb,
									Mix: assoc.Mix{Repeat: 1, Next: nx, Together: tg}}})
							}
						}
					}
				}
			}
		}
	}
	// Points sharing everything but the mix share one Candidates per query:
	// a group. Groups are independent, so workers take them in parallel
	// while the model is read-only between two baskets.
	type group struct {
		key    RecParams // the mix zeroed
		points []*point
	}
	var groups []*group
	byKey := map[RecParams]*group{}
	for _, pt := range points {
		key := pt.p
		key.Mix = assoc.Mix{}
		gr := byKey[key]
		if gr == nil {
			gr = &group{key: key}
			byKey[key] = gr
			groups = append(groups, gr)
		}
		gr.points = append(gr.points, pt)
	}
	halfLives := slices.Clone(g.HalfLifeDays)
	slices.Sort(halfLives)
	halfLives = slices.Compact(halfLives)
	rp := newReplay(cfg, halfLives)
	valPop, valBuy := MethodResult{Method: MethodPopularity}, MethodResult{Method: MethodBuyAgain}
	workers := min(max(cfg.Workers, 1), len(groups))
	prog.Stage("tuning on validation baskets", len(baskets)-len(test))
	for i, b := range baskets {
		if test[i] {
			continue
		}
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if val[i] {
			target := setOf(b.Items)
			bought := rp.bought(b.Customer)
			valPop.add(rp.model.Popular(k, nil), target, k, bought)
			valBuy.add(rp.buyAgain(b.Customer, k), target, k, bought)
			snaps := map[float64]assoc.Snapshot{}
			for _, h := range halfLives {
				snaps[h] = rp.hist[h].Snapshot(b.Customer, b.Time)
			}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for gi := w; gi < len(groups); gi += workers {
						gr := groups[gi]
						o := gr.key.options(k)
						for _, pt := range gr.points { // compute the bought-together part if any mix weighs it
							o.Mix.Together = max(o.Mix.Together, pt.p.Mix.Together)
						}
						cs := rp.model.Candidates(snaps[gr.key.HalfLifeDays], o)
						for _, pt := range gr.points {
							pt.res.add(names(cs.Top(k, pt.p.Mix, false)), target, k, bought)
						}
					}
				})
			}
			wg.Wait()
			rep.ValidationCustomers++
		}
		rp.add(b)
		prog.Add(1)
	}
	prog.Done()
	valPop.finish()
	valBuy.finish()
	for _, pt := range points {
		pt.res.finish()
	}
	// Highest hit-rate + precision first; the stable sort keeps grid order
	// on ties, so the choice is deterministic.
	ranked := slices.Clone(points)
	slices.SortStableFunc(ranked, func(a, b *point) int {
		return cmp.Compare(b.res.HitRate+b.res.Precision, a.res.HitRate+a.res.Precision)
	})
	best := ranked[0]
	rep.Best = best.p
	seen := map[RecParams]bool{}
	for _, pt := range ranked {
		gr := GridResult{Params: pt.p, HitRate: pt.res.HitRate, Precision: pt.res.Precision}
		if e := pt.p.effective(); len(rep.Leaders) < 5 && !seen[e] {
			seen[e] = true
			rep.Leaders = append(rep.Leaders, gr)
		}
		if rep.BestWithTogether == nil && pt.p.Mix.Together > 0 {
			rep.BestWithTogether = &gr
		}
	}
	bestVal := best.res
	bestVal.Method = MethodRecommender
	rep.Validation = []MethodResult{valPop, valBuy, bestVal}

	// Test replay with the chosen point.
	rp = newReplay(cfg, []float64{rep.Best.HalfLifeDays})
	pop, buy, buyRecent := MethodResult{Method: MethodPopularity}, MethodResult{Method: MethodBuyAgain}, MethodResult{Method: MethodBuyAgainRecent}
	ours, explore := MethodResult{Method: MethodRecommender}, MethodResult{Method: MethodExplore}
	popNew := MethodResult{Method: MethodPopularNew}
	opts := rep.Best.options(k)
	prog.Stage("scoring test baskets", len(baskets))
	for i, b := range baskets {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if test[i] {
			target := setOf(b.Items)
			bought := rp.bought(b.Customer)
			pop.add(rp.model.Popular(k, nil), target, k, bought)
			buy.add(rp.buyAgain(b.Customer, k), target, k, bought)
			buyRecent.add(rp.buyAgainRecent(b.Customer, k), target, k, bought)
			cs := rp.model.Candidates(rp.hist[rep.Best.HalfLifeDays].Snapshot(b.Customer, b.Time), opts)
			ours.add(names(cs.Top(k, opts.Mix, false)), target, k, bought)
			explore.add(names(cs.Top(k, opts.Mix, true)), target, k, bought)
			popNew.add(rp.model.Popular(k, bought), target, k, bought)
		}
		rp.add(b)
		prog.Add(1)
	}
	prog.Done()
	for _, r := range []*MethodResult{&pop, &buy, &buyRecent, &ours, &popNew, &explore} {
		r.finish()
	}
	rep.Test = []MethodResult{pop, buy, buyRecent, ours, popNew, explore}
	rep.Comparisons = []Comparison{compare(&ours, &buy), compare(&ours, &buyRecent), compare(&ours, &pop), compare(&explore, &popNew)}
	rep.ModelStats = rp.model.Stats()
	rep.MaxPairs = rp.model.MaxPairs()
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

// split returns the indexes of the test baskets (the last of every customer
// with at least two) and of the validation baskets (the second-to-last of
// every customer with at least three).
func split(baskets []Basket) (test, val map[int]bool) {
	byCustomer := map[string][]int{}
	for i, b := range baskets {
		byCustomer[b.Customer] = append(byCustomer[b.Customer], i)
	}
	test, val = map[int]bool{}, map[int]bool{}
	for _, idx := range byCustomer {
		if len(idx) >= 2 {
			test[idx[len(idx)-1]] = true
		}
		if len(idx) >= 3 {
			val[idx[len(idx)-2]] = true
		}
	}
	return test, val
}

// replay is the state of one time-ordered pass: the association model, one
// history per half-life and the undecayed history the buy-again baseline
// ranks by.
type replay struct {
	model *assoc.Model
	hist  map[float64]*assoc.History
	plain *assoc.History
}

func newReplay(cfg RecConfig, halfLivesDays []float64) *replay {
	r := &replay{model: assoc.New(cfg.Model), hist: map[float64]*assoc.History{}}
	for _, h := range halfLivesDays {
		r.hist[h] = assoc.NewHistory(assoc.HistoryConfig{HalfLife: time.Duration(h * 24 * float64(time.Hour)), MaxItems: cfg.MaxHistory})
	}
	r.plain = assoc.NewHistory(assoc.HistoryConfig{MaxItems: cfg.MaxHistory})
	return r
}

func (r *replay) add(b Basket) {
	if prev := r.plain.LastBasket(b.Customer); len(prev) > 0 {
		r.model.AddTransition(prev, b.Items)
	}
	r.model.AddBasket(b.Items)
	for _, h := range r.hist {
		h.AddBasket(b.Customer, b.Items, b.Time)
	}
	r.plain.AddBasket(b.Customer, b.Items, b.Time)
}

// bought reports whether customer bought an item in an earlier basket.
func (r *replay) bought(customer string) func(string) bool {
	set := map[string]bool{}
	for _, h := range r.plain.Snapshot(customer, time.Time{}).Items {
		set[h.Item] = true
	}
	return func(s string) bool { return set[s] }
}

// buyAgain is the personal top-frequency baseline: the customer's items by
// number of baskets (ties: more popular, then name), then popular items.
func (r *replay) buyAgain(customer string, k int) []string {
	return r.topOwn(customer, k, func(a, b assoc.HistoryItem) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(r.model.Count(b.Item), r.model.Count(a.Item)), cmp.Compare(a.Item, b.Item))
	})
}

// buyAgainRecent is buyAgain with count ties broken by the more recent
// purchase (then popularity).
func (r *replay) buyAgainRecent(customer string, k int) []string {
	return r.topOwn(customer, k, func(a, b assoc.HistoryItem) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), b.Last.Compare(a.Last),
			cmp.Compare(r.model.Count(b.Item), r.model.Count(a.Item)), cmp.Compare(a.Item, b.Item))
	})
}

// topOwn returns the customer's items in the order of cmpItems, filled with
// popular items.
func (r *replay) topOwn(customer string, k int, cmpItems func(a, b assoc.HistoryItem) int) []string {
	items := r.plain.Snapshot(customer, time.Time{}).Items
	slices.SortFunc(items, cmpItems)
	out := make([]string, 0, k)
	in := map[string]bool{}
	for _, h := range items {
		if len(out) == k {
			break
		}
		out = append(out, h.Item)
		in[h.Item] = true
	}
	if len(out) < k {
		out = append(out, r.model.Popular(k-len(out), func(s string) bool { return in[s] })...)
	}
	return out
}

func names(recs []assoc.Rec) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Item
	}
	return out
}

func setOf(items []string) map[string]bool {
	s := make(map[string]bool, len(items))
	for _, it := range items {
		s[it] = true
	}
	return s
}
