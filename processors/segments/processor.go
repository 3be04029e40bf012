package segments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	"github.com/streamcdp/streamcdp/processors/features"
	fdef "github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
	"github.com/streamcdp/streamcdp/schemas"
)

// Config names the processor's topics and sizes its cache.
type Config struct {
	ChangesTopic, MembershipTopic, DLQTopic string
	// AudiencesTopic gets Segment-style track events when the rules ask
	// for them.
	AudiencesTopic string
	// SegmentTopics are the physical topics of segments that have one.
	SegmentTopics map[string]string
	// Partitions of the changes topic.
	Partitions int
	// Prefix starts every Redis key.
	Prefix string
	// CacheProfiles bounds the profiles a task keeps decoded between
	// steps (default 20,000).
	CacheProfiles int
	// Now is the clock of evaluated_at and of the backfill (default
	// time.Now).
	Now func() time.Time
}

// Processor is the segments stage: profile changes in, membership changes
// out. It implements processing.Processor (a task per partition of the
// changes topic, each the only writer of its profiles' memberships).
type Processor struct {
	cfg     Config
	rules   *rules.Set
	fset    *fdef.Set
	store   *features.Reader // the feature store, for bootstrap and backfill
	layout  *keyspace.Layout
	serde   *schemas.Serde
	rdb     redis.UniversalClient
	journal *journal.Redis
	log     *zap.Logger
	m       *metrics
	now     func() time.Time
	aggs    map[string]fdef.Agg
}

type metrics struct {
	changes   *prometheus.CounterVec
	members   *prometheus.CounterVec
	evalErrs  *prometheus.CounterVec
	held      prometheus.Counter
	bootstrap *prometheus.CounterVec
	backfill  prometheus.Counter
	dropped   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, pm *processing.Metrics) (*metrics, error) {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "segments", Name: "profile_changes_total",
			Help: "Profile changes by what was done with them: applied, skipped (already applied), held (came before the one preceding it)."}, []string{"result"}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "segments", Name: "membership_changes_total",
			Help: "Membership changes emitted, by segment and status."}, []string{"segment", "status"}),
		evalErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "segments", Name: "evaluation_errors_total",
			Help: "Conditions that failed at run time (counted as false), by segment."}, []string{"segment"}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "segments", Name: "held_changes_total",
			Help: "Changes held until the change before them came."}),
		bootstrap: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "segments", Name: "bootstraps_total",
			Help: "Profiles read again from the feature store, by reason."}, []string{"reason"}),
		backfill: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "segments", Name: "backfilled_profiles_total",
			Help: "Profiles evaluated by a backfill after the definitions changed."}),
		dropped: pm.Dropped,
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.changes, m.members, m.evalErrs, m.held, m.bootstrap, m.backfill} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// NewProcessor wires the stage: the compiled rules, the feature store they
// read when a profile must be evaluated from scratch, and Redis for the
// memberships.
func NewProcessor(cfg Config, set *rules.Set, store *features.Reader, serde *schemas.Serde, rdb redis.UniversalClient, pm *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, error) {
	if cfg.ChangesTopic == "" || cfg.MembershipTopic == "" || cfg.DLQTopic == "" {
		return nil, errors.New("segments: the changes, membership and dead-letter topics are required")
	}
	if set.AudienceEvents && cfg.AudiencesTopic == "" {
		return nil, errors.New("segments: audience events need the audiences topic")
	}
	if cfg.Partitions < 1 {
		return nil, errors.New("segments: the changes topic's partition count is required")
	}
	if cfg.CacheProfiles <= 0 {
		cfg.CacheProfiles = 20_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(reg, pm)
	if err != nil {
		return nil, err
	}
	fset := store.Engine().Set()
	p := &Processor{cfg: cfg, rules: set, fset: fset, store: store, layout: keyspace.New("segments", cfg.Prefix, cfg.Partitions),
		serde: serde, rdb: rdb, log: log, m: m, now: cfg.Now, aggs: map[string]fdef.Agg{}}
	for _, f := range fset.Features {
		p.aggs[f.Name] = f.Agg
	}
	p.journal = journal.New(rdb, cfg.Prefix, "segments", journal.WithTag(func(tp processing.TopicPartition) string {
		return p.layout.Tag(tp.Partition)
	}))
	return p, nil
}

// Journal is the journal the runner needs in its Config.
func (p *Processor) Journal() *journal.Redis { return p.journal }

// KafkaOpts partitions the membership records (keyed profile/segment) by
// their profile part, so a profile's changes are in order while a
// compacted topic keeps the latest per profile and segment.
func (p *Processor) KafkaOpts() []kgo.Opt {
	return []kgo.Opt{kgo.RecordPartitioner(profilePartitioner{kgo.StickyKeyPartitioner(nil)})}
}

// Check reports whether Redis answers.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// profilePartitioner hashes the part of a key before its last '/'.
type profilePartitioner struct{ kgo.Partitioner }

func (p profilePartitioner) ForTopic(t string) kgo.TopicPartitioner {
	return profileTopicPartitioner{p.Partitioner.ForTopic(t)}
}

type profileTopicPartitioner struct{ kgo.TopicPartitioner }

func (p profileTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if i := bytes.LastIndexByte(r.Key, '/'); i > 0 {
		return p.TopicPartitioner.Partition(&kgo.Record{Key: r.Key[:i]}, n)
	}
	return p.TopicPartitioner.Partition(r, n)
}

// Keys of a partition: its profiles' states, the segment sizes, and the
// backfill's progress.
const (
	stateSuffix = "s"
	sizesSuffix = "n"
	metaSuffix  = "b"
)

// NewTask implements processing.Processor.
func (p *Processor) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	if tp.Topic != p.cfg.ChangesTopic {
		return nil, fmt.Errorf("segments: no task for topic %s", tp.Topic)
	}
	if int(tp.Partition) >= p.cfg.Partitions {
		return nil, fmt.Errorf("segments: %s has more partitions than the %d the topology declares", tp, p.cfg.Partitions)
	}
	c, _ := lru.NewLRU[string, *State](p.cfg.CacheProfiles, nil)
	return &task{p: p, tp: tp, cache: c, stateKey: p.layout.Key(tp.Partition, stateSuffix),
		sizesKey: p.layout.Key(tp.Partition, sizesSuffix), metaKey: p.layout.Key(tp.Partition, metaSuffix)}, nil
}

