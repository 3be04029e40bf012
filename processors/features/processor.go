package features

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/keyspace"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/schemas"
)

//go:embed features.lua
var stepSrc string

// Config names the processor's topics and sizes its caches.
type Config struct {
	ResolvedTopic, MergesTopic, FoldTopic, ChangesTopic, DLQTopic string
	// Partitions of the resolved topic (and of the fold topic, which must
	// have as many).
	Partitions int
	// Prefix starts every Redis key.
	Prefix string
	// CacheProfiles bounds the decoded profiles a partition keeps in
	// memory between steps (default 20,000); Redis holds them all.
	CacheProfiles int
	// StepRecords bounds the records of one journaled step (default 1000).
	StepRecords int
	// Now is the clock events are evaluated at (default time.Now; tests
	// simulate time with it, together with the runner's).
	Now func() time.Time
}

// Processor is the features stage. It implements processing.Processor:
// resolved events and fold records go to the task of their partition,
// which owns the profiles of that partition; merges go to a task that
// forwards each to the loser's partition (see doc.go).
type Processor struct {
	cfg     Config
	engine  *Engine
	layout  *keyspace.Layout
	serde   *schemas.Serde
	rdb     redis.UniversalClient
	journal *journal.Redis
	step    *redis.Script
	log     *zap.Logger
	m       *metrics
	now     func() time.Time

	mu     sync.Mutex
	stores map[int32]*partStore
}

type metrics struct {
	events    prometheus.Counter
	late      prometheus.Counter
	changes   *prometheus.CounterVec
	forwarded *prometheus.CounterVec
	folds     prometheus.Counter
	cache     *prometheus.CounterVec
	stateSize prometheus.Histogram
	dropped   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, pm *processing.Metrics) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "features", Name: "events_total",
			Help: "Events applied to profiles."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "features", Name: "late_events_total",
			Help: "Events too old for at least one of their windows (counted in lifetime features only)."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "features", Name: "changes_total",
			Help: "Profile changes emitted, by cause."}, []string{"cause"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "features", Name: "forwarded_total",
			Help: "Fold records sent on (merge: to the loser's task; state: to the survivor's; event: an event of a merged-away profile)."}, []string{"kind"}),
		folds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "features", Name: "folds_total",
			Help: "Merged-away profiles folded into their survivor."}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "features", Name: "cache_total",
			Help: "Profile lookups by where they were found: hit (memory), miss (Redis)."}, []string{"result"}),
		stateSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "cdp", Subsystem: "features", Name: "state_bytes",
			Help: "Size of a profile's stored state when written.", Buckets: prometheus.ExponentialBuckets(32, 2, 10)}),
		dropped: pm.Dropped,
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.events, m.late, m.changes, m.forwarded, m.folds, m.cache, m.stateSize} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// NewProcessor wires the stage. The features are set's; serde decodes
// resolved events and encodes changes; rdb is the feature store.
func NewProcessor(cfg Config, set *definition.Set, serde *schemas.Serde, rdb redis.UniversalClient, pm *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, error) {
	for name, v := range map[string]string{"resolved": cfg.ResolvedTopic, "merges": cfg.MergesTopic, "fold": cfg.FoldTopic,
		"changes": cfg.ChangesTopic, "dead-letter": cfg.DLQTopic} {
		if v == "" {
			return nil, fmt.Errorf("features: the %s topic is required", name)
		}
	}
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("features: the resolved topic's partition count is required")
	}
	if cfg.CacheProfiles <= 0 {
		cfg.CacheProfiles = 20_000
	}
	if cfg.StepRecords <= 0 {
		cfg.StepRecords = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(reg, pm)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	layout := keyspace.New("features", cfg.Prefix, cfg.Partitions)
	p := &Processor{
		cfg: cfg, engine: NewEngine(set), layout: layout, serde: serde, rdb: rdb, log: log, m: m, now: cfg.Now,
		step: redis.NewScript(journal.Script(stepSrc)), stores: map[int32]*partStore{},
	}
	p.journal = journal.New(rdb, cfg.Prefix, "features", journal.WithTag(func(tp processing.TopicPartition) string {
		if tp.Topic == cfg.MergesTopic {
			return "features:merges:" + strconv.Itoa(int(tp.Partition))
		}
		return layout.Tag(tp.Partition)
	}))
	return p, nil
}

