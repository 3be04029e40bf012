package assoc

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Mix weighs the three parts of a candidate's score (package doc). Only the
// ratios matter.
type Mix struct {
	// Repeat weighs repeat(j): the decayed share of the profile's baskets
	// that contain j (0 for items it never bought).
	Repeat float64 `json:"repeat"`
	// Next weighs next(j): the history's mean next-basket confidence
	// P(j in the next basket | i in a basket), item j = i included.
	Next float64 `json:"next"`
	// Together weighs together(j): the history's mean bought-together
	// strength sim(i, j) under Options.Measure.
	Together float64 `json:"together"`
}

// Options tune one recommendation query. Start from DefaultOptions.
type Options struct {
	// K is the number of items returned. Default 10.
	K   int
	Mix Mix
	// ExcludeBought leaves out every item in the profile's history, for
	// catalogues where buying twice makes no sense.
	ExcludeBought bool
	// Measure and Damping define the bought-together strength sim(i, j).
	Measure Measure
	Damping float64
	// Neighbours is the number of strongest bought-together associations of
	// each history item that contribute; 0 uses every kept counter.
	Neighbours int
	// MinCount ignores pairs (of either table) whose kept count is lower: a
	// pair seen once is mostly noise, and its lift is huge.
	MinCount float64
	// Context are items the profile is looking at now (a session's views);
	// each contributes to together(j) like a history item bought in every
	// basket.
	Context []string
}

// DefaultOptions are the settings `cdp ml eval` chose on the validation
// split of the UCI Online Retail data set (README, "Machine learning
// (offline evaluation)"), with DefaultHistoryConfig's half-life.
func DefaultOptions() Options {
	return Options{K: 10, Mix: Mix{Repeat: 1, Next: 2, Together: 0}, Measure: Cosine, Neighbours: 50, MinCount: 2}
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if o.K < 0 {
		return fmt.Errorf("recommendation K %d is negative", o.K)
	}
	if o.Mix.Repeat < 0 || o.Mix.Next < 0 || o.Mix.Together < 0 {
		return fmt.Errorf("mix %+v has a negative weight", o.Mix)
	}
	if o.Measure < Cosine || o.Measure > Jaccard {
		return fmt.Errorf("unknown measure %v", o.Measure)
	}
	return nil
}

// Rec is one recommended item.
type Rec struct {
	Item  string
	Score float64
	// Repeat is true for an item in the profile's history, false for an
	// explore item (from the associations, or popular fill).
	Repeat bool
}

type cand struct {
	id                     int32 // model id, or -1 for a history item the model never saw
	name                   string
	repeat, next, together float64
	inHist                 bool
}

// Candidates are the scored candidates of one query before the mix: every
// history item and every associated item with its three part scores. Top
// ranks them; one Candidates can be ranked under several mixes (the
// evaluation tunes the mix this way).
type Candidates struct {
	m     *Model
	list  []cand
	inHst map[string]bool
}

// Recommend returns up to o.K items for a profile whose history at the query
// time is s (History.Snapshot). Invalid options return nil; o.Validate says
// why.
func (m *Model) Recommend(s Snapshot, o Options) []Rec {
	if o.Validate() != nil {
		return nil
	}
	return m.Candidates(s, o).Top(o.K, o.Mix, o.ExcludeBought)
}

// Candidates scores the candidates of s with o's Measure, Damping,
// Neighbours, MinCount and Context; of the mix it reads only whether
// o.Mix.Together is 0, in which case (and without Context) it skips the
// bought-together part, the costlier half: Top must then not weigh it. It
// costs O(h · Capacity) for h history items, plus a selection per history
// item when Neighbours > 0.
func (m *Model) Candidates(s Snapshot, o Options) *Candidates {
	bw := s.BasketWeight
	if bw <= 0 {
		bw = 1
	}
	// pos maps a model id to 1 + its index in list (0: not a candidate yet):
	// a dense array is several times faster than a map here, and a pool
	// keeps queries allocation-light and safe to run concurrently.
	pos := m.positions()
	defer m.releasePositions(pos)
	list := make([]cand, 0, len(s.Items)*8)
	cs := &Candidates{m: m, inHst: make(map[string]bool, len(s.Items))}
	type src struct {
		id  int32
		u   float64 // the item's share of the profile's baskets
		ctx bool    // a Context item: bought-together part only
	}
	srcs := make([]src, 0, len(s.Items)+len(o.Context))
	var total, totalHist float64
	for _, h := range s.Items {
		cs.inHst[h.Item] = true
		u := h.Weight / bw
		id, ok := m.ids[h.Item]
		if !ok {
			list = append(list, cand{id: -1, name: h.Item, repeat: u, inHist: true})
			continue
		}
		list = append(list, cand{id: id, name: h.Item, repeat: u, inHist: true})
		pos.set(id, len(list))
		if u > 0 {
			srcs = append(srcs, src{id: id, u: u})
			total += u
		}
	}
	totalHist = total
	for _, c := range o.Context {
		if id, ok := m.ids[c]; ok {
			srcs = append(srcs, src{id: id, u: 1, ctx: true})
			total++
		}
	}
	get := func(j int32) *cand {
		p := pos.get(j)
		if p == 0 {
			list = append(list, cand{id: j, name: m.items[j].name})
			p = len(list)
			pos.set(j, p)
		}
		return &list[p-1]
	}
	var buf []scored
	together := o.Mix.Together > 0 || len(o.Context) > 0
	for _, s := range srcs {
		w := s.u / total // means over the history, weighted by basket share
		it := &m.items[s.id]
		if !s.ctx && it.from > 0 {
			wn := s.u / totalHist
			for p, j := range it.next.keys {
				if c := it.next.vals[p]; c >= o.MinCount {
					get(j).next += wn * c / it.from
				}
			}
		}
		switch {
		case !together:
			continue
		case o.Neighbours > 0:
			buf = m.together(s.id, o.Measure, o.Damping, o.MinCount, o.Neighbours, buf)
			for _, nb := range buf {
				get(nb.id).together += w * nb.s
			}
			continue
		}
		for p, j := range it.co.keys {
			if c := it.co.vals[p]; c >= o.MinCount {
				get(j).together += w * m.strength(o.Measure, o.Damping, s.id, j, c)
			}
		}
	}
	cs.list = list
	return cs
}