// task owns the memberships of one partition of the changes topic. Its
// cache is trusted only for its own lifetime: after an abort the runner
// makes a new task, which reads Redis again.
type task struct {
	p                           *Processor
	tp                          processing.TopicPartition
	cache                       *lru.LRU[string, *State]
	stateKey, sizesKey, metaKey string
}

// step is the work of one Process or OnTimer call.
type step struct {
	work     map[string]*State
	sizes    map[string]int64
	affected []int // scratch
}

const backfillTimer = "backfill"

// Open schedules a backfill when the definitions changed since the
// partition's profiles were last all evaluated.
func (t *task) Open(ctx context.Context, tc *processing.TaskContext) error {
	defs, err := t.p.rdb.HGet(ctx, t.metaKey, "defs").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return processing.Transient(fmt.Errorf("reading the backfill state of %s: %w", t.tp, err))
	}
	target := strconv.FormatUint(uint64(t.p.rules.ID), 10)
	if defs == target {
		return nil
	}
	if defs == "" && tc.Committed() < 0 {
		// The partition's first start. While Kafka still holds the changes
		// topic from offset 0, reading it brings every profile in order,
		// change by change, and a backfill would only race it: it would
		// evaluate from the store profiles whose changes are on their way,
		// emitting their memberships with the store's values of the moment
		// and no trigger, an output that depends on timing.
		start, err := tc.LogStart(ctx)
		if err != nil {
			return processing.Transient(fmt.Errorf("first start of %s: %w", t.tp, err))
		}
		if start == 0 {
			// Written at once, outside the journal: the mark only says no
			// backfill is needed, which stays true if this task dies before
			// its first commit.
			now := strconv.FormatInt(t.p.now().UnixMilli(), 10)
			err := t.p.rdb.HSet(ctx, t.metaKey, "defs", target, "target", target, "scanned", 0, "started", now, "done", now).Err()
			if err != nil {
				return processing.Transient(fmt.Errorf("marking %s evaluated from its first change: %w", t.tp, err))
			}
			return nil
		}
	}
	tc.SetTimer(backfillTimer, t.p.now())
	return nil
}

