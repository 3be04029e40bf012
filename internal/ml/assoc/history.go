package assoc

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// HistoryConfig sizes a History.
type HistoryConfig struct {
	// HalfLife is the age at which a purchase counts half in an item's
	// decayed weight. Zero disables decay: the weight is the plain number of
	// baskets containing the item.
	HalfLife time.Duration
	// MaxItems caps the items remembered per profile; the one with the
	// lowest decayed weight that is not in the newest basket is evicted.
	// Default 200.
	MaxItems int
}

// DefaultMaxItems is the default HistoryConfig.MaxItems.
const DefaultMaxItems = 200

// DefaultHistoryConfig is the history DefaultOptions were tuned with: no
// decay (on the UCI data a plain count beat half-lives of 90 and 365 days).
func DefaultHistoryConfig() HistoryConfig {
	return HistoryConfig{MaxItems: DefaultMaxItems}
}

// History keeps each profile's purchases: per item the number of baskets,
// the last purchase time and a decayed count. Memory is at most MaxItems
// entries per profile.
type History struct {
	cfg      HistoryConfig
	profiles map[string]*profileHistory
}

type profileHistory struct {
	items   map[string]*histEntry
	baskets int
	bweight float64 // decayed number of baskets as of bat
	bat     int64
	last    []string // the latest basket by arrival, for transitions
}

type histEntry struct {
	count  int
	weight float64 // decayed count as of time at
	at     int64   // unix nanoseconds
	last   int64
}

// NewHistory returns an empty History.
func NewHistory(cfg HistoryConfig) *History {
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = DefaultMaxItems
	}
	return &History{cfg: cfg, profiles: map[string]*profileHistory{}}
}

// Config returns the configuration in use, defaults applied.
func (h *History) Config() HistoryConfig { return h.cfg }

// decay returns the factor by which a weight shrinks over d nanoseconds.
func (h *History) decay(d int64) float64 {
	if h.cfg.HalfLife <= 0 {
		return 1
	}
	return math.Exp2(-float64(d) / float64(h.cfg.HalfLife))
}

// AddBasket records that profile bought items at t. Each distinct item
// counts once per basket; a basket older than the profile's latest one (a
// late event) still counts with its own age.
func (h *History) AddBasket(profile string, items []string, t time.Time) {
	if len(items) == 0 {
		return
	}
	p := h.profiles[profile]
	if p == nil {
		p = &profileHistory{items: map[string]*histEntry{}}
		h.profiles[profile] = p
	}
	now := t.UnixNano()
	if p.baskets == 0 || now >= p.bat {
		p.bweight = p.bweight*h.decay(now-p.bat) + 1
		p.bat = now
	} else {
		p.bweight += h.decay(p.bat - now)
	}
	p.baskets++
	seen := make(map[string]bool, len(items))
	p.last = make([]string, 0, min(len(items), h.cfg.MaxItems))
	for _, it := range items {
		if it == "" || seen[it] {
			continue
		}
		seen[it] = true
		if len(p.last) < h.cfg.MaxItems {
			p.last = append(p.last, it)
		}
		e := p.items[it]
		if e == nil {
			p.items[it] = &histEntry{count: 1, weight: 1, at: now, last: now}
			continue
		}
		e.count++
		if now >= e.at {
			e.weight = e.weight*h.decay(now-e.at) + 1
			e.at = now
		} else {
			e.weight += h.decay(e.at - now)
		}
		e.last = max(e.last, now)
	}
	for len(p.items) > h.cfg.MaxItems {
		h.evict(p, now, seen)
	}
}

// evict drops the item with the lowest decayed weight at now (ties: older
// last purchase, then name), sparing the items of the basket just added
// (keep) while others remain: without that, a profile at the cap could
// never learn a new item once its old ones were bought twice.
func (h *History) evict(p *profileHistory, now int64, keep map[string]bool) {
	var (
		worst string
		ww    float64
		wl    int64
		found bool
	)
	spare := len(keep) < len(p.items)
	for name, e := range p.items {
		if spare && keep[name] {
			continue
		}
		w := e.weight * h.decay(now-e.at)
		if !found || w < ww || w == ww && (e.last < wl || e.last == wl && name < worst) {
			worst, ww, wl, found = name, w, e.last, true
		}
	}
	delete(p.items, worst)
}

// HistoryItem is one remembered purchase of a profile.
type HistoryItem struct {
	Item   string
	Count  int       // baskets containing the item
	Weight float64   // decayed count at the query time
	Last   time.Time // latest purchase
}

