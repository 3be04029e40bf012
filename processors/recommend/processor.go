package recommend

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/ml/assoc"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/schemas"
)

// Topics are the physical topics the processor reads and writes.
type Topics struct {
	// Input is the resolved events topic (keyed by profile id).
	Input string
	// Recommendations and Scores receive the changed lists and scores;
	// Orders is the changelog the global models are built from; DLQ
	// receives undecodable input.
	Recommendations, Scores, Orders, DLQ string
}

func (t Topics) validate() error {
	if t.Input == "" || t.Recommendations == "" || t.Scores == "" || t.Orders == "" || t.DLQ == "" {
		return fmt.Errorf("recommend: every topic is required, have %+v", t)
	}
	return nil
}

// Processor is the recommend stage: resolved events in; recommendations,
// scores and the orders changelog out; per-profile state in Redis through
// the runtime's journal. It implements processing.Processor and
// processing.Checker.
type Processor struct {
	cfg     Config
	topics  Topics
	serde   *schemas.Serde
	rdb     redis.UniversalClient
	journal *journal.Redis
	prefix  string
	shared  *Shared
	m       *metrics
	dropped *prometheus.CounterVec
	log     *zap.Logger
	now     func() time.Time
}

// NewProcessor wires the stage. prefix starts every Redis key ("cdp:");
// shared is the instance's global state, kept up to date by a builder.
func NewProcessor(cfg Config, topics Topics, serde *schemas.Serde, rdb redis.UniversalClient, prefix string, shared *Shared,
	pm *processing.Metrics, log *zap.Logger) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := topics.validate(); err != nil {
		return nil, err
	}
	return &Processor{
		cfg: cfg, topics: topics, serde: serde, rdb: rdb, prefix: prefix, shared: shared, m: shared.m, dropped: pm.Dropped,
		log: log, now: time.Now,
		journal: journal.New(rdb, prefix, processorName, journal.WithTag(func(tp processing.TopicPartition) string {
			return tag(tp.Topic, tp.Partition)
		})),
	}, nil
}

// Journal is where the tasks journal their steps; the runner needs it in
// its Config.
func (p *Processor) Journal() *journal.Redis { return p.journal }

// Shared returns the instance's global state.
func (p *Processor) Shared() *Shared { return p.shared }

// Check reports whether Redis answers.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// NewTask implements processing.Processor.
func (p *Processor) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	k := func(s string) string { return slotKey(p.prefix, tp.Topic, tp.Partition, s) }
	return &task{p: p, tp: tp, kHistory: k(keyHistory), kViews: k(keyViews), kList: k(keyList), kDigest: k(keyDigest),
		kScores: k(keyScores), kSweep: k(keySweep)}, nil
}

// timerTick is each task's periodic timer: rescoring after a refit.
const timerTick = "tick"

// task is the work of one input partition. It keeps nothing between
// calls but whether its tick timer is armed: every Process call reads the
// state of the profiles it touches from Redis, so a task reopened after an
// abort starts from exactly what the journal applied.
type task struct {
	p                                                 *Processor
	tp                                                processing.TopicPartition
	kHistory, kViews, kList, kDigest, kScores, kSweep string
	armed                                             bool
}

func (t *task) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *task) Close(processing.CloseReason)                        {}

// event is one relevant event of a batch.
type event struct {
	msg string
	at  int64 // event time, Unix ms
	act action
}

// profileBatch is one profile's events of a batch and its state.
type profileBatch struct {
	id     string
	events []event
	state  *profileState // nil: never ordered
	sess   session
	list   *listDigest // nil: no list yet
	scores *Scores     // read only for profiles that ordered
	orders bool        // the batch holds an order of the profile

	stateDirty, sessDirty bool
}

// Process applies one batch: per profile, its views and orders in offset
// order, then one refresh of its list (and of its scores after an order).
func (t *task) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	p := t.p
	if !t.armed {
		tc.SetTimer(timerTick, p.now().Add(p.cfg.TickInterval))
		t.armed = true
	}
	byID := map[string]*profileBatch{}
	var batch []*profileBatch
	var re schemas.ResolvedEvent
	for _, rec := range recs {
		if err := p.serde.DecodeResolved(ctx, rec.Value, &re); err != nil {
			if schemas.IsTransient(err) {
				return processing.Transient(fmt.Errorf("decoding %s@%d: %w", t.tp, rec.Offset, err))
			}
			f := dlq.FailureOf(dlq.StageDecode, err)
			p.dropped.WithLabelValues(processorName, "dlq:"+f.Code).Inc()
			tc.Emit(dlq.New(rec, p.topics.DLQ, f, p.now()))
			continue
		}
		a := classify(&re.Event)
		if a.kind == ignored || re.ProfileID == "" {
			continue
		}
		pb := byID[re.ProfileID]
		if pb == nil {
			pb = &profileBatch{id: re.ProfileID}
			byID[re.ProfileID] = pb
			batch = append(batch, pb)
		}
		pb.events = append(pb.events, event{msg: re.Event.MessageID, at: re.Timestamp.UnixMilli(), act: a})
		pb.orders = pb.orders || a.kind == ordered
	}
	if len(batch) == 0 {
		return nil
	}
	if err := t.load(ctx, batch, false); err != nil {
		return err
	}
	hist := assoc.NewHistory(p.cfg.History)
	sm := p.shared.Scores()
	w := newWrites()
	for _, pb := range batch {
		if err := t.apply(ctx, tc, hist, sm, pb, w); err != nil {
			return err
		}
	}
	w.flush(tc, t)
	return nil
}