func (t *task) Close(processing.CloseReason) {}

// Process applies the changes of the partition's profiles in version order
// and emits their membership changes.
func (t *task) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	p := t.p
	changes := make([]*schemas.ProfileChange, len(recs))
	var ids []string
	for i, rec := range recs {
		c, err := p.serde.DecodeProfileChange(ctx, rec.Value)
		if err != nil {
			if schemas.IsTransient(err) {
				return processing.Transient(fmt.Errorf("decoding %s@%d: %w", t.tp, rec.Offset, err))
			}
			tc.Emit(p.deadLetter(rec, dlq.FailureOf(dlq.StageDecode, err)))
			continue
		}
		changes[i] = &c
		ids = append(ids, c.ProfileID)
	}
	st := &step{work: map[string]*State{}, sizes: map[string]int64{}}
	if err := t.load(ctx, ids, st); err != nil {
		return err
	}
	for _, c := range changes {
		if c == nil {
			continue
		}
		if err := t.handle(ctx, tc, st, c); err != nil {
			return err
		}
	}
	t.write(tc, st)
	return nil
}

// load puts the state of every profile in ids into st.work.
func (t *task) load(ctx context.Context, ids []string, st *step) error {
	var missing []string
	for _, id := range ids {
		if _, ok := st.work[id]; ok {
			continue
		}
		if s, ok := t.cache.Get(id); ok {
			st.work[id] = s.clone()
			continue
		}
		st.work[id] = nil
		missing = append(missing, id)
	}
	if len(missing) == 0 {
		return nil
	}
	vals, err := t.p.rdb.HMGet(ctx, t.stateKey, missing...).Result()
	if err != nil {
		return processing.Transient(fmt.Errorf("reading %d profiles of %s: %w", len(missing), t.tp, err))
	}
	for i, v := range vals {
		s, _ := v.(string)
		if s == "" {
			st.work[missing[i]] = newState()
			continue
		}
		state, err := decodeState([]byte(s))
		if err != nil {
			return fmt.Errorf("profile %s in %s: %w", missing[i], t.stateKey, err)
		}
		st.work[missing[i]] = state
	}
	return nil
}

// write adds the step's writes (states, size counters) to the journaled
// step and keeps the states in the cache. If the step fails, the runner
// replaces this task, cache and all.
func (t *task) write(tc *processing.TaskContext, st *step) {
	if len(st.work) == 0 {
		return
	}
	args := make([]any, 0, 2*len(st.work))
	var buf []byte
	for id, s := range st.work {
		start := len(buf)
		buf = s.encode(buf)
		args = append(args, id, buf[start:])
		t.cache.Add(id, s)
	}
	tc.Write("HSET", t.stateKey, args...)
	for _, seg := range sortedKeys(st.sizes) {
		if d := st.sizes[seg]; d != 0 {
			tc.Write("HINCRBY", t.sizesKey, seg, d)
		}
	}
}

// handle applies one change to its profile.
func (t *task) handle(ctx context.Context, tc *processing.TaskContext, st *step, c *schemas.ProfileChange) error {
	p := t.p
	s := st.work[c.ProfileID]
	if s.MergedInto != "" {
		p.m.changes.WithLabelValues("skipped").Inc()
		return nil
	}
	switch {
	case s.FVersion > 0 && s.Defs != p.rules.ID:
		// Evaluated with other definitions: start again from the store.
		if err := t.bootstrap(ctx, tc, st, c.ProfileID, s, "definition changed"); err != nil {
			return err
		}
	case s.FVersion == 0 && c.Version > 1:
		// The profile's earlier changes are not here (the processor started
		// after them, or this one came before its predecessor).
		if err := t.bootstrap(ctx, tc, st, c.ProfileID, s, "resync"); err != nil {
			return err
		}
	}
	if s.MergedInto != "" {
		return nil
	}
	switch {
	case c.Version <= s.FVersion:
		p.m.changes.WithLabelValues("skipped").Inc()
		return nil
	case c.Version > s.FVersion+1:
		s.hold(*c)
		p.m.changes.WithLabelValues("held").Inc()
		p.m.held.Inc()
		return nil
	}
	if err := t.apply(ctx, tc, st, c.ProfileID, s, c); err != nil {
		return err
	}
	// Changes held for this one follow it now.
	for len(s.Held) > 0 && s.MergedInto == "" {
		h := s.Held[0]
		if h.Version > s.FVersion+1 {
			break
		}
		s.Held = s.Held[1:]
		if h.Version <= s.FVersion {
			continue
		}
		if err := t.apply(ctx, tc, st, c.ProfileID, s, &h); err != nil {
			return err
		}
	}
	return nil
}