// Journal is the journal the runner needs in its Config.
func (p *Processor) Journal() *journal.Redis { return p.journal }

// Engine is the processor's feature engine.
func (p *Processor) Engine() *Engine { return p.engine }

// KafkaOpts are the client options the processor needs: the range
// balancer, which gives partition k of the resolved and fold topics (equal
// partition counts) to the same member, so that one task pair owns
// partition k's profiles.
func (p *Processor) KafkaOpts() []kgo.Opt {
	return []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}
}

// Check reports whether Redis answers.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// partStore is what the two tasks of one partition number (resolved and
// fold) share in this process: the profiles they own, decoded, and a lock
// that serializes their steps. The cache is a copy of what Redis holds: a
// step computes new states aside and installs them only after its script
// succeeded, and any failed script empties the cache (a script that timed
// out may still have run).
type partStore struct {
	p     int32
	key   string
	mu    sync.Mutex
	open  [2]int // open tasks by kind
	cache *lru.LRU[string, *State]
}

const (
	kindResolved = 0
	kindFold     = 1
)

func (p *Processor) store(part int32) *partStore {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.stores[part]
	if ps == nil {
		c, _ := lru.NewLRU[string, *State](p.cfg.CacheProfiles, nil)
		ps = &partStore{p: part, key: p.layout.Key(part, "s"), cache: c}
		p.stores[part] = ps
	}
	return ps
}

// NewTask implements processing.Processor.
func (p *Processor) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	switch tp.Topic {
	case p.cfg.MergesTopic:
		return &mergeTask{p: p, tp: tp}, nil
	case p.cfg.ResolvedTopic, p.cfg.FoldTopic:
		if int(tp.Partition) >= p.cfg.Partitions {
			return nil, fmt.Errorf("features: %s has more partitions than the %d the topology declares for %s: update the topology (and rebuild the features store)", tp, p.cfg.Partitions, p.cfg.ResolvedTopic)
		}
		kind := kindResolved
		if tp.Topic == p.cfg.FoldTopic {
			kind = kindFold
		}
		return &stateTask{p: p, tp: tp, kind: kind, ps: p.store(tp.Partition)}, nil
	}
	return nil, fmt.Errorf("features: no task for topic %s", tp.Topic)
}

// mergeTask forwards each merge of the merges topic to the task of the
// merged-away profile's partition, through the fold topic.
type mergeTask struct {
	p  *Processor
	tp processing.TopicPartition
}

func (t *mergeTask) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *mergeTask) Close(processing.CloseReason)                        {}

func (t *mergeTask) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	p := t.p
	for _, rec := range recs {
		native, err := p.serde.DecodeNative(ctx, rec.Value, schemas.IdentityMergeSchema)
		if err != nil {
			if schemas.IsTransient(err) {
				return processing.Transient(fmt.Errorf("decoding merge %s@%d: %w", t.tp, rec.Offset, err))
			}
			tc.Emit(p.deadLetter(rec, dlq.FailureOf(dlq.StageDecode, err)))
			continue
		}
		m, _ := native.(map[string]any)
		from, _ := m["from_profile"].(string)
		into, _ := m["into_profile"].(string)
		id, _ := m["merge_id"].(string)
		if from == "" || into == "" || from == into {
			tc.Emit(p.deadLetter(rec, dlq.Failure{Code: "invalid_merge", Stage: "features",
				Reason: fmt.Sprintf("merge %q from %q into %q", id, from, into)}))
			continue
		}
		f := foldRecord{kind: foldMerge, from: from, into: into, mergeID: id, time: rec.Timestamp.UnixMilli()}
		tc.Emit(&kgo.Record{Topic: p.cfg.FoldTopic, Key: []byte(from), Value: f.append(nil), Timestamp: rec.Timestamp})
		p.m.forwarded.WithLabelValues("merge").Inc()
	}
	return nil
}

func (p *Processor) deadLetter(rec *kgo.Record, f dlq.Failure) *kgo.Record {
	p.m.dropped.WithLabelValues("features", "dlq:"+f.Code).Inc()
	return dlq.New(rec, p.cfg.DLQTopic, f, p.now())
}

