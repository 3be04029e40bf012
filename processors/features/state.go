package features

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/schemas"
)

// State is one profile's features and traits: what the processor keeps in
// Redis per profile. Every part folds exactly: applying a set of events in
// any order, split over any number of merged profiles, gives the same
// values at any read time from the profile's latest event time on (minus the
// allowed lateness); see the definition package for the window semantics.
type State struct {
	// Version counts the changes emitted for the profile.
	Version int64
	// Clock is the profile's time (Unix ms; 0: none): the latest event
	// time applied or window expiry evaluated. Every change is evaluated at
	// the Clock it moves the profile to, and its old values are those at the
	// Clock before, so a consumer that applies a profile's changes in version
	// order always holds its current values.
	Clock int64
	// Feats holds each feature's state by its index in the Set; nil is
	// empty.
	Feats []*featState
	// Traits by name: the latest value by event time wins.
	Traits map[string]Trait
	// MergedInto marks a profile merged away: its events and folds go to
	// this survivor. A tombstone has no other state.
	MergedInto string
}

// Trait is one trait's winning value. Value is a JSON text; "" means the
// trait was removed (set to null).
type Trait struct {
	Time  int64
	Tie   uint32
	Value string
}

// newer reports whether a wins over b: later event time, then the larger
// tie-break (a hash of the message id), then the larger value, so the
// winner never depends on arrival order.
func (a Trait) newer(b Trait) bool {
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	if a.Tie != b.Tie {
		return a.Tie > b.Tie
	}
	return a.Value > b.Value
}

// bucket is one time bucket of a feature (index 0 for lifetime ones). Which
// fields are used depends on the aggregation.
type bucket struct {
	idx int64
	n   int64   // count; values of sum/avg/min/max
	sum int64   // millionths
	num float64 // min or max
	// first/last and first_seen/last_seen: the winning event
	t   int64
	tie uint32
	val definition.Value
}

// topCount is a value's count in one bucket.
type topCount struct {
	idx int64
	n   int64
}

// featState is one feature's state of one profile.
type featState struct {
	buckets []bucket // sorted by idx
	// distinct: exact values (hash -> latest bucket) up to the limit, then
	// a sketch
	items map[uint64]int64
	hll   slidingHLL
	// top: per value, its counts by bucket (sorted by idx)
	top map[string][]topCount
}

func (fs *featState) empty() bool {
	return len(fs.buckets) == 0 && len(fs.items) == 0 && len(fs.hll) == 0 && len(fs.top) == 0
}

func (fs *featState) clone() *featState {
	if fs == nil {
		return nil
	}
	out := &featState{buckets: slices.Clone(fs.buckets)}
	if fs.items != nil {
		out.items = make(map[uint64]int64, len(fs.items))
		for k, v := range fs.items {
			out.items[k] = v
		}
	}
	if fs.hll != nil {
		out.hll = fs.hll.clone()
	}
	if fs.top != nil {
		out.top = make(map[string][]topCount, len(fs.top))
		for k, v := range fs.top {
			out.top[k] = slices.Clone(v)
		}
	}
	return out
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	out := &State{Version: s.Version, Clock: s.Clock, MergedInto: s.MergedInto}
	if s.Feats != nil {
		out.Feats = make([]*featState, len(s.Feats))
		for i, f := range s.Feats {
			out.Feats[i] = f.clone()
		}
	}
	if s.Traits != nil {
		out.Traits = make(map[string]Trait, len(s.Traits))
		for k, v := range s.Traits {
			out.Traits[k] = v
		}
	}
	return out
}

// Engine computes features of one compiled Set.
type Engine struct {
	set *definition.Set
	// lateness in ms
	lateness int64
}

// NewEngine returns the engine of set.
func NewEngine(set *definition.Set) *Engine {
	return &Engine{set: set, lateness: set.AllowedLateness.Milliseconds()}
}

// Set is the engine's feature definitions.
func (e *Engine) Set() *definition.Set { return e.set }

// FeatureChange is one feature whose value changed.
type FeatureChange struct {
	Index    int
	Old, New definition.Value
}

// TraitChange is one trait whose value changed ("" is absent).
type TraitChange struct {
	Name     string
	Old, New string
}