// apply moves the mirror by one change and evaluates the segments.
func (t *task) apply(ctx context.Context, tc *processing.TaskContext, st *step, profile string, s *State, c *schemas.ProfileChange) error {
	p := t.p
	p.m.changes.WithLabelValues("applied").Inc()
	evaluated := s.Defs == p.rules.ID // else this is its first evaluation: all segments
	s.FVersion, s.Clock = c.Version, c.Time
	if c.MergedInto != "" {
		return t.mergedAway(ctx, tc, st, profile, s, c.MergedInto, c.TriggerMessageID)
	}
	// Only the segments that read something this change moved can flip.
	affected := st.affected[:0]
	for _, name := range p.rules.Features {
		if fc, ok := c.Features[name]; ok {
			s.Values[name] = fc.New
			affected = append(affected, p.rules.Readers(name)...)
		}
	}
	for _, name := range p.rules.Traits {
		if tr, ok := c.Traits[name]; ok {
			if tr.New == "" {
				delete(s.Traits, name)
			} else {
				s.Traits[name] = tr.New
			}
			affected = append(affected, p.rules.Readers("traits."+name)...)
		}
	}
	st.affected = affected
	s.Defs = p.rules.ID
	if !evaluated {
		affected = nil
	} else if len(affected) == 0 && !t.hasRemoved(s) {
		return nil
	}
	return t.evaluateSome(ctx, tc, st, profile, s, "condition", c.TriggerMessageID, c.Version, affected)
}

// hasRemoved reports whether s is in a segment that is no longer defined.
func (t *task) hasRemoved(s *State) bool {
	for name := range s.Members {
		if t.p.rules.Segment(name) == nil {
			return true
		}
	}
	return false
}

// mergedAway exits every segment of a profile merged into survivor (the
// survivor's own change re-evaluates it).
func (t *task) mergedAway(ctx context.Context, tc *processing.TaskContext, st *step, profile string, s *State, survivor, trigger string) error {
	for _, seg := range sortedKeys(s.Members) {
		if err := t.emit(ctx, tc, st, profile, s, seg, false, "merged into "+survivor, trigger, s.FVersion, nil); err != nil {
			return err
		}
	}
	*s = State{MergedInto: survivor, MVersion: s.MVersion, Members: map[string]Member{}}
	return nil
}

// bootstrap evaluates a profile from the feature store: its values at the
// store's Clock and version, from which its later changes continue.
func (t *task) bootstrap(ctx context.Context, tc *processing.TaskContext, st *step, profile string, s *State, reason string) error {
	p := t.p
	fs, err := p.store.Own(ctx, profile)
	if errors.Is(err, features.ErrNotFound) {
		return nil
	}
	if err != nil {
		return processing.Transient(fmt.Errorf("reading profile %s from the feature store: %w", profile, err))
	}
	p.m.bootstrap.WithLabelValues(reason).Inc()
	if fs.MergedInto != "" {
		s.FVersion = fs.Version
		return t.mergedAway(ctx, tc, st, profile, s, fs.MergedInto, "")
	}
	view := p.store.View(profile, fs, time.UnixMilli(fs.Clock))
	if s.Values == nil {
		s.Values = map[string]schemas.FeatureValue{}
	}
	if s.Traits == nil {
		s.Traits = map[string]string{}
	}
	clear(s.Values)
	clear(s.Traits)
	for _, name := range p.rules.Features {
		s.Values[name] = featureValue(view.Features[name])
	}
	for _, name := range p.rules.Traits {
		if raw, ok := view.Traits[name]; ok {
			s.Traits[name] = string(raw)
		}
	}
	s.FVersion, s.Clock, s.Defs = fs.Version, fs.Clock, p.rules.ID
	for len(s.Held) > 0 && s.Held[0].Version <= s.FVersion {
		s.Held = s.Held[1:]
	}
	return t.evaluate(ctx, tc, st, profile, s, reason, "", s.FVersion)
}