// stateTask owns the profiles of one partition, for one of the two topics
// that feed them.
type stateTask struct {
	p    *Processor
	tp   processing.TopicPartition
	kind int
	ps   *partStore
}

func (t *stateTask) Open(context.Context, *processing.TaskContext) error {
	t.ps.mu.Lock()
	t.ps.open[t.kind]++
	t.ps.mu.Unlock()
	return nil
}

func (t *stateTask) Close(reason processing.CloseReason) {
	ps := t.ps
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.open[t.kind]--
	if reason != processing.Aborted {
		// The partition may move to another instance, which may write its
		// profiles; what comes back later is read from Redis again.
		ps.cache.Purge()
	}
}

// item is one input record, decoded.
type item struct {
	rec     *kgo.Record
	profile string // whose state the record is for
	fold    foldRecord
	event   *schemas.ResolvedEvent
	fail    *dlq.Failure // dead-letter it
}

func (t *stateTask) decode(ctx context.Context, rec *kgo.Record) (item, error) {
	p := t.p
	it := item{rec: rec}
	var resolved []byte
	if t.kind == kindFold {
		f, err := parseFold(rec.Value)
		if err != nil {
			it.fail = &dlq.Failure{Code: "bad_fold_record", Stage: "features", Reason: err.Error()}
			return it, nil
		}
		it.fold = f
		it.profile = string(rec.Key)
		if f.kind != foldEvent {
			return it, nil
		}
		resolved = f.blob
	} else {
		resolved = rec.Value
	}
	it.event = &schemas.ResolvedEvent{}
	if err := p.serde.DecodeResolved(ctx, resolved, it.event); err != nil {
		if schemas.IsTransient(err) {
			return it, processing.Transient(fmt.Errorf("decoding %s@%d: %w", t.tp, rec.Offset, err))
		}
		f := dlq.FailureOf(dlq.StageDecode, err)
		it.fail, it.event = &f, nil
		return it, nil
	}
	if t.kind == kindResolved {
		it.profile = it.event.ProfileID
		if it.profile == "" {
			it.fail = &dlq.Failure{Code: "no_profile", Stage: "features", Reason: "resolved event without a profile_id"}
		}
	}
	return it, nil
}

// Process applies the records to the partition's profiles, one journaled
// step per StepRecords records.
func (t *stateTask) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	items := make([]item, len(recs))
	for i, rec := range recs {
		it, err := t.decode(ctx, rec)
		if err != nil {
			return err
		}
		items[i] = it
	}
	ps := t.ps
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := t.siblingOpen(); err != nil {
		return err
	}
	for len(items) > 0 {
		n := min(len(items), t.p.cfg.StepRecords)
		if err := t.step(ctx, tc, items[:n]); err != nil {
			ps.cache.Purge()
			return err
		}
		items = items[n:]
	}
	return nil
}

// step is one journaled step over items.
func (t *stateTask) step(ctx context.Context, tc *processing.TaskContext, items []item) error {
	work := map[string]*State{}
	ids := make([]string, 0, len(items))
	for i := range items {
		ids = append(ids, items[i].profile)
	}
	if err := t.load(ctx, ids, work); err != nil {
		return err
	}
	receipts := make([]any, 0, 16)
	var outs []*kgo.Record
	for i := range items {
		it := &items[i]
		outs = outs[:0]
		var err error
		outs, err = t.handle(ctx, it, work, outs)
		if err != nil {
			return fmt.Errorf("%s@%d: %w", t.tp, it.rec.Offset, err)
		}
		if len(outs) > 0 {
			tc.Emit(outs...)
			receipts = append(receipts, it.rec.Offset, journal.EncodeRecords(outs))
		}
	}
	st := tc.BeginStep(items[0].rec.Offset, items[len(items)-1].rec.Offset)
	return t.write(ctx, st, nil, work, receipts)
}