// Len returns the number of candidates.
func (cs *Candidates) Len() int { return len(cs.list) }

// Top returns the k best candidates under mix, without history items when
// excludeBought, filled with the most popular remaining items when there
// are fewer than k. A candidate not in the history needs a positive score
// under mix: with Mix{Repeat: 1} alone new items come from popularity, as
// in buy-again. Ties are broken by the parts the mix weighs (repeat, next,
// together, in that order), then popularity, then the name; a part the mix
// does not weigh never matters, so the result is the same whether or not
// Candidates computed it, and deterministic.
func (cs *Candidates) Top(k int, mix Mix, excludeBought bool) []Rec {
	if k <= 0 {
		k = 10
	}
	m := cs.m
	type ranked struct {
		c     *cand
		score float64
	}
	before := func(a, b ranked) bool {
		if a.score != b.score { // the common case, decided without the chain below
			return a.score > b.score
		}
		for _, part := range [...]struct {
			w    float64
			x, y float64
		}{{mix.Repeat, a.c.repeat, b.c.repeat}, {mix.Next, a.c.next, b.c.next}, {mix.Together, a.c.together, b.c.together}} {
			if part.w > 0 && part.x != part.y {
				return part.x > part.y
			}
		}
		return cmp.Or(cmp.Compare(m.count(b.c.id), m.count(a.c.id)), cmp.Compare(a.c.name, b.c.name)) < 0
	}
	best := make([]ranked, 0, k+1) // sorted, at most k: bounded insertion
	for i := range cs.list {
		c := &cs.list[i]
		if excludeBought && c.inHist {
			continue
		}
		r := ranked{c, mix.Repeat*c.repeat + mix.Next*c.next + mix.Together*c.together}
		if !c.inHist && !(r.score > 0) {
			continue
		}
		if len(best) == k && !before(r, best[k-1]) {
			continue
		}
		pos, _ := slices.BinarySearchFunc(best, r, func(e, t ranked) int {
			if before(e, t) {
				return -1
			}
			return 1
		})
		best = slices.Insert(best, pos, r)
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]Rec, 0, k)
	chosen := make(map[string]bool, k)
	for _, r := range best {
		out = append(out, Rec{Item: r.c.name, Score: r.score, Repeat: r.c.inHist})
		chosen[r.c.name] = true
	}
	if len(out) < k {
		skip := func(s string) bool { return chosen[s] || excludeBought && cs.inHst[s] }
		for _, p := range m.Popular(k-len(out), skip) {
			out = append(out, Rec{Item: p, Repeat: cs.inHst[p]})
		}
	}
	return out
}

func (m *Model) count(id int32) float64 {
	if id < 0 {
		return 0
	}
	return m.items[id].n
}

// Recommender is a Model and a History fed together: the shape the recommend
// processor keeps per partition.
type Recommender struct {
	model   *Model
	history *History
}

// NewRecommender returns an empty Recommender.
func NewRecommender(mc Config, hc HistoryConfig) *Recommender {
	return &Recommender{model: New(mc), history: NewHistory(hc)}
}

// Model returns the item associations.
func (r *Recommender) Model() *Model { return r.model }

// History returns the per-profile purchases.
func (r *Recommender) History() *History { return r.history }

// AddBasket records that profile bought items at t: the transition from its
// previous basket, the basket's pairs, and the purchase in its history.
func (r *Recommender) AddBasket(profile string, items []string, t time.Time) {
	if prev := r.history.LastBasket(profile); len(prev) > 0 {
		r.model.AddTransition(prev, items)
	}
	r.model.AddBasket(items)
	r.history.AddBasket(profile, items, t)
}

// AddSession records a session's views that ended in the purchase of bought
// (see Model.AddSession); the order itself goes through AddBasket.
func (r *Recommender) AddSession(viewed, bought []string) {
	r.model.AddSession(viewed, bought)
}

// Recommend returns profile's top items at time now.
func (r *Recommender) Recommend(profile string, now time.Time, o Options) []Rec {
	return r.model.Recommend(r.history.Snapshot(profile, now), o)
}

// posMap is a dense id → position array with the list of ids set, so that
// it can be cleared in time proportional to its use.
type posMap struct {
	pos     []int32
	touched []int32
}

func (p *posMap) get(id int32) int { return int(p.pos[id]) }

func (p *posMap) set(id int32, v int) {
	if p.pos[id] == 0 {
		p.touched = append(p.touched, id)
	}
	p.pos[id] = int32(v)
}

func (m *Model) positions() *posMap {
	p, _ := m.posPool.Get().(*posMap)
	if p == nil {
		p = &posMap{}
	}
	if len(p.pos) < len(m.items) {
		p.pos = make([]int32, len(m.items)+len(m.items)/4)
		p.touched = p.touched[:0]
	}
	return p
}

func (m *Model) releasePositions(p *posMap) {
	for _, id := range p.touched {
		p.pos[id] = 0
	}
	p.touched = p.touched[:0]
	m.posPool.Put(p)
}
