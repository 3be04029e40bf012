package reference

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"sort"

	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/schemas"
)

// Package reference is the brute-force reference the property tests of the
// features and segments processors compare them with. It shares nothing
// with the feature engine but the definitions' reading of events (which
// events a feature takes, and which values): no buckets, no pruning, no
// folding. It keeps every event of a profile and computes each value at
// read time t straight from the definition's semantics (see the definition
// package doc):
//
//   - a windowed feature counts an event at time e iff (floor(e/b)+1)·b > t − W;
//   - sums and averages are in millionths, each value rounded on its own;
//   - first/last order events by (time, fnv32a(message_id), value text);
//   - traits: the newest (time, fnv32a(message_id), JSON text) wins;
//     identify traits over context traits over the user id of the same
//     event; JSON null removes.
//
// Read times must be at or after the profile's clock minus the allowed
// lateness, where the engine is exact by construction.

// Event is one event of a profile and its event time (Unix ms).
type Event struct {
	Ev schemas.Event
	T  int64
}

func tie(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()
}

func counts(f *definition.Feature, e, t int64) bool {
	if f.Window == 0 {
		return true
	}
	b := f.Bucket
	idx := e / b
	if e%b != 0 && e < 0 {
		idx--
	}
	return (idx+1)*b > t-f.Window.Milliseconds()
}

type refPick struct {
	t    int64
	tie  uint32
	text string
	val  definition.Value
}

func refEarlier(a, b refPick) bool {
	if a.t != b.t {
		return a.t < b.t
	}
	if a.tie != b.tie {
		return a.tie < b.tie
	}
	return a.text < b.text
}

// Value computes feature f over evs at read time t.
func Value(f *definition.Feature, evs []Event, t int64) definition.Value {
	var vals []definition.Value
	var picks []refPick
	events := 0
	for _, re := range evs {
		var env *definition.PredicateEnv
		ok, err := f.Matches(&re.Ev, &env)
		if err != nil || !ok || !counts(f, re.T, t) {
			continue
		}
		events++
		msgTie := tie(re.Ev.MessageID)
		if f.Field == nil {
			picks = append(picks, refPick{t: re.T, tie: msgTie, text: "", val: definition.Num(float64(re.T))})
			continue
		}
		var evVals []definition.Value
		f.Field.Each(&re.Ev, re.T, func(v definition.Value) { evVals = append(evVals, v) })
		vals = append(vals, evVals...)
		if len(evVals) > 0 {
			v := evVals[0]
			if f.Agg == definition.Last {
				v = evVals[len(evVals)-1]
			}
			picks = append(picks, refPick{t: re.T, tie: msgTie, text: v.Text(), val: v})
		}
	}
	nums := func() []float64 {
		var out []float64
		for _, v := range vals {
			if v.Kind == definition.Number && !math.IsNaN(v.Num) && !math.IsInf(v.Num, 0) {
				out = append(out, v.Num)
			}
		}
		return out
	}
	switch f.Agg {
	case definition.Count:
		if f.Field == nil {
			return definition.Num(float64(events))
		}
		return definition.Num(float64(len(vals)))
	case definition.Sum, definition.Avg:
		ns := nums()
		var s int64
		for _, x := range ns {
			s += int64(math.Round(x * 1e6))
		}
		if f.Agg == definition.Sum {
			return definition.Num(float64(s) / 1e6)
		}
		if len(ns) == 0 {
			return definition.Value{}
		}
		return definition.Num(float64(s) / 1e6 / float64(len(ns)))
	case definition.Min, definition.Max:
		ns := nums()
		if len(ns) == 0 {
			return definition.Value{}
		}
		sort.Float64s(ns)
		if f.Agg == definition.Min {
			return definition.Num(ns[0])
		}
		return definition.Num(ns[len(ns)-1])
	case definition.First, definition.Last, definition.FirstSeen, definition.LastSeen:
		if len(picks) == 0 {
			return definition.Value{}
		}
		sort.Slice(picks, func(i, j int) bool { return refEarlier(picks[i], picks[j]) })
		if f.Agg == definition.First || f.Agg == definition.FirstSeen {
			return picks[0].val
		}
		return picks[len(picks)-1].val
	case definition.Distinct:
		seen := map[string]bool{}
		for _, v := range vals {
			seen[v.Text()] = true
		}
		return definition.Num(float64(len(seen)))
	case definition.Top:
		counts := map[string]int{}
		for _, v := range vals {
			counts[v.Text()]++
		}
		best, bestN := "", 0
		for v, n := range counts {
			if n > bestN || (n == bestN && v < best) {
				best, bestN = v, n
			}
		}
		if bestN == 0 {
			return definition.Value{}
		}
		return definition.Str(best)
	}
	return definition.Value{}
}

// Traits computes the visible traits of evs (JSON texts by name).
func Traits(evs []Event) map[string]string {
	type cand struct {
		t    int64
		tie  uint32
		text string
	}
	win := map[string]cand{}
	for _, re := range evs {
		ev := &re.Ev
		own := map[string]string{}
		if ev.UserID != "" {
			b, _ := json.Marshal(ev.UserID)
			own["user_id"] = string(b)
		}
		for k, raw := range ev.Context.Traits {
			own[k] = string(raw)
		}
		if ev.Type == schemas.Identify {
			for k, raw := range ev.Traits {
				own[k] = string(raw)
			}
		}
		for k, text := range own {
			if text == "null" {
				text = ""
			}
			c := cand{re.T, tie(ev.MessageID), text}
			cur, ok := win[k]
			if !ok || c.t > cur.t || (c.t == cur.t && (c.tie > cur.tie || (c.tie == cur.tie && c.text > cur.text))) {
				win[k] = c
			}
		}
	}
	out := map[string]string{}
	for k, c := range win {
		if c.text != "" {
			out[k] = c.text
		}
	}
	return out
}