func featureValue(v any) schemas.FeatureValue {
	switch x := v.(type) {
	case float64:
		return schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: x}
	case string:
		return schemas.FeatureValue{Kind: schemas.FeatureString, Str: x}
	}
	return schemas.FeatureValue{}
}

// env is what a condition sees of s.
func (p *Processor) env(s *State) map[string]any {
	env := make(map[string]any, len(p.rules.Features)+2)
	for _, name := range p.rules.Features {
		v := s.Values[name]
		fv := fdef.Value{}
		switch v.Kind {
		case schemas.FeatureNumber:
			fv = fdef.Num(v.Num)
		case schemas.FeatureString:
			fv = fdef.Str(v.Str)
		}
		env[name] = rules.Value(p.aggs[name], fv)
	}
	traits := make(map[string]any, len(s.Traits))
	for k, raw := range s.Traits {
		var x any
		if json.Unmarshal([]byte(raw), &x) != nil {
			x = raw
		}
		traits[k] = x
	}
	env["traits"] = traits
	params := p.rules.Params
	if params == nil {
		params = map[string]float64{}
	}
	env["params"] = params
	return env
}

// evaluate decides every segment for s and emits what flipped.
func (t *task) evaluate(ctx context.Context, tc *processing.TaskContext, st *step, profile string, s *State, reason, trigger string, changeVersion int64) error {
	return t.evaluateSome(ctx, tc, st, profile, s, reason, trigger, changeVersion, nil)
}