// Change is what one event, fold or expiry changed on a profile: the
// features and traits whose values at the profile's Clock before differ from
// those at Time, the Clock after.
type Change struct {
	Time     int64
	Features []FeatureChange
	Traits   []TraitChange
	// Late is how many windowed features did not take the event because
	// it was older than their kept buckets.
	Late int
}

// Empty reports whether nothing changed.
func (c *Change) Empty() bool { return len(c.Features) == 0 && len(c.Traits) == 0 }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// from is the first bucket of f that counts at read time t.
func from(f *definition.Feature, t int64) int64 {
	if f.Lifetime() {
		return math.MinInt64
	}
	return floorDiv(t-f.WindowMs(), f.Bucket)
}

// keepFrom is the first bucket of f kept at watermark wm.
func (e *Engine) keepFrom(f *definition.Feature, wm int64) int64 {
	if f.Lifetime() {
		return math.MinInt64
	}
	return floorDiv(wm-f.WindowMs()-e.lateness, f.Bucket)
}

// tieOf is the tie-break of an event: a hash of its message id.
func tieOf(messageID string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(messageID))
	return h.Sum32()
}

// Apply applies one event at event time et (Unix ms), processed at now, to
// st and returns what changed: features whose values at the profile's Clock
// before differ from those at its new Clock (the latest of the Clock, et and
// now), and traits the event set. A windowed feature that fell between the
// two Clocks is in the change too, even if the event did not touch it;
// call Advance first to have each such fall as a change of its own.
func (e *Engine) Apply(st *State, ev *schemas.Event, et, now int64) (Change, error) {
	if len(st.Feats) != len(e.set.Features) {
		st.Feats = append(st.Feats, make([]*featState, len(e.set.Features)-len(st.Feats))...)
	}
	t := max(st.Clock, et, now)
	ch := Change{Time: t}
	tie := tieOf(ev.MessageID)
	var env *definition.PredicateEnv
	var old []definition.Value
	if t != st.Clock {
		old = e.Values(st, st.Clock)
	}
	for i, f := range e.set.Features {
		ok, err := f.Matches(ev, &env)
		if err != nil {
			return ch, err
		}
		before := e.value(f, st.Feats[i], st.Clock)
		if old != nil {
			before = old[i]
		}
		if ok {
			if st.Feats[i] == nil {
				st.Feats[i] = &featState{}
			}
			fs := st.Feats[i]
			e.prune(f, fs, t)
			if !e.add(f, fs, ev, et, tie, t) {
				ch.Late++
			}
			if fs.empty() {
				st.Feats[i] = nil
			}
		} else if old == nil {
			continue // neither touched nor moved in time
		}
		if nv := e.value(f, st.Feats[i], t); nv != before {
			ch.Features = append(ch.Features, FeatureChange{Index: i, Old: before, New: nv})
		}
	}
	st.Clock = t
	ch.Traits = applyTraits(st, ev, et, tie)
	return ch, nil
}

// Advance moves st's Clock to t without an event, one window boundary at a
// time: each boundary where a value falls (Engine.NextChange) up to t is
// a change of its own, in order. Timers call it at their due time, and the
// processor before an event or merge moves the Clock, so that what a
// profile's changes say does not depend on whether a timer fired before
// the event.
func (e *Engine) Advance(st *State, t int64) []Change {
	var out []Change
	for {
		next := e.NextChange(st, st.Clock)
		if next == 0 || next > t {
			break
		}
		if ch := e.Expire(st, next); !ch.Empty() {
			out = append(out, ch)
		}
	}
	if ch := e.Expire(st, t); !ch.Empty() {
		out = append(out, ch)
	}
	return out
}

// Expire moves st's Clock to t without an event (a window expiry timer)
// and returns the windowed features whose values changed. Nothing changes
// when t is not after the Clock.
func (e *Engine) Expire(st *State, t int64) Change {
	ch := Change{Time: max(st.Clock, t)}
	if t <= st.Clock {
		return ch
	}
	for i, f := range e.set.Features {
		if f.Lifetime() || i >= len(st.Feats) || st.Feats[i] == nil {
			continue
		}
		before := e.value(f, st.Feats[i], st.Clock)
		if nv := e.value(f, st.Feats[i], t); nv != before {
			ch.Features = append(ch.Features, FeatureChange{Index: i, Old: before, New: nv})
		}
	}
	st.Clock = t
	e.PruneAll(st)
	return ch
}