// write runs one step's script: fired timers removed, the states in work
// stored, each one's next expiry timer set, the receipts journaled; then
// the states are installed in the cache.
func (t *stateTask) write(ctx context.Context, st *processing.Step, fired []processing.Timer, work map[string]*State, receipts []any) error {
	p, ps := t.p, t.ps
	args := journal.StepArgs(st)
	args = append(args, len(fired))
	for _, f := range fired {
		args = append(args, f.Key)
	}
	args = append(args, len(work))
	timers := make([]any, 0, 2*len(work))
	var buf []byte
	for id, s := range work {
		next := int64(0)
		if s.MergedInto == "" {
			p.engine.PruneAll(s)
			next = p.engine.NextChange(s, s.Clock)
		}
		timers = append(timers, id, next)
		if next > 0 {
			st.SetTimers = append(st.SetTimers, processing.Timer{Key: id, At: time.UnixMilli(next), Kind: processing.WallClock})
		}
		start := len(buf)
		buf = p.engine.Encode(buf, s)
		p.m.stateSize.Observe(float64(len(buf) - start))
		args = append(args, id, buf[start:])
	}
	args = append(args, len(work))
	args = append(args, timers...)
	args = append(args, len(receipts)/2)
	args = append(args, receipts...)
	keys := append(p.journal.Keys(t.tp), ps.key)
	if err := p.step.Run(ctx, p.rdb, keys, args...).Err(); err != nil {
		err = journal.Classify(err)
		if !errors.Is(err, processing.ErrFenced) && !errors.Is(err, processing.ErrDiverged) {
			err = processing.Transient(err)
		}
		return fmt.Errorf("writing step %d of %s: %w", st.Seq, t.tp, err)
	}
	for id, s := range work {
		ps.cache.Add(id, s)
	}
	return nil
}

// OnTimer implements processing.TimerHandler: a profile's windows moved
// without an event. Each due profile's Clock moves to now, every window
// boundary on the way where a value fell is a change (cause expiry) at its
// moment, and the next timer is set; all in one journaled step.
func (t *stateTask) OnTimer(ctx context.Context, tc *processing.TaskContext, due []processing.Timer) error {
	ps := t.ps
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := t.siblingOpen(); err != nil {
		return err
	}
	work := map[string]*State{}
	ids := make([]string, len(due))
	for i, d := range due {
		ids[i] = d.Key
	}
	if err := t.load(ctx, ids, work); err != nil {
		ps.cache.Purge()
		return err
	}
	var outs []*kgo.Record
	now := t.p.now().UnixMilli()
	for _, d := range due {
		s := work[d.Key]
		if s.MergedInto != "" || s.Clock == 0 || d.At.UnixMilli() <= s.Clock {
			// Merged away, gone, or already past this time: whatever moved
			// its Clock (an event, the other task's timer) set the timer
			// that counts. This one is only removed.
			delete(work, d.Key)
			continue
		}
		var err error
		// Every boundary up to now, each its own change, in one firing.
		if outs, err = t.expiries(ctx, outs, d.Key, s, max(d.At.UnixMilli(), now)); err != nil {
			ps.cache.Purge()
			return err
		}
	}
	st := tc.BeginTimerStep(due)
	st.Outputs = outs
	tc.Emit(outs...)
	if err := t.write(ctx, st, due, work, nil); err != nil {
		ps.cache.Purge()
		return err
	}
	return nil
}

func (t *stateTask) siblingOpen() error {
	ps := t.ps
	if ps.open[kindResolved] > 0 && ps.open[kindFold] > 0 {
		return nil
	}
	other := t.p.cfg.FoldTopic
	if t.kind == kindFold {
		other = t.p.cfg.ResolvedTopic
	}
	return processing.Transient(fmt.Errorf("waiting for partition %d of %s to be assigned to this instance too: "+
		"the features processor needs both topics' partition %d on one member (the range balancer does this when both topics have equal partition counts)",
		t.tp.Partition, other, t.tp.Partition))
}