// evaluateSome decides the segments at the indexes only (nil: all) and
// emits what flipped; members of removed segments exit.
func (t *task) evaluateSome(ctx context.Context, tc *processing.TaskContext, st *step, profile string, s *State, reason, trigger string, changeVersion int64, only []int) error {
	p := t.p
	if s.Members == nil {
		s.Members = map[string]Member{}
	}
	env := p.env(s)
	for i, seg := range p.rules.Segments {
		if only != nil && !slices.Contains(only, i) {
			continue
		}
		in, err := seg.Eval(env)
		if err != nil {
			p.m.evalErrs.WithLabelValues(seg.Name).Inc()
		}
		m, was := s.Members[seg.Name]
		switch {
		case in && !was:
			if err := t.emit(ctx, tc, st, profile, s, seg.Name, true, reason, trigger, changeVersion, seg); err != nil {
				return err
			}
		case !in && was:
			if err := t.emit(ctx, tc, st, profile, s, seg.Name, false, reason, trigger, changeVersion, seg); err != nil {
				return err
			}
		case in && m.Def != seg.ID:
			s.Members[seg.Name] = Member{Since: m.Since, Def: seg.ID}
		}
	}
	for _, name := range sortedKeys(s.Members) {
		if p.rules.Segment(name) == nil {
			if err := t.emit(ctx, tc, st, profile, s, name, false, "segment removed", trigger, changeVersion, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// emit records one membership change and its records.
func (t *task) emit(ctx context.Context, tc *processing.TaskContext, st *step, profile string, s *State, segment string, entered bool, reason, trigger string, changeVersion int64, seg *rules.Segment) error {
	p := t.p
	s.MVersion++
	status := "exited"
	if entered {
		status = "entered"
		def := uint32(0)
		if seg != nil {
			def = seg.ID
		}
		s.Members[segment] = Member{Since: s.Clock, Def: def}
		st.sizes[segment]++
	} else {
		delete(s.Members, segment)
		st.sizes[segment]--
	}
	now := p.now()
	values := map[string]any{}
	activation := map[string]any{}
	if seg != nil {
		for _, f := range seg.Features {
			values[f] = unionValue(s.Values[f])
		}
		for _, tr := range seg.Traits {
			if raw, ok := s.Traits[tr]; ok {
				values["traits."+tr] = map[string]any{"string": raw}
			} else {
				values["traits."+tr] = nil
			}
		}
		for _, a := range seg.Activation {
			if raw, ok := s.Traits[a]; ok {
				activation[a] = raw
			}
		}
	}
	opt := func(v string) any {
		if v == "" {
			return nil
		}
		return map[string]any{"string": v}
	}
	native := map[string]any{
		"profile_id": profile, "segment": segment, "status": status, "time": time.UnixMilli(s.Clock).UTC(),
		"reason": opt(reason), "trigger_message_id": opt(trigger), "version": s.MVersion,
		"evaluated_at": now.UTC(), "change_version": changeVersion, "values": values, "activation": activation,
	}
	val, err := p.serde.EncodeNative(ctx, p.cfg.MembershipTopic, schemas.SegmentMembershipSchema, native)
	if err != nil {
		return processing.Transient(fmt.Errorf("encoding a membership change of %s: %w", profile, err))
	}
	key := []byte(profile + "/" + segment)
	ts := time.UnixMilli(s.Clock)
	tc.Emit(&kgo.Record{Topic: p.cfg.MembershipTopic, Key: key, Value: val, Timestamp: ts})
	if topic := p.cfg.SegmentTopics[segment]; topic != "" {
		tv, err := p.serde.EncodeNative(ctx, topic, schemas.SegmentMembershipSchema, native)
		if err != nil {
			return processing.Transient(fmt.Errorf("encoding a membership change of %s: %w", profile, err))
		}
		tc.Emit(&kgo.Record{Topic: topic, Key: key, Value: tv, Timestamp: ts})
	}
	if p.rules.AudienceEvents {
		ev := audienceEvent(profile, segment, entered, s, activation, ts)
		av, err := p.serde.Encode(ctx, p.cfg.AudiencesTopic, ev)
		if err != nil {
			return processing.Transient(fmt.Errorf("encoding an audience event of %s: %w", profile, err))
		}
		tc.Emit(&kgo.Record{Topic: p.cfg.AudiencesTopic, Key: []byte(profile), Value: av, Timestamp: ts})
	}
	p.m.members.WithLabelValues(segment, status).Inc()
	return nil
}

func unionValue(v schemas.FeatureValue) any {
	switch v.Kind {
	case schemas.FeatureNumber:
		return map[string]any{"double": v.Num}
	case schemas.FeatureString:
		return map[string]any{"string": v.Str}
	}
	return nil
}

// audienceEvent is the change as Segment Engage sends it to event
// destinations: a track event "Audience Entered" or "Audience Exited" with
// properties {audience_key, <audience>: true|false} and context.personas.
func audienceEvent(profile, segment string, entered bool, s *State, activation map[string]any, at time.Time) schemas.Event {
	name := "Audience Exited"
	if entered {
		name = "Audience Entered"
	}
	ev := schemas.Event{
		MessageID: "aud-" + profile + "-" + segment + "-" + strconv.FormatInt(s.MVersion, 10),
		Type:      schemas.Track, Event: name, OriginalTimestamp: at.UTC(), ReceivedAt: at.UTC(),
		Properties: map[string]json.RawMessage{
			"audience_key": jsonText(segment),
			segment:        json.RawMessage(strconv.FormatBool(entered)),
			"profile_id":   jsonText(profile),
		},
	}
	if raw, ok := activation["user_id"].(string); ok {
		_ = json.Unmarshal([]byte(raw), &ev.UserID)
	}
	if ev.UserID == "" {
		ev.AnonymousID = profile
	}
	for k, v := range activation {
		if k == "user_id" {
			continue
		}
		if ev.Context.Traits == nil {
			ev.Context.Traits = map[string]json.RawMessage{}
		}
		ev.Context.Traits[k] = json.RawMessage(v.(string))
	}
	personas, _ := json.Marshal(map[string]string{"computation_class": "audience", "computation_key": segment,
		"computation_id": segment, "namespace": "streamcdp"})
	ev.Context.Extra = map[string]json.RawMessage{"personas": personas}
	return ev
}

func jsonText(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func (p *Processor) deadLetter(rec *kgo.Record, f dlq.Failure) *kgo.Record {
	p.m.dropped.WithLabelValues("segments", "dlq:"+f.Code).Inc()
	return dlq.New(rec, p.cfg.DLQTopic, f, p.now())
}