// add puts one event into fs; false when it is too late for the window.
func (e *Engine) add(f *definition.Feature, fs *featState, ev *schemas.Event, et int64, tie uint32, wm int64) bool {
	idx := int64(0)
	if !f.Lifetime() {
		idx = floorDiv(et, f.Bucket)
		if idx < e.keepFrom(f, wm) {
			return false
		}
	}
	var vals []definition.Value
	if f.Field != nil {
		f.Field.Each(ev, et, func(v definition.Value) { vals = append(vals, v) })
	}
	switch f.Agg {
	case definition.Count:
		n := int64(1)
		if f.Field != nil {
			n = int64(len(vals))
		}
		if n > 0 {
			b := fs.bucketAt(idx)
			b.n += n
		}
	case definition.Sum, definition.Avg, definition.Min, definition.Max:
		for _, v := range vals {
			if v.Kind != definition.Number || math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
				continue
			}
			b := fs.bucketAt(idx)
			switch f.Agg {
			case definition.Sum, definition.Avg:
				b.sum = addSat(b.sum, micros(v.Num))
			case definition.Min:
				if b.n == 0 || v.Num < b.num {
					b.num = v.Num
				}
			case definition.Max:
				if b.n == 0 || v.Num > b.num {
					b.num = v.Num
				}
			}
			b.n++
		}
	case definition.First, definition.Last:
		if len(vals) == 0 {
			return true
		}
		cand := bucket{idx: idx, t: et, tie: tie, val: vals[0]}
		if f.Agg == definition.Last {
			cand.val = vals[len(vals)-1]
		}
		fs.pick(cand, f.Agg == definition.First)
	case definition.FirstSeen, definition.LastSeen:
		fs.pick(bucket{idx: idx, t: et, tie: tie, val: definition.Num(float64(et))}, f.Agg == definition.FirstSeen)
	case definition.Distinct:
		for _, v := range vals {
			fs.addDistinct(xxhash.Sum64String(v.Text()), idx)
		}
		if len(fs.items) > f.Limit {
			fs.toSketch()
		}
	case definition.Top:
		for _, v := range vals {
			fs.addTop(v.Text(), idx, 1)
		}
		e.boundTop(f, fs, wm)
	}
	return true
}

// micros converts to millionths, saturating far beyond any real amount.
func micros(f float64) int64 {
	m := math.Round(f * 1e6)
	switch {
	case m >= math.MaxInt64/4:
		return math.MaxInt64 / 4
	case m <= math.MinInt64/4:
		return math.MinInt64 / 4
	}
	return int64(m)
}