// load reads the state of the batch's profiles, and the scores of those
// that ordered (allScores: of all): four hash reads in one round trip.
func (t *task) load(ctx context.Context, batch []*profileBatch, allScores bool) error {
	ids := make([]string, len(batch))
	var buyers []string
	for i, pb := range batch {
		ids[i] = pb.id
		if allScores || pb.orders {
			buyers = append(buyers, pb.id)
		}
	}
	pipe := t.p.rdb.Pipeline()
	hist, views, digests := pipe.HMGet(ctx, t.kHistory, ids...), pipe.HMGet(ctx, t.kViews, ids...), pipe.HMGet(ctx, t.kDigest, ids...)
	var scores *redis.SliceCmd
	if len(buyers) > 0 {
		scores = pipe.HMGet(ctx, t.kScores, buyers...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return processing.Transient(fmt.Errorf("reading the state of %d profiles of %s: %w", len(ids), t.tp, err))
	}
	b := 0
	for i, pb := range batch {
		if s, ok := hist.Val()[i].(string); ok {
			pb.state = new(profileState)
			if err := unmarshal([]byte(s), "history of "+pb.id, pb.state); err != nil {
				return err
			}
		}
		if s, ok := views.Val()[i].(string); ok {
			if err := unmarshal([]byte(s), "session of "+pb.id, &pb.sess); err != nil {
				return err
			}
		}
		if s, ok := digests.Val()[i].(string); ok {
			d, err := parseDigest(s)
			if err != nil {
				return fmt.Errorf("stored list of %s: %w", pb.id, err)
			}
			pb.list = &d
		}
		if b < len(buyers) && buyers[b] == pb.id {
			if s, ok := scores.Val()[b].(string); ok {
				pb.scores = new(Scores)
				if err := unmarshal([]byte(s), "scores of "+pb.id, pb.scores); err != nil {
					return err
				}
			}
			b++
		}
	}
	return nil
}

// apply runs one profile's events of the batch, then refreshes its list
// and, after an order, its scores.
func (t *task) apply(ctx context.Context, tc *processing.TaskContext, hist *assoc.History, sm *ScoreModel, pb *profileBatch, w *writes) error {
	p := t.p
	cfg := &p.cfg
	if pb.state != nil {
		hist.Import(pb.id, pb.state.History)
	}
	var latest int64
	var lastOrder *event
	for i := range pb.events {
		ev := &pb.events[i]
		latest = max(latest, ev.at)
		switch ev.act.kind {
		case viewed:
			pb.sess.add(ev.act.items[0], ev.at, cfg.SessionWindow, cfg.MaxViews)
			pb.sessDirty = true
		case ordered:
			if pb.state == nil {
				pb.state = new(profileState)
			}
			o := orderRecord{Profile: pb.id, Message: ev.msg, Order: ev.act.orderID, Time: ev.at, Items: ev.act.items,
				Prev: slices.Clone(hist.LastBasket(pb.id)), Viewed: pb.sess.items(ev.at, cfg.SessionWindow), Revenue: ev.act.revenue}
			hist.AddBasket(pb.id, ev.act.items, time.UnixMilli(ev.at))
			pb.state.Summary.add(ev.at, ev.act.revenue)
			o.Summary = pb.state.Summary
			// The session ends with its order: its views were what led to it.
			pb.sess = session{}
			pb.stateDirty, pb.sessDirty = true, true
			lastOrder = ev
			v, err := json.Marshal(&o)
			if err != nil {
				return fmt.Errorf("encoding the order %s of %s: %w", ev.msg, pb.id, err)
			}
			tc.Emit(&kgo.Record{Topic: p.topics.Orders, Key: []byte(pb.id), Value: v, Timestamp: time.UnixMilli(ev.at)})
		}
	}
	if pb.stateDirty {
		if exp, ok := hist.Export(pb.id); ok {
			pb.state.History = exp
		}
	}
	var snap assoc.Snapshot
	if pb.state != nil {
		snap = hist.Snapshot(pb.id, time.UnixMilli(latest))
	}
	hist.Forget(pb.id)
	if err := t.refreshList(ctx, tc, snap, pb, latest, pb.events[len(pb.events)-1].msg, w); err != nil {
		return err
	}
	if lastOrder != nil && sm != nil {
		sc := sm.score(pb.state.Summary, lastOrder.at)
		sc.Cause, sc.TriggerMessageID = CauseOrder, lastOrder.msg
		if err := t.emitScores(ctx, tc, pb.id, pb.scores, sc, w); err != nil {
			return err
		}
	}
	if pb.stateDirty {
		if err := w.setJSON(t.kHistory, pb.id, pb.state); err != nil {
			return err
		}
	}
	if pb.sessDirty {
		if len(pb.sess.Views) == 0 {
			w.del(t.kViews, pb.id)
		} else if err := w.setJSON(t.kViews, pb.id, &pb.sess); err != nil {
			return err
		}
	}
	return nil
}

// refreshList computes the profile's list at its latest event (time
// latest, message trigger) and emits it when it differs from the stored
// one.
func (t *task) refreshList(ctx context.Context, tc *processing.TaskContext, snap assoc.Snapshot, pb *profileBatch, latest int64, trigger string, w *writes) error {
	p := t.p
	o := p.cfg.Options
	o.Context = pb.sess.items(latest, p.cfg.SessionWindow)
	recs, model := p.shared.Recommend(snap, o)
	p.m.refreshes.Inc()
	items := make([]Item, len(recs))
	for i, r := range recs {
		reason := ReasonPopular
		switch {
		case r.Repeat:
			reason = ReasonRepeat
		case slices.Contains(o.Context, r.Item):
			reason = ReasonViewed
		case r.Score > 0:
			reason = ReasonAssociation
		}
		// Six decimals say all a ranking needs and keep the stored list
		// short.
		items[i] = Item{ProductID: r.Item, Score: math.Round(r.Score*1e6) / 1e6, Reason: reason}
	}
	d := listDigest{version: 1, at: latest, hash: itemsHash(items)}
	if pb.list != nil {
		if pb.list.hash == d.hash {
			return nil
		}
		d.version = pb.list.version + 1
	}
	l := &List{ProfileID: pb.id, Version: d.version, Model: model, Time: time.UnixMilli(latest).UTC(), TriggerMessageID: trigger, Items: items}
	v, err := p.serde.EncodeNative(ctx, p.topics.Recommendations, schemas.RecommendationSchema, l.native())
	if err != nil {
		return processing.Transient(fmt.Errorf("encoding the recommendations of %s: %w", pb.id, err))
	}
	tc.Emit(&kgo.Record{Topic: p.topics.Recommendations, Key: []byte(pb.id), Value: v, Timestamp: l.Time})
	p.m.listChanges.Inc()
	w.set[t.kDigest] = append(w.set[t.kDigest], pb.id, d.String())
	return w.setJSON(t.kList, pb.id, l)
}

// emitScores stores and emits sc as the profile's next scores unless they
// are the same as old.
func (t *task) emitScores(ctx context.Context, tc *processing.TaskContext, profile string, old *Scores, sc Scores, w *writes) error {
	p := t.p
	if old != nil && sameScores(old, &sc) {
		return nil
	}
	sc.ProfileID, sc.Version = profile, 1
	if old != nil {
		sc.Version = old.Version + 1
	}
	v, err := p.serde.EncodeNative(ctx, p.topics.Scores, schemas.CustomerScoresSchema, sc.native())
	if err != nil {
		return processing.Transient(fmt.Errorf("encoding the scores of %s: %w", profile, err))
	}
	tc.Emit(&kgo.Record{Topic: p.topics.Scores, Key: []byte(profile), Value: v, Timestamp: sc.Time})
	p.m.scoreChanges.WithLabelValues(sc.Cause).Inc()
	return w.setJSON(t.kScores, profile, &sc)
}

// OnTimer implements processing.TimerHandler: the tick that refreshes and
// rescores the partition's profiles after a refit, a chunk per firing.
func (t *task) OnTimer(ctx context.Context, tc *processing.TaskContext, due []processing.Timer) error {
	for _, d := range due {
		if d.Key == timerTick {
			return t.tick(ctx, tc)
		}
	}
	return nil
}

// tick runs the next chunk of the sweep over the partition's profiles when
// the instance has a generation the partition was not swept with, and
// re-arms: every profile with a list gets it refreshed with the latest
// associations (as of its latest event, so only the model's change shows),
// and every buyer is rescored with the latest fit as of the fit's time.
// The sweep's progress (generation, HSCAN cursor) is journaled with the
// chunk's effects, so a crash resumes it where the journal says.
func (t *task) tick(ctx context.Context, tc *processing.TaskContext) error {
	p := t.p
	next := p.now().Add(p.cfg.TickInterval)
	defer func() { tc.SetTimer(timerTick, next) }()
	t.armed = true
	g := p.shared.Generation()
	if g == nil {
		return nil
	}
	st, err := p.rdb.HMGet(ctx, t.kSweep, "id", "cursor", "done").Result()
	if err != nil {
		return processing.Transient(fmt.Errorf("reading the sweep state of %s: %w", t.tp, err))
	}
	id, _ := st[0].(string)
	cursorS, _ := st[1].(string)
	done, _ := st[2].(string)
	if id == g.ID && done == "1" {
		return nil
	}
	var cursor uint64
	if id == g.ID {
		cursor, _ = strconv.ParseUint(cursorS, 10, 64)
	}
	kv, nextCursor, err := p.rdb.HScan(ctx, t.kDigest, cursor, "", int64(p.cfg.SweepChunk)).Result()
	if err != nil {
		return processing.Transient(fmt.Errorf("scanning the profiles of %s: %w", t.tp, err))
	}
	// HSCAN may return a field twice; once is enough.
	var batch []*profileBatch
	seen := map[string]bool{}
	for i := 0; i+1 < len(kv); i += 2 {
		if !seen[kv[i]] {
			seen[kv[i]] = true
			batch = append(batch, &profileBatch{id: kv[i]})
		}
	}
	w := newWrites()
	if len(batch) > 0 {
		if err := t.load(ctx, batch, true); err != nil {
			return err
		}
		hist := assoc.NewHistory(p.cfg.History)
		for _, pb := range batch {
			if err := t.sweepProfile(ctx, tc, g, hist, pb, w); err != nil {
				return err
			}
		}
		p.m.swept.Add(float64(len(batch)))
	}
	doneNow := "0"
	if nextCursor == 0 {
		doneNow = "1"
	} else {
		next = p.now() // the next chunk at the next poll
	}
	w.flush(tc, t)
	tc.Write("HSET", t.kSweep, "id", g.ID, "cursor", strconv.FormatUint(nextCursor, 10), "done", doneNow)
	return nil
}

// sweepProfile refreshes one profile's list and rescores it with g.
func (t *task) sweepProfile(ctx context.Context, tc *processing.TaskContext, g *Generation, hist *assoc.History, pb *profileBatch, w *writes) error {
	if pb.list == nil {
		return nil // deleted since the scan
	}
	latest := pb.list.at
	var snap assoc.Snapshot
	if pb.state != nil {
		hist.Import(pb.id, pb.state.History)
		snap = hist.Snapshot(pb.id, time.UnixMilli(latest))
		hist.Forget(pb.id)
	}
	if err := t.refreshList(ctx, tc, snap, pb, latest, "", w); err != nil {
		return err
	}
	if pb.state == nil || g.Scores == nil {
		return nil
	}
	sc := g.Scores.score(pb.state.Summary, g.Scores.asOfMs)
	sc.Cause = CauseRefit
	return t.emitScores(ctx, tc, pb.id, pb.scores, sc, w)
}

// writes collects a step's hash writes, so that each key gets a few large
// HSET and HDEL commands instead of one per profile.
type writes struct {
	set  map[string][]any
	dels map[string][]any
}

func newWrites() *writes { return &writes{set: map[string][]any{}, dels: map[string][]any{}} }

func (w *writes) setJSON(key, field string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s of %s: %w", key, field, err)
	}
	w.set[key] = append(w.set[key], field, string(b))
	return nil
}

func (w *writes) del(key, field string) { w.dels[key] = append(w.dels[key], field) }

// maxArgs bounds one command's arguments: the journal's script unpacks
// them, and Lua's unpack fails beyond a few thousand.
const maxArgs = 1000

func (w *writes) flush(tc *processing.TaskContext, t *task) {
	for _, key := range []string{t.kHistory, t.kViews, t.kList, t.kDigest, t.kScores} {
		for args := w.set[key]; len(args) > 0; {
			n := min(len(args), maxArgs)
			tc.Write("HSET", key, args[:n]...)
			args = args[n:]
		}
		for args := w.dels[key]; len(args) > 0; {
			n := min(len(args), maxArgs)
			tc.Write("HDEL", key, args[:n]...)
			args = args[n:]
		}
	}
}
