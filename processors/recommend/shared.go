package recommend

import (
	"cmp"
	"context"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/ml/assoc"
)

// Shared is what every task of one instance reads and none writes: the
// global item associations and the customer base the score models are
// fitted on, both built from the orders changelog by the instance's
// builder (a replicated read-only state, like Kafka Streams' GlobalKTable).
// Queries run concurrently under a read lock; the builder applies orders
// in short write-locked chunks.
type Shared struct {
	cfg Config
	log *zap.Logger
	m   *metrics

	mu     sync.RWMutex
	model  *assoc.Model
	orders int64 // orders applied
	clock  int64 // the latest order's event time applied (Unix ms)
	base   *sample

	gen       atomic.Pointer[Generation]
	fitOrders int64 // orders applied at the last refit
	fitAt     time.Time
}

// Generation is one refit of an instance: the orders the associations had
// learned then, and the score models fitted (the previous ones when this
// fit failed, nil before any succeeded). Every task refreshes all its lists
// and rescores all its buyers once per generation, so that lists computed
// while the associations knew little, and scores whose customers have aged,
// catch up without waiting for the profile's next event.
type Generation struct {
	// ID names the generation (orders learned, score models).
	ID     string
	Orders int64
	Scores *ScoreModel
}

// NewShared returns an empty shared state.
func NewShared(cfg Config, m *metrics, log *zap.Logger) *Shared {
	return &Shared{cfg: cfg, log: log, m: m, model: assoc.New(cfg.Model), base: newSample(cfg.MaxFitProfiles)}
}

// applyChunk bounds the orders applied under one write lock, so a backlog
// never holds the tasks' queries for long.
const applyChunk = 64

// Apply adds orders from the changelog to the associations and the
// customer base.
func (s *Shared) Apply(recs []orderRecord) {
	for len(recs) > 0 {
		n := min(len(recs), applyChunk)
		s.mu.Lock()
		for i := range recs[:n] {
			s.apply(&recs[i])
		}
		st := s.model.Stats()
		s.mu.Unlock()
		recs = recs[n:]
		s.m.modelOrders.Set(float64(st.Baskets))
		s.m.modelItems.Set(float64(st.Items))
		s.m.modelPairs.Set(float64(st.Pairs))
	}
}

func (s *Shared) apply(o *orderRecord) {
	// What Recommender.AddBasket does, from the journaled per-profile state
	// the changelog carries: the transition from the profile's previous
	// basket, the basket's pairs, and the session's views → bought.
	if len(o.Prev) > 0 {
		s.model.AddTransition(o.Prev, o.Items)
	}
	s.model.AddBasket(o.Items)
	if len(o.Viewed) > 0 {
		s.model.AddSession(o.Viewed, o.Items)
	}
	s.base.update(o.Profile, o.Summary)
	s.clock = max(s.clock, o.Time)
	s.orders++
}

// Recommend answers one query with the current associations, and names
// the model that answered.
func (s *Shared) Recommend(snap assoc.Snapshot, o assoc.Options) ([]assoc.Rec, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.model.Recommend(snap, o), modelName(s.orders)
}

func modelName(orders int64) string { return "assoc@" + strconv.FormatInt(orders, 10) }

// Scores returns the latest score models, nil before the first fit.
func (s *Shared) Scores() *ScoreModel {
	if g := s.gen.Load(); g != nil {
		return g.Scores
	}
	return nil
}

// Generation returns the latest refit, nil before the first.
func (s *Shared) Generation() *Generation { return s.gen.Load() }

// Stats returns the associations' size and the orders applied.
func (s *Shared) Stats() (assoc.Stats, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.model.Stats(), s.orders
}

// Refit starts a new generation when orders arrived since the last one:
// it fits the score models again (outside the lock, on a copy of the
// sample) and keeps the previous ones when the fit fails.
func (s *Shared) Refit() (*Generation, error) {
	s.mu.RLock()
	orders, clock := s.orders, s.clock
	if orders == s.fitOrders {
		s.mu.RUnlock()
		return nil, nil
	}
	base := s.base.summaries()
	s.mu.RUnlock()
	s.fitOrders, s.fitAt = orders, time.Now()
	prev := s.Scores()
	start := time.Now()
	sm, err := fitScores(base, clock, prev, s.cfg)
	s.m.fitDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.fits.WithLabelValues("skipped").Inc()
		sm = prev
	} else {
		s.m.fits.WithLabelValues("fitted").Inc()
		s.m.fitCustomers.Set(float64(sm.Customers))
	}
	g := &Generation{ID: "orders=" + strconv.FormatInt(orders, 10), Orders: orders, Scores: sm}
	if sm != nil {
		g.ID += " " + sm.ID
	}
	s.gen.Store(g)
	return g, err
}

// refitLoop starts a generation every RefitInterval while orders keep
// coming, and every few seconds until a first score fit succeeds (a new
// store has too few customers at first).
func (s *Shared) refitLoop(ctx context.Context) {
	t := time.NewTicker(min(s.cfg.RefitInterval, 5*time.Second))
	defer t.Stop()
	for {
		if s.Scores() == nil || time.Since(s.fitAt) >= s.cfg.RefitInterval {
			g, err := s.Refit()
			switch {
			case err != nil:
				s.log.Debug("score models not fitted", zap.Error(err))
			case g != nil && g.Scores != nil:
				sm := g.Scores
				f := []zap.Field{zap.String("generation", g.ID), zap.Int("customers", sm.Customers)}
				if sm.BGNBD != nil {
					f = append(f, zap.Any("bgnbd", *sm.BGNBD))
				}
				if sm.Gamma != nil {
					f = append(f, zap.Any("gamma_gamma", *sm.Gamma))
				}
				s.log.Info("score models fitted", f...)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample is a bounded, deterministic sample of the customer base: the
// profiles whose hash falls under a threshold that halves whenever the
// sample outgrows its cap (adaptive distinct sampling). Which profiles it
// holds depends only on the set of profiles seen, not on their order, so
// every instance that read the same changelog fits on the same customers.
type sample struct {
	max   int
	level uint // keep hashes whose top level bits are zero
	m     map[string]sampled
}

type sampled struct {
	hash uint64
	s    summary
}

func newSample(maxProfiles int) *sample {
	return &sample{max: maxProfiles, m: map[string]sampled{}}
}

func (b *sample) keeps(h uint64) bool { return b.level == 0 || h>>(64-b.level) == 0 }

// update records a profile's latest summary.
func (b *sample) update(profile string, s summary) {
	h := hashProfile(profile)
	if !b.keeps(h) {
		return
	}
	b.m[profile] = sampled{h, s}
	for len(b.m) > b.max && b.level < 63 {
		b.level++
		for p, e := range b.m {
			if !b.keeps(e.hash) {
				delete(b.m, p)
			}
		}
	}
}

// summaries returns the sample in hash order, so that a fit's input, and
// its floating-point sums, do not depend on map order.
func (b *sample) summaries() []summary {
	es := slices.SortedFunc(maps.Values(b.m), func(x, y sampled) int { return cmp.Compare(x.hash, y.hash) })
	out := make([]summary, len(es))
	for i, e := range es {
		out[i] = e.s
	}
	return out
}

// hashProfile is FNV-1a with a SplitMix64 finaliser: FNV alone leaves the
// top bits of similar short ids correlated.
func hashProfile(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	z := h.Sum64()
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	return z ^ z>>31
}