func addSat(a, b int64) int64 {
	s := a + b
	if (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0) {
		if a > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}

// bucketAt returns the bucket idx, inserting it in order.
func (fs *featState) bucketAt(idx int64) *bucket {
	i, found := slices.BinarySearchFunc(fs.buckets, idx, func(b bucket, idx int64) int { return cmp64(b.idx, idx) })
	if !found {
		fs.buckets = slices.Insert(fs.buckets, i, bucket{idx: idx})
	}
	return &fs.buckets[i]
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// before reports whether a is earlier than b (time, then tie-break, then
// value), the order first/last use.
func before(a, b *bucket) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	if a.tie != b.tie {
		return a.tie < b.tie
	}
	return a.val.Text() < b.val.Text()
}

// pick keeps, in c's bucket, the earliest (first) or latest event.
func (fs *featState) pick(c bucket, first bool) {
	i, found := slices.BinarySearchFunc(fs.buckets, c.idx, func(b bucket, idx int64) int { return cmp64(b.idx, idx) })
	if !found {
		c.n = 1
		fs.buckets = slices.Insert(fs.buckets, i, c)
		return
	}
	b := &fs.buckets[i]
	if (first && before(&c, b)) || (!first && before(b, &c)) {
		n := b.n
		*b = c
		b.n = n
	}
	b.n++
}

func (fs *featState) addDistinct(h uint64, idx int64) {
	if fs.hll != nil {
		fs.hll.add(h, idx)
		return
	}
	if fs.items == nil {
		fs.items = map[uint64]int64{}
	}
	if old, ok := fs.items[h]; !ok || idx > old {
		fs.items[h] = idx
	}
}

// toSketch moves the exact values into a sketch, for good.
func (fs *featState) toSketch() {
	if fs.hll == nil {
		fs.hll = slidingHLL{}
	}
	for h, idx := range fs.items {
		fs.hll.add(h, idx)
	}
	fs.items = nil
}

func (fs *featState) addTop(v string, idx, n int64) {
	if fs.top == nil {
		fs.top = map[string][]topCount{}
	}
	cs := fs.top[v]
	i, found := slices.BinarySearchFunc(cs, idx, func(c topCount, idx int64) int { return cmp64(c.idx, idx) })
	if found {
		cs[i].n += n
	} else {
		cs = slices.Insert(cs, i, topCount{idx, n})
	}
	fs.top[v] = cs
}

// boundTop drops the least frequent values (in the window at wm) beyond the
// limit; ties drop the larger value.
func (e *Engine) boundTop(f *definition.Feature, fs *featState, wm int64) {
	for len(fs.top) > f.Limit {
		lo := from(f, wm)
		worst, worstN := "", int64(math.MaxInt64)
		for v, cs := range fs.top {
			n := sumTop(cs, lo)
			if n < worstN || (n == worstN && v > worst) {
				worst, worstN = v, n
			}
		}
		delete(fs.top, worst)
	}
}

func sumTop(cs []topCount, lo int64) int64 {
	n := int64(0)
	for _, c := range cs {
		if c.idx >= lo {
			n += c.n
		}
	}
	return n
}

// prune drops what can no longer count at any read time from wm −
// allowed lateness on.
func (e *Engine) prune(f *definition.Feature, fs *featState, wm int64) {
	if f.Lifetime() || fs == nil {
		return
	}
	keep := e.keepFrom(f, wm)
	i := 0
	for i < len(fs.buckets) && fs.buckets[i].idx < keep {
		i++
	}
	if i > 0 {
		fs.buckets = append(fs.buckets[:0], fs.buckets[i:]...)
	}
	for h, idx := range fs.items {
		if idx < keep {
			delete(fs.items, h)
		}
	}
	if fs.hll != nil {
		fs.hll.prune(keep)
	}
	for v, cs := range fs.top {
		j := 0
		for j < len(cs) && cs[j].idx < keep {
			j++
		}
		switch {
		case j == len(cs):
			delete(fs.top, v)
		case j > 0:
			fs.top[v] = append(cs[:0], cs[j:]...)
		}
	}
}

// PruneAll prunes every feature at the profile's watermark (before it is
// stored).
func (e *Engine) PruneAll(st *State) {
	for i, f := range e.set.Features {
		if i < len(st.Feats) && st.Feats[i] != nil {
			e.prune(f, st.Feats[i], st.Clock)
			if st.Feats[i].empty() {
				st.Feats[i] = nil
			}
		}
	}
}

// value is feature f's value at read time t.
func (e *Engine) value(f *definition.Feature, fs *featState, t int64) definition.Value {
	zero := definition.Value{}
	switch f.Agg {
	case definition.Count, definition.Sum, definition.Distinct:
		zero = definition.Num(0)
	}
	if fs == nil {
		return zero
	}
	lo := from(f, t)
	switch f.Agg {
	case definition.Count:
		n := int64(0)
		for i := range fs.buckets {
			if fs.buckets[i].idx >= lo {
				n += fs.buckets[i].n
			}
		}
		return definition.Num(float64(n))
	case definition.Sum, definition.Avg:
		n, sum := int64(0), int64(0)
		for i := range fs.buckets {
			if b := &fs.buckets[i]; b.idx >= lo {
				n += b.n
				sum = addSat(sum, b.sum)
			}
		}
		if f.Agg == definition.Sum {
			return definition.Num(float64(sum) / 1e6)
		}
		if n == 0 {
			return zero
		}
		return definition.Num(float64(sum) / 1e6 / float64(n))
	case definition.Min, definition.Max:
		out, ok := 0.0, false
		for i := range fs.buckets {
			b := &fs.buckets[i]
			if b.idx < lo || b.n == 0 {
				continue
			}
			if !ok || (f.Agg == definition.Min && b.num < out) || (f.Agg == definition.Max && b.num > out) {
				out, ok = b.num, true
			}
		}
		if !ok {
			return zero
		}
		return definition.Num(out)
	case definition.First, definition.Last, definition.FirstSeen, definition.LastSeen:
		var win *bucket
		first := f.Agg == definition.First || f.Agg == definition.FirstSeen
		for i := range fs.buckets {
			b := &fs.buckets[i]
			if b.idx < lo {
				continue
			}
			if win == nil || (first && before(b, win)) || (!first && before(win, b)) {
				win = b
			}
		}
		if win == nil {
			return zero
		}
		return win.val
	case definition.Distinct:
		if fs.hll != nil {
			return definition.Num(fs.hll.estimate(lo))
		}
		n := 0
		for _, idx := range fs.items {
			if idx >= lo {
				n++
			}
		}
		return definition.Num(float64(n))
	case definition.Top:
		best, bestN := "", int64(0)
		for v, cs := range fs.top {
			n := sumTop(cs, lo)
			if n > bestN || (n == bestN && n > 0 && v < best) {
				best, bestN = v, n
			}
		}
		if bestN == 0 {
			return zero
		}
		return definition.Str(best)
	}
	return zero
}

// Values returns every feature's value at read time t (Unix ms), by index.
func (e *Engine) Values(st *State, t int64) []definition.Value {
	out := make([]definition.Value, len(e.set.Features))
	for i, f := range e.set.Features {
		var fs *featState
		if i < len(st.Feats) {
			fs = st.Feats[i]
		}
		out[i] = e.value(f, fs, t)
	}
	return out
}

// Value returns feature i's value at read time t.
func (e *Engine) Value(st *State, i int, t int64) definition.Value {
	var fs *featState
	if i < len(st.Feats) {
		fs = st.Feats[i]
	}
	return e.value(e.set.Features[i], fs, t)
}

// NextChange returns the earliest read time after t at which a windowed
// feature's value changes without a new event (a bucket leaves its
// window), or 0 when none will. Segments use it to schedule re-evaluation.
func (e *Engine) NextChange(st *State, t int64) int64 {
	next := int64(0)
	consider := func(at int64) {
		if at > t && (next == 0 || at < next) {
			next = at
		}
	}
	for i, f := range e.set.Features {
		if f.Lifetime() || i >= len(st.Feats) || st.Feats[i] == nil {
			continue
		}
		fs := st.Feats[i]
		lo := from(f, t)
		// Bucket idx stops counting at the read time where from() passes
		// it: (idx+1)·b + W.
		leave := func(idx int64) {
			if idx >= lo {
				consider((idx+1)*f.Bucket + f.WindowMs())
			}
		}
		for j := range fs.buckets {
			leave(fs.buckets[j].idx)
		}
		for _, idx := range fs.items {
			leave(idx)
		}
		for _, ps := range fs.hll {
			for _, p := range ps {
				leave(p.idx)
			}
		}
		for _, cs := range fs.top {
			for _, c := range cs {
				leave(c.idx)
			}
		}
	}
	return next
}

// Fold folds src (a profile merged away) into dst and returns what changed
// on dst: values at dst's Clock before against values at the later of the
// two Clocks after. src is consumed.
func (e *Engine) Fold(dst, src *State) Change {
	n := len(e.set.Features)
	if len(dst.Feats) != n {
		dst.Feats = append(dst.Feats, make([]*featState, n-len(dst.Feats))...)
	}
	t := max(dst.Clock, src.Clock)
	ch := Change{Time: t}
	for i, f := range e.set.Features {
		var s *featState
		if i < len(src.Feats) {
			s = src.Feats[i]
		}
		old := e.value(f, dst.Feats[i], dst.Clock)
		if s == nil {
			if t != dst.Clock && !f.Lifetime() {
				// moved in time only
				if nv := e.value(f, dst.Feats[i], t); nv != old {
					ch.Features = append(ch.Features, FeatureChange{Index: i, Old: old, New: nv})
				}
			}
			continue
		}
		if dst.Feats[i] == nil {
			dst.Feats[i] = &featState{}
		}
		d := dst.Feats[i]
		// Both sides are pruned first, as Apply prunes before it adds, so
		// the limits of distinct and top are checked on the same values.
		e.prune(f, d, t)
		e.prune(f, s, t)
		e.foldFeat(f, d, s)
		if f.Agg == definition.Top {
			e.boundTop(f, d, t)
		}
		if d.empty() {
			dst.Feats[i] = nil
		}
		if nv := e.value(f, dst.Feats[i], t); nv != old {
			ch.Features = append(ch.Features, FeatureChange{Index: i, Old: old, New: nv})
		}
	}
	dst.Clock = t
	for name, tr := range src.Traits {
		cur, ok := dst.Traits[name]
		if ok && !tr.newer(cur) {
			continue
		}
		if dst.Traits == nil {
			dst.Traits = map[string]Trait{}
		}
		dst.Traits[name] = tr
		if cur.Value != tr.Value {
			ch.Traits = append(ch.Traits, TraitChange{Name: name, Old: cur.Value, New: tr.Value})
		}
	}
	slices.SortFunc(ch.Traits, func(a, b TraitChange) int { return strings.Compare(a.Name, b.Name) })
	return ch
}

func (e *Engine) foldFeat(f *definition.Feature, d, s *featState) {
	switch f.Agg {
	case definition.Distinct:
		switch {
		case s.hll != nil || d.hll != nil:
			if d.hll == nil {
				d.toSketch()
			}
			for h, idx := range s.items {
				d.hll.add(h, idx)
			}
			if s.hll != nil {
				d.hll.union(s.hll)
			}
		default:
			for h, idx := range s.items {
				d.addDistinct(h, idx)
			}
			if len(d.items) > f.Limit {
				d.toSketch()
			}
		}
		return
	case definition.Top:
		for v, cs := range s.top {
			for _, c := range cs {
				d.addTop(v, c.idx, c.n)
			}
		}
		return
	}
	for i := range s.buckets {
		sb := &s.buckets[i]
		switch f.Agg {
		case definition.First, definition.FirstSeen, definition.Last, definition.LastSeen:
			first := f.Agg == definition.First || f.Agg == definition.FirstSeen
			j, found := slices.BinarySearchFunc(d.buckets, sb.idx, func(b bucket, idx int64) int { return cmp64(b.idx, idx) })
			if !found {
				d.buckets = slices.Insert(d.buckets, j, *sb)
				continue
			}
			db := &d.buckets[j]
			n := db.n + sb.n
			if (first && before(sb, db)) || (!first && before(db, sb)) {
				*db = *sb
			}
			db.n = n
		default:
			db := d.bucketAt(sb.idx)
			switch f.Agg {
			case definition.Min:
				if db.n == 0 || sb.num < db.num {
					db.num = sb.num
				}
			case definition.Max:
				if db.n == 0 || sb.num > db.num {
					db.num = sb.num
				}
			}
			db.n += sb.n
			db.sum = addSat(db.sum, sb.sum)
		}
	}
}

// applyTraits merges the event's traits (identify: traits and
// context.traits; other calls: context.traits; any call: its user id as
// user_id) and returns the changes, sorted by name.
func applyTraits(st *State, ev *schemas.Event, et int64, tie uint32) []TraitChange {
	if len(ev.Context.Traits) == 0 && ev.UserID == "" && (ev.Type != schemas.Identify || len(ev.Traits) == 0) {
		return nil
	}
	cand := map[string]string{}
	if ev.UserID != "" {
		// The user id is a trait too (activation, segments), latest by
		// event time like any other.
		b, _ := json.Marshal(ev.UserID)
		cand["user_id"] = string(b)
	}
	for k, raw := range ev.Context.Traits {
		cand[k] = string(raw)
	}
	if ev.Type == schemas.Identify {
		for k, raw := range ev.Traits { // the call's own traits win over its context's
			cand[k] = string(raw)
		}
	}
	var out []TraitChange
	for name, raw := range cand {
		if raw == "null" {
			raw = ""
		}
		tr := Trait{Time: et, Tie: tie, Value: raw}
		cur, ok := st.Traits[name]
		if ok && !tr.newer(cur) {
			continue
		}
		if st.Traits == nil {
			st.Traits = map[string]Trait{}
		}
		st.Traits[name] = tr
		if cur.Value != raw {
			out = append(out, TraitChange{Name: name, Old: cur.Value, New: raw})
		}
	}
	slices.SortFunc(out, func(a, b TraitChange) int { return strings.Compare(a.Name, b.Name) })
	return out
}
