package eval

import "math"

// Scores are the top-K metrics of one ranked list against one target basket.
type Scores struct {
	Hit       float64 // 1 when at least one recommended item is in the target
	Precision float64 // hits / K
	Recall    float64 // hits / |target|
	AP        float64 // average precision at K (see ScoreList)
	Hits      int     // recommended items in the target
}

// ScoreList scores the first k items of recs against target. Precision
// divides by k even when recs is shorter (an empty slot is a miss). AP@k is
// Σ precision@i over the ranks i ≤ k that hold a target item, divided by
// min(|target|, k), the usual MAP@k definition (e.g. Kaggle's apk); a
// repeated recommendation counts once.
func ScoreList(recs []string, target map[string]bool, k int) Scores {
	var s Scores
	if k <= 0 || len(target) == 0 {
		return s
	}
	seen := make(map[string]bool, k)
	var sumPrec float64
	for i, r := range recs {
		if i == k {
			break
		}
		if target[r] && !seen[r] {
			s.Hits++
			sumPrec += float64(s.Hits) / float64(i+1)
		}
		seen[r] = true
	}
	if s.Hits > 0 {
		s.Hit = 1
	}
	s.Precision = float64(s.Hits) / float64(k)
	s.Recall = float64(s.Hits) / float64(len(target))
	s.AP = sumPrec / float64(min(len(target), k))
	return s
}

// MethodResult aggregates Scores over the evaluated customers.
type MethodResult struct {
	Method    string  `json:"method"`
	Customers int     `json:"customers"`
	HitRate   float64 `json:"hit_rate"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	MAP       float64 `json:"map"`
	// Hits counts recommended items found in the target baskets, split into
	// repeat items (in the customer's training history) and explore items.
	Hits         int     `json:"hits"`
	RepeatHits   int     `json:"repeat_hits"`
	ExploreHits  int     `json:"explore_hits"`
	RepeatShare  float64 `json:"repeat_hit_share"`
	ExploreShare float64 `json:"explore_hit_share"`
	// RepeatSlots is the share of recommended slots holding repeat items.
	RepeatSlots float64 `json:"repeat_slot_share"`

	slots, repeatSlots int
	per                []Scores // per customer, in evaluation order, for paired comparisons
}

// add scores one customer's list; bought tells which items are repeats.
func (r *MethodResult) add(recs []string, target map[string]bool, k int, bought func(string) bool) {
	s := ScoreList(recs, target, k)
	r.per = append(r.per, s)
	r.Customers++
	r.HitRate += s.Hit
	r.Precision += s.Precision
	r.Recall += s.Recall
	r.MAP += s.AP
	r.Hits += s.Hits
	seen := map[string]bool{}
	for i, it := range recs {
		if i == k {
			break
		}
		if seen[it] {
			continue
		}
		seen[it] = true
		rep := bought(it)
		r.slots++
		if rep {
			r.repeatSlots++
		}
		if target[it] {
			if rep {
				r.RepeatHits++
			} else {
				r.ExploreHits++
			}
		}
	}
}

// finish turns sums into means.
func (r *MethodResult) finish() {
	if r.Customers > 0 {
		n := float64(r.Customers)
		r.HitRate /= n
		r.Precision /= n
		r.Recall /= n
		r.MAP /= n
	}
	if r.Hits > 0 {
		r.RepeatShare = float64(r.RepeatHits) / float64(r.Hits)
		r.ExploreShare = float64(r.ExploreHits) / float64(r.Hits)
	}
	if r.slots > 0 {
		r.RepeatSlots = float64(r.repeatSlots) / float64(r.slots)
	}
}

// Diff is the mean paired difference of one metric between two methods
// scored on the same customers, with the half-width of its 95% confidence
// interval (1.96 standard errors of the mean difference).
type Diff struct {
	Mean float64 `json:"mean"`
	CI95 float64 `json:"ci95"`
}

// Comparison is Method minus Baseline on every metric.
type Comparison struct {
	Method    string `json:"method"`
	Baseline  string `json:"baseline"`
	HitRate   Diff   `json:"hit_rate"`
	Precision Diff   `json:"precision"`
	Recall    Diff   `json:"recall"`
	MAP       Diff   `json:"map"`
}

// compare pairs a and b customer by customer (they must have been scored
// on the same targets in the same order).
func compare(a, b *MethodResult) Comparison {
	c := Comparison{Method: a.Method, Baseline: b.Method}
	n := min(len(a.per), len(b.per))
	if n == 0 {
		return c
	}
	diff := func(f func(Scores) float64) Diff {
		var sum, sq float64
		for i := range n {
			d := f(a.per[i]) - f(b.per[i])
			sum += d
			sq += d * d
		}
		mean := sum / float64(n)
		if n < 2 {
			return Diff{Mean: mean}
		}
		v := (sq - float64(n)*mean*mean) / float64(n-1)
		return Diff{Mean: mean, CI95: 1.96 * math.Sqrt(max(v, 0)/float64(n))}
	}
	c.HitRate = diff(func(s Scores) float64 { return s.Hit })
	c.Precision = diff(func(s Scores) float64 { return s.Precision })
	c.Recall = diff(func(s Scores) float64 { return s.Recall })
	c.MAP = diff(func(s Scores) float64 { return s.AP })
	return c
}
