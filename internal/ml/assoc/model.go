package assoc

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sync"
)

// Config sizes a Model. The zero value of a field selects its default.
type Config struct {
	// Capacity is the number of counters kept per item in each of its two
	// tables (bought together, bought next): the counting bound of the
	// package doc. Default 200. Keep it at least twice the Neighbours a query
	// uses, because a pruning step may free half of a table.
	Capacity int
	// MaxBasketItems caps the items of one basket among which pairs are
	// counted (and of the previous basket for transitions). Default 100;
	// less than 2 counts no pairs.
	MaxBasketItems int
	// SessionWeight is the weight of one viewed → bought pair relative to a
	// pair bought together (1). Default 0.5: a purchase says more than a view.
	SessionWeight float64
}

// Defaults of Config.
const (
	DefaultCapacity       = 200
	DefaultMaxBasketItems = 100
	DefaultSessionWeight  = 0.5
)

func (c Config) withDefaults() Config {
	if c.Capacity <= 0 {
		c.Capacity = DefaultCapacity
	}
	if c.MaxBasketItems == 0 {
		c.MaxBasketItems = DefaultMaxBasketItems
	}
	if c.SessionWeight <= 0 {
		c.SessionWeight = DefaultSessionWeight
	}
	return c
}

// Model holds the item counts and the two bounded tables per item. See the
// package doc for the measures and the memory bound. The zero value is not
// usable; call New.
type Model struct {
	cfg         Config
	ids         map[string]int32
	items       []item
	baskets     float64 // B: baskets seen (sessions do not count)
	transitions float64 // P: basket → next basket transitions seen
	pairs       int     // counters held in all tables
	scratch     []int32
	scratch2    []int32
	keys        []uint64
	vals        []float64
	posPool     sync.Pool // *posMap scratch of Candidates
}

type item struct {
	name string
	hash uint64
	n    float64 // baskets containing the item, plus session weight of views
	from float64 // transitions whose earlier basket holds the item
	to   float64 // transitions whose later basket holds the item
	co   table   // bought together (and viewed → bought)
	next table   // bought in the earlier basket → bought in the next one
}

// table is one item's bounded counters: parallel key and count slices
// (iterated by every query, which is several times faster than ranging over
// a map) and an index from key to position (for updates).
type table struct {
	keys []int32
	vals []float64
	idx  map[int32]int32
	// mass is the total weight offered to the table (N_i), pruned the total
	// subtracted from each surviving counter by Misra–Gries steps.
	mass, pruned float64
}

// get returns the count of key j (0 when not kept).
func (t *table) get(j int32) float64 {
	if p, ok := t.idx[j]; ok {
		return t.vals[p]
	}
	return 0
}

// New returns an empty Model.
func New(cfg Config) *Model {
	return &Model{cfg: cfg.withDefaults(), ids: map[string]int32{}}
}

// Config returns the configuration in use, defaults applied.
func (m *Model) Config() Config { return m.cfg }