// Snapshot is a profile's history as of one time: what Model.Candidates
// scores.
type Snapshot struct {
	// Items are the remembered items, highest weight first (ties: more
	// recent, then name).
	Items []HistoryItem
	// Baskets is the number of baskets recorded; BasketWeight their decayed
	// number at the query time, so Weight / BasketWeight is the decayed
	// share of the profile's baskets that contain an item.
	Baskets      int
	BasketWeight float64
	// LastBasket is the latest basket recorded (by arrival).
	LastBasket []string
}

// Snapshot returns profile's history with weights as of now (empty for an
// unknown profile).
func (h *History) Snapshot(profile string, now time.Time) Snapshot {
	p := h.profiles[profile]
	if p == nil {
		return Snapshot{}
	}
	t := now.UnixNano()
	out := make([]HistoryItem, 0, len(p.items))
	for name, e := range p.items {
		out = append(out, HistoryItem{Item: name, Count: e.count, Weight: e.weight * h.decay(t-e.at), Last: time.Unix(0, e.last).UTC()})
	}
	slices.SortFunc(out, func(a, b HistoryItem) int {
		return cmp.Or(cmp.Compare(b.Weight, a.Weight), b.Last.Compare(a.Last), cmp.Compare(a.Item, b.Item))
	})
	return Snapshot{Items: out, Baskets: p.baskets, BasketWeight: p.bweight * h.decay(t-p.bat), LastBasket: slices.Clone(p.last)}
}

// LastBasket returns the latest basket recorded for profile (by arrival), or
// nil.
func (h *History) LastBasket(profile string) []string {
	if p := h.profiles[profile]; p != nil {
		return p.last
	}
	return nil
}

// Baskets returns the number of baskets recorded for profile.
func (h *History) Baskets(profile string) int {
	if p := h.profiles[profile]; p != nil {
		return p.baskets
	}
	return 0
}

// Profiles returns the number of profiles with a history.
func (h *History) Profiles() int { return len(h.profiles) }

// ProfileState is one profile's history in a form that can be stored and
// loaded again exactly (the recommend processor keeps it in Redis between
// events): Import(Export(p)) gives a profile that answers every query and
// takes every later basket exactly as the original would.
type ProfileState struct {
	Items []ItemState `json:"i"`
	// Baskets is the number of baskets; BasketWeight their decayed number
	// as of BasketAt (Unix ns).
	Baskets      int     `json:"b"`
	BasketWeight float64 `json:"w"`
	BasketAt     int64   `json:"a"`
	// Last is the latest basket by arrival.
	Last []string `json:"l,omitempty"`
}

// ItemState is one remembered item of a ProfileState.
type ItemState struct {
	Item  string `json:"n"`
	Count int    `json:"c"`
	// Weight is the decayed count as of At; Last the latest purchase (both
	// Unix ns).
	Weight float64 `json:"w"`
	At     int64   `json:"a"`
	Last   int64   `json:"t"`
}

// Export returns profile's history, items sorted by name so equal
// histories export equally; ok is false for an unknown profile.
func (h *History) Export(profile string) (s ProfileState, ok bool) {
	p := h.profiles[profile]
	if p == nil {
		return ProfileState{}, false
	}
	s = ProfileState{Items: make([]ItemState, 0, len(p.items)), Baskets: p.baskets, BasketWeight: p.bweight, BasketAt: p.bat,
		Last: slices.Clone(p.last)}
	for name, e := range p.items {
		s.Items = append(s.Items, ItemState{Item: name, Count: e.count, Weight: e.weight, At: e.at, Last: e.last})
	}
	slices.SortFunc(s.Items, func(a, b ItemState) int { return cmp.Compare(a.Item, b.Item) })
	return s, true
}

// Import replaces profile's history with s (from Export). Items beyond
// MaxItems are not evicted until the next basket.
func (h *History) Import(profile string, s ProfileState) {
	p := &profileHistory{items: make(map[string]*histEntry, len(s.Items)), baskets: s.Baskets, bweight: s.BasketWeight,
		bat: s.BasketAt, last: slices.Clone(s.Last)}
	for _, it := range s.Items {
		p.items[it.Item] = &histEntry{count: it.Count, weight: it.Weight, at: it.At, last: it.Last}
	}
	h.profiles[profile] = p
}

// Forget drops profile's history from memory.
func (h *History) Forget(profile string) { delete(h.profiles, profile) }