// load puts the state of every profile in ids into work: a copy of the
// cached one, or one read from Redis, or a new one.
func (t *stateTask) load(ctx context.Context, ids []string, work map[string]*State) error {
	p, ps := t.p, t.ps
	var missing []string
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		if s, ok := ps.cache.Get(id); ok {
			work[id] = s.Clone()
			p.m.cache.WithLabelValues("hit").Inc()
			continue
		}
		missing = append(missing, id)
	}
	if len(missing) == 0 {
		return nil
	}
	p.m.cache.WithLabelValues("miss").Add(float64(len(missing)))
	vals, err := p.rdb.HMGet(ctx, ps.key, missing...).Result()
	if err != nil {
		return processing.Transient(fmt.Errorf("reading %d profiles of partition %d: %w", len(missing), t.tp.Partition, err))
	}
	for i, v := range vals {
		s, _ := v.(string)
		if s == "" {
			work[missing[i]] = &State{}
			continue
		}
		st, err := p.engine.Decode([]byte(s))
		if err != nil {
			return fmt.Errorf("profile %s in %s: %w", missing[i], ps.key, err)
		}
		work[missing[i]] = st
	}
	return nil
}

// handle applies one item and appends its outputs.
func (t *stateTask) handle(ctx context.Context, it *item, work map[string]*State, outs []*kgo.Record) ([]*kgo.Record, error) {
	p := t.p
	if it.fail != nil {
		return append(outs, p.deadLetter(it.rec, *it.fail)), nil
	}
	if got := p.layout.Partition(it.profile); got != t.tp.Partition {
		// A producer with another partitioner wrote the resolved topic:
		// this profile's state would be split over two partitions.
		return append(outs, p.deadLetter(it.rec, dlq.Failure{Code: "misrouted", Stage: "features",
			Reason: fmt.Sprintf("profile %s belongs to partition %d by murmur2, not %d: the resolved topic must be keyed by profile_id with Kafka's default partitioner", it.profile, got, t.tp.Partition)})), nil
	}
	st := work[it.profile]
	f := &it.fold
	if st.MergedInto != "" {
		// The profile was merged away: what comes for it goes on to its
		// survivor.
		if f.hops >= maxHops {
			return append(outs, p.deadLetter(it.rec, dlq.Failure{Code: "merge_loop", Stage: "features",
				Reason: fmt.Sprintf("forwarded %d times along merges; last profile %s -> %s", f.hops, it.profile, st.MergedInto)})), nil
		}
		fwd := *f
		fwd.hops++
		fwd.into = st.MergedInto
		switch {
		case t.kind == kindResolved:
			fwd = foldRecord{kind: foldEvent, hops: 1, from: it.profile, into: st.MergedInto, time: it.rec.Timestamp.UnixMilli(), blob: it.rec.Value}
		case f.kind == foldMerge:
			// The loser of this merge was itself merged away before: it has
			// no state left to send (it went to its own survivor), and its
			// events already go there.
			p.log.Warn("merge of a profile that was already merged away", zap.String("profile", it.profile),
				zap.String("merged_into", st.MergedInto), zap.String("now_into", f.into), zap.String("merge_id", f.mergeID))
			return outs, nil
		}
		p.m.forwarded.WithLabelValues(string([]byte{byte(fwd.kind)})).Inc()
		return append(outs, &kgo.Record{Topic: p.cfg.FoldTopic, Key: []byte(st.MergedInto), Value: fwd.append(nil), Timestamp: it.rec.Timestamp}), nil
	}
	now := p.now().UnixMilli()
	if t.kind == kindFold && f.kind == foldMerge {
		// This profile (L) merges into f.into (S): its state goes there,
		// a tombstone stays to send what still comes for L.
		blob := p.engine.Encode(nil, st)
		work[it.profile] = &State{MergedInto: f.into}
		if st.Version > 0 {
			// Its last change says where everything went.
			last := &State{Version: st.Version, Clock: max(st.Clock, now)}
			var err error
			outs, err = t.change(ctx, outs, it.profile, last, Change{Time: last.Clock}, schemas.CauseMerge, f.mergeID, "", f.into, it.rec.Timestamp)
			if err != nil {
				return nil, err
			}
		}
		s := foldRecord{kind: foldState, from: it.profile, into: f.into, mergeID: f.mergeID, time: f.time, blob: blob}
		p.m.forwarded.WithLabelValues("s").Inc()
		return append(outs, &kgo.Record{Topic: p.cfg.FoldTopic, Key: []byte(f.into), Value: s.append(nil), Timestamp: it.rec.Timestamp}), nil
	}
	if t.kind == kindFold && f.kind == foldState {
		src, err := p.engine.Decode(f.blob)
		if err != nil {
			return nil, fmt.Errorf("state of %s merged into %s: %w", f.from, it.profile, err)
		}
		if outs, err = t.expiries(ctx, outs, it.profile, st, max(st.Clock, src.Clock, now)); err != nil {
			return nil, err
		}
		ch := p.engine.Fold(st, src)
		p.m.folds.Inc()
		return t.change(ctx, outs, it.profile, st, ch, schemas.CauseMerge, f.mergeID, f.from, "", it.rec.Timestamp)
	}
	ev := it.event
	et := ev.Timestamp.UnixMilli()
	outs, err := t.expiries(ctx, outs, it.profile, st, max(st.Clock, et, now))
	if err != nil {
		return nil, err
	}
	ch, err := p.engine.Apply(st, &ev.Event, et, now)
	if err != nil {
		return nil, err
	}
	p.m.events.Inc()
	if ch.Late > 0 {
		p.m.late.Inc()
	}
	return t.change(ctx, outs, it.profile, st, ch, schemas.CauseEvent, ev.Event.MessageID, "", "", it.rec.Timestamp)
}