func (m *Model) intern(name string) int32 {
	if id, ok := m.ids[name]; ok {
		return id
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	id := int32(len(m.items))
	m.items = append(m.items, item{name: name, hash: h.Sum64()})
	m.ids[name] = id
	return id
}

// dedupe interns names into buf without repeats, skipping empty names, in
// a canonical order (by name hash, then name) that depends neither on the
// order of names nor on when items were first seen: pruning inside one
// basket then gives the same counts whatever the input order.
func (m *Model) dedupe(names []string, buf []int32) []int32 {
	ids := buf[:0]
	for _, n := range names {
		if n != "" {
			ids = append(ids, m.intern(n))
		}
	}
	slices.SortFunc(ids, func(a, b int32) int {
		return cmp.Or(cmp.Compare(m.items[a].hash, m.items[b].hash), cmp.Compare(m.items[a].name, m.items[b].name))
	})
	return slices.Compact(ids)
}

// AddBasket records one basket (an order): every distinct item's count rises
// by one and every pair of distinct items is counted once in both
// directions. Repeated and empty names are ignored; the order of items does
// not matter.
func (m *Model) AddBasket(items []string) {
	ids := m.dedupe(items, m.scratch)
	m.scratch = ids
	if len(ids) == 0 {
		return
	}
	m.baskets++
	for _, id := range ids {
		m.items[id].n++
	}
	ids = m.pairSubset(ids)
	for x, i := range ids {
		for _, j := range ids[x+1:] {
			m.add(&m.items[i].co, j, 1)
			m.add(&m.items[j].co, i, 1)
		}
	}
}

// AddTransition records that a profile whose previous basket was prev
// bought next: every pair (i in prev, j in next), i = j included, is counted
// once in i's next-basket table. The self pairs learn how often an item is
// bought again in the following order, the others what tends to follow it.
func (m *Model) AddTransition(prev, next []string) {
	from := m.dedupe(prev, m.scratch)
	m.scratch = from
	to := m.dedupe(next, m.scratch2)
	m.scratch2 = to
	if len(from) == 0 || len(to) == 0 {
		return
	}
	m.transitions++
	for _, i := range from {
		m.items[i].from++
	}
	for _, j := range to {
		m.items[j].to++
	}
	from = slices.Clone(m.pairSubset(from))
	to = m.pairSubset(to)
	for _, i := range from {
		for _, j := range to {
			m.add(&m.items[i].next, j, 1)
		}
	}
}

// AddSession records that the items in viewed were looked at in a session
// that ended with the purchase of bought: each directed pair viewed → bought
// (of distinct items) gains SessionWeight in the bought-together table, and
// each viewed item's count gains SessionWeight so that confidence stays a
// share. The purchase itself is an order and is recorded by AddBasket.
func (m *Model) AddSession(viewed, bought []string) {
	w := m.cfg.SessionWeight
	b := m.dedupe(bought, m.scratch2)
	m.scratch2 = b
	v := m.dedupe(viewed, m.scratch)
	m.scratch = v
	if len(b) == 0 || len(v) == 0 {
		return
	}
	for _, i := range v {
		m.items[i].n += w
		for _, j := range b {
			if i != j {
				m.add(&m.items[i].co, j, w)
			}
		}
	}
}

// pairSubset returns ids, or when there are more than MaxBasketItems of them,
// the MaxBasketItems whose hash mixed with a hash of the whole basket is
// smallest: a subset that depends only on the basket's contents. The result
// may share ids' or m.keys' memory.
func (m *Model) pairSubset(ids []int32) []int32 {
	limit := m.cfg.MaxBasketItems
	if limit < 2 {
		return nil
	}
	if len(ids) <= limit {
		return ids
	}
	var sum uint64
	for _, id := range ids { // a sum, so the seed ignores the order
		sum += m.items[id].hash
	}
	seed := mix64(sum ^ 0x9e3779b97f4a7c15)
	keys := m.keys[:0]
	for x, id := range ids {
		keys = append(keys, mix64(m.items[id].hash^seed)&^0xffffffff|uint64(x))
	}
	slices.Sort(keys)
	sub := make([]int32, 0, limit)
	for _, k := range keys[:limit] {
		sub = append(sub, ids[uint32(k)])
	}
	m.keys = keys
	slices.SortFunc(sub, func(a, b int32) int { // back to dedupe's canonical order
		return cmp.Or(cmp.Compare(m.items[a].hash, m.items[b].hash), cmp.Compare(m.items[a].name, m.items[b].name))
	})
	return sub
}

// mix64 is the SplitMix64 finaliser, a cheap bijective scrambler.
func mix64(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	return z ^ z>>31
}

// add offers weight w for key j to table t.
func (m *Model) add(t *table, j int32, w float64) {
	t.mass += w
	if t.idx == nil {
		t.idx = make(map[int32]int32)
	}
	if p, ok := t.idx[j]; ok {
		t.vals[p] += w
		return
	}
	if len(t.keys) < m.cfg.Capacity {
		t.idx[j] = int32(len(t.keys))
		t.keys = append(t.keys, j)
		t.vals = append(t.vals, w)
		m.pairs++
		return
	}
	m.reduce(t, j, w)
}

// reduce is the Misra–Gries step on a full table: subtract the median of the
// counters (the newcomer's weight included) from all of them and drop those
// that reach zero. Counters at or above the median are at least half of the
// Capacity+1, so each step removes at least med·(Capacity+1)/2 of mass;
// hence the total subtracted, pruned, is at most 2·mass/(Capacity+1).
func (m *Model) reduce(t *table, j int32, w float64) {
	vals := append(append(m.vals[:0], w), t.vals...)
	slices.Sort(vals)
	med := vals[(len(vals)-1)/2]
	m.vals = vals
	kept := 0
	clear(t.idx)
	for p, k := range t.keys {
		if v := t.vals[p]; v > med {
			t.keys[kept], t.vals[kept] = k, v-med
			t.idx[k] = int32(kept)
			kept++
		}
	}
	m.pairs -= len(t.keys) - kept
	t.keys, t.vals = t.keys[:kept], t.vals[:kept]
	if w > med {
		t.idx[j] = int32(kept)
		t.keys = append(t.keys, j)
		t.vals = append(t.vals, w-med)
		m.pairs++
	}
	t.pruned += med
}

// Stats describes the model's size.
type Stats struct {
	Items       int     `json:"items"`       // distinct items seen
	Pairs       int     `json:"pairs"`       // counters held in both tables, at most 2 × Items × Capacity
	Baskets     float64 `json:"baskets"`     // baskets recorded (B)
	Transitions float64 `json:"transitions"` // basket → next basket transitions recorded (P)
}

// Stats returns the current size.
func (m *Model) Stats() Stats {
	return Stats{Items: len(m.items), Pairs: m.pairs, Baskets: m.baskets, Transitions: m.transitions}
}

// MaxPairs is the memory bound: the most counters the model can hold with
// its current items.
func (m *Model) MaxPairs() int { return 2 * len(m.items) * m.cfg.Capacity }

// Count returns n_i: the baskets containing item, plus the session weight of
// its views.
func (m *Model) Count(name string) float64 {
	if id, ok := m.ids[name]; ok {
		return m.items[id].n
	}
	return 0
}

// Table selects one of an item's two tables.
type Table int

const (
	// Together counts pairs bought in the same basket (and viewed → bought).
	Together Table = iota
	// Next counts pairs bought in one basket → the profile's next basket.
	Next
)

func (m *Model) table(id int32, t Table) *table {
	if t == Next {
		return &m.items[id].next
	}
	return &m.items[id].co
}

// PairCount returns the kept count of the pair a → b in table t: a lower
// bound of the true count that falls short by at most
// Pruning(a, t).Pruned.
func (m *Model) PairCount(t Table, a, b string) float64 {
	ia, ok1 := m.ids[a]
	ib, ok2 := m.ids[b]
	if !ok1 || !ok2 {
		return 0
	}
	return m.table(ia, t).get(ib)
}

// Pruning is the accounting of one item's table.
type Pruning struct {
	Counters int     // counters held, at most Capacity
	Offered  float64 // N_i: total pair weight ever offered to the table
	Pruned   float64 // total subtracted from each surviving counter: the largest undercount
}

// Pruning returns the accounting of item's table t.
func (m *Model) Pruning(name string, t Table) Pruning {
	id, ok := m.ids[name]
	if !ok {
		return Pruning{}
	}
	tb := m.table(id, t)
	return Pruning{Counters: len(tb.keys), Offered: tb.mass, Pruned: tb.pruned}
}

// Rule holds the association-rule measures of a → b.
type Rule struct {
	Count      float64 // kept count of the pair
	Support    float64 // count / B (or / P for Next)
	Confidence float64 // count / n_a: P(b | a), or P(b in the next basket | a) for Next
	Lift       float64 // confidence / P(b)
}

// Rule returns the measures of the rule a → b in table t (zero when either
// item or the pair is unknown).
func (m *Model) Rule(t Table, a, b string) Rule {
	c := m.PairCount(t, a, b)
	if c == 0 {
		return Rule{}
	}
	ia, ib := m.ids[a], m.ids[b]
	if t == Next {
		na, nb := m.items[ia].from, m.items[ib].to
		return Rule{Count: c, Support: c / m.transitions, Confidence: c / na, Lift: c * m.transitions / (na * nb)}
	}
	na, nb := m.items[ia].n, m.items[ib].n
	return Rule{Count: c, Support: c / m.baskets, Confidence: c / na, Lift: c * m.baskets / (na * nb)}
}

// Measure selects the association strength used to rank bought-together
// neighbours.
type Measure int

const (
	// Cosine is c_ij / √(n_i n_j), symmetric.
	Cosine Measure = iota
	// Confidence is c_ij / n_i, an estimate of P(j | i); favours popular j.
	Confidence
	// Lift is c_ij · B / (n_i n_j); favours rare j, so use it with MinCount.
	Lift
	// Jaccard is c_ij / (n_i + n_j − c_ij).
	Jaccard
)

var measureNames = []string{"cosine", "confidence", "lift", "jaccard"}

func (s Measure) String() string {
	if int(s) >= 0 && int(s) < len(measureNames) {
		return measureNames[s]
	}
	return fmt.Sprintf("Measure(%d)", int(s))
}

// ParseMeasure is the inverse of Measure.String.
func ParseMeasure(s string) (Measure, error) {
	if i := slices.Index(measureNames, s); i >= 0 {
		return Measure(i), nil
	}
	return 0, fmt.Errorf("unknown association measure %q (want one of %v)", s, measureNames)
}

// MarshalText writes the measure's name (used in JSON reports).
func (s Measure) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a measure's name.
func (s *Measure) UnmarshalText(b []byte) error {
	v, err := ParseMeasure(string(b))
	*s = v
	return err
}

// strength is the bought-together measure of i → j with count c, damped by
// n_j^damping.
func (m *Model) strength(meas Measure, damping float64, i, j int32, c float64) float64 {
	ni, nj := m.items[i].n, m.items[j].n
	var s float64
	switch meas {
	case Confidence:
		s = c / ni
	case Lift:
		s = c * m.baskets / (ni * nj)
	case Jaccard:
		s = c / math.Max(ni+nj-c, c)
	default:
		s = c / math.Sqrt(ni*nj)
	}
	switch damping {
	case 0:
	case 0.5:
		s /= math.Sqrt(nj)
	default:
		s /= math.Pow(nj, damping)
	}
	return s
}

// Neighbour is one association of an item.
type Neighbour struct {
	Item     string
	Count    float64 // kept count of the pair
	Strength float64 // the measure (damped), or the next-basket confidence
}

// Neighbours returns up to n (all when n ≤ 0) bought-together associations
// of item with a kept count of at least minCount, strongest first (ties:
// larger count, then item name).
func (m *Model) Neighbours(name string, meas Measure, damping float64, minCount float64, n int) []Neighbour {
	id, ok := m.ids[name]
	if !ok {
		return nil
	}
	return m.export(m.together(id, meas, damping, minCount, n, nil))
}

// NextNeighbours returns up to n (all when n ≤ 0) items most often bought in
// the basket after one holding item (item itself included), by next-basket
// confidence, with a kept count of at least minCount.
func (m *Model) NextNeighbours(name string, minCount float64, n int) []Neighbour {
	id, ok := m.ids[name]
	if !ok {
		return nil
	}
	var buf []scored
	from := m.items[id].from
	nt := &m.items[id].next
	for p, j := range nt.keys {
		if c := nt.vals[p]; c >= minCount {
			buf = append(buf, scored{j, c / from, c})
		}
	}
	m.sortScored(buf)
	if n > 0 && len(buf) > n {
		buf = buf[:n]
	}
	return m.export(buf)
}

func (m *Model) export(buf []scored) []Neighbour {
	out := make([]Neighbour, len(buf))
	for x, c := range buf {
		out[x] = Neighbour{Item: m.items[c.id].name, Count: c.c, Strength: c.s}
	}
	return out
}

type scored struct {
	id int32
	s  float64 // strength
	c  float64 // kept count
}

// before orders neighbours: stronger first, then larger count, then name.
func (m *Model) before(x, y scored) bool {
	if x.s != y.s {
		return x.s > y.s
	}
	if x.c != y.c {
		return x.c > y.c
	}
	return m.items[x.id].name < m.items[y.id].name
}

func (m *Model) sortScored(buf []scored) {
	slices.SortFunc(buf, func(x, y scored) int {
		if m.before(x, y) {
			return -1
		}
		if m.before(y, x) {
			return 1
		}
		return 0
	})
}

// together appends to buf[:0] the bought-together associations of id,
// strongest first, at most n of them when n > 0.
func (m *Model) together(id int32, meas Measure, damping, minCount float64, n int, buf []scored) []scored {
	buf = buf[:0]
	ct := &m.items[id].co
	for p, j := range ct.keys {
		if c := ct.vals[p]; c >= minCount {
			buf = append(buf, scored{j, m.strength(meas, damping, id, j, c), c})
		}
	}
	if n > 0 && len(buf) > n {
		m.selectTop(buf, n)
		buf = buf[:n]
	}
	m.sortScored(buf)
	return buf
}

// selectTop moves the n strongest entries of buf (in sortScored's order) to
// its front, in any order: Hoare's quickselect, O(len(buf)) on average,
// with the middle element as pivot so the result is deterministic.
func (m *Model) selectTop(buf []scored, n int) {
	before := m.before
	lo, hi := 0, len(buf)-1
	for lo < hi {
		p := buf[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for before(buf[i], p) {
				i++
			}
			for before(p, buf[j]) {
				j--
			}
			if i <= j {
				buf[i], buf[j] = buf[j], buf[i]
				i++
				j--
			}
		}
		switch {
		case n-1 <= j:
			hi = j
		case n-1 >= i:
			lo = i
		default:
			return
		}
	}
}

// Popular returns the k items in the most baskets (ties: name), skipping those
// for which skip returns true (skip may be nil).
func (m *Model) Popular(k int, skip func(string) bool) []string {
	if k <= 0 {
		return nil
	}
	top := make([]int32, 0, k+1)
	before := func(a, b int32) bool {
		if m.items[a].n != m.items[b].n {
			return m.items[a].n > m.items[b].n
		}
		return m.items[a].name < m.items[b].name
	}
	for id := range m.items {
		id := int32(id)
		if len(top) == k && !before(id, top[k-1]) {
			continue
		}
		if skip != nil && skip(m.items[id].name) {
			continue
		}
		pos, _ := slices.BinarySearchFunc(top, id, func(e, t int32) int {
			if before(e, t) {
				return -1
			}
			return 1
		})
		top = slices.Insert(top, pos, id)
		if len(top) > k {
			top = top[:k]
		}
	}
	out := make([]string, len(top))
	for x, id := range top {
		out[x] = m.items[id].name
	}
	return out
}