// expiries moves profile's Clock to at, appending a change (cause expiry)
// for each window boundary on the way where a value fell.
func (t *stateTask) expiries(ctx context.Context, outs []*kgo.Record, profile string, st *State, at int64) ([]*kgo.Record, error) {
	var err error
	for _, ch := range t.p.engine.Advance(st, at) {
		if outs, err = t.change(ctx, outs, profile, st, ch, schemas.CauseExpiry, "", "", "", time.UnixMilli(ch.Time)); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// change appends the change record of ch for profile, if anything changed
// (or it is a merged-away profile's last), and counts the profile's version
// up.
func (t *stateTask) change(ctx context.Context, outs []*kgo.Record, profile string, st *State, ch Change, cause schemas.ChangeCause, trigger, from, into string, ts time.Time) ([]*kgo.Record, error) {
	if ch.Empty() && into == "" {
		return outs, nil
	}
	p := t.p
	st.Version++
	c := schemas.ProfileChange{ProfileID: profile, Version: st.Version, Time: ch.Time, Cause: cause,
		TriggerMessageID: trigger, MergedFrom: from, MergedInto: into}
	if len(ch.Features) > 0 {
		c.Features = make(map[string]schemas.FeatureChange, len(ch.Features))
		for _, fc := range ch.Features {
			c.Features[p.engine.set.Features[fc.Index].Name] = schemas.FeatureChange{Old: featureValue(fc.Old), New: featureValue(fc.New)}
		}
	}
	if len(ch.Traits) > 0 {
		c.Traits = make(map[string]schemas.TraitChange, len(ch.Traits))
		for _, tc := range ch.Traits {
			c.Traits[tc.Name] = schemas.TraitChange{Old: tc.Old, New: tc.New}
		}
	}
	val, err := p.serde.AppendProfileChange(ctx, nil, p.cfg.ChangesTopic, &c)
	if err != nil {
		return nil, processing.Transient(fmt.Errorf("encoding the change of %s: %w", profile, err))
	}
	p.m.changes.WithLabelValues(cause.String()).Inc()
	return append(outs, &kgo.Record{Topic: p.cfg.ChangesTopic, Key: []byte(profile), Value: val, Timestamp: ts}), nil
}

func featureValue(v definition.Value) schemas.FeatureValue {
	switch v.Kind {
	case definition.Number:
		return schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: v.Num}
	case definition.String:
		return schemas.FeatureValue{Kind: schemas.FeatureString, Str: v.Str}
	}
	return schemas.FeatureValue{}
}

// Replay implements processing.Replayer: the receipt of a record is its
// outputs.
func (t *stateTask) Replay(_ context.Context, tc *processing.TaskContext, rec *kgo.Record, receipt []byte) error {
	outs, err := journal.DecodeRecords(receipt)
	if err != nil {
		return fmt.Errorf("receipt of %s@%d: %w", t.tp, rec.Offset, err)
	}
	tc.Emit(outs...)
	return nil
}
