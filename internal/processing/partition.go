package processing

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
)

// ptask is the runner's side of one partition's task.
type ptask struct {
	r    *Runner
	s    *session
	tp   TopicPartition
	log  *zap.Logger
	task Task // nil until opened (and after a failed open)
	tc   *TaskContext
	// failed: paused until retryAt after a failure; the task is opened
	// again then if it is nil.
	failed bool

	// Kafka: committed is the next committed offset (-1: none), position
	// the next offset to handle (-1: unknown until the first record).
	committed, position int64
	committedSeq        int64 // journal seq committed (from the metadata)
	committedST         int64 // stream time committed

	// Journal view.
	epoch      int64
	seq        int64 // last entry written
	doneSeq    int64 // every entry up to it has all its outputs in the transaction
	applied    int64 // last input offset in the store (-1: none)
	replay     []*pending
	streamTime int64
	nextTimer  int64 // earliest wall-clock timer, Unix ms (0: none)
	nextStream int64 // earliest stream-time timer
	repairing  bool

	// Transaction.
	dirty bool
	// reopen: a step failed part way through (a single record); what came
	// before it commits, then the task is opened again from the store.
	reopen bool

	// Failures.
	paused     bool
	retryAt    time.Time
	failures   int   // consecutive failed attempts of any kind (backoff)
	failOffset int64 // the record that failed, and how often
	attempts   int
	singleTo   int64  // process record by record up to this offset
	lastErr    string // the last failure, for a dead letter's reason
}

type pending struct {
	Entry
	started bool // its outputs were produced again
}

// ready reports whether the task may process.
func (pt *ptask) ready() bool { return pt.task != nil && !pt.failed }

func (pt *ptask) retryBackoff() time.Duration {
	d := 100 * time.Millisecond << min(pt.failures-1, 10)
	return min(d, pt.r.cfg.MaxBackoff)
}

// open creates and opens the task: fence, journal state, repair.
func (pt *ptask) open(ctx context.Context) error {
	r := pt.r
	pt.closeTask(Aborted)
	task, err := r.proc.NewTask(pt.tp)
	if err != nil {
		return err
	}
	pt.task = task
	pt.tc = &TaskContext{tp: pt.tp, pt: pt, log: pt.log}
	pt.replay, pt.repairing, pt.dirty = nil, false, false
	pt.position = pt.committed
	if pt.position < 0 {
		// No commit yet: consuming starts at the log start, which is also
		// what a commit of timers alone must name.
		start, err := pt.logStart(ctx)
		if err != nil {
			return err
		}
		pt.position = start
	}
	pt.streamTime = pt.committedST
	pt.doneSeq = pt.committedSeq
	behindFrom := int64(-1)
	if j := r.cfg.Journal; j != nil {
		js, err := j.Open(ctx, pt.tp, pt.committedSeq)
		if err != nil {
			return fmt.Errorf("opening the journal: %w", err)
		}
		pt.epoch, pt.seq, pt.applied = js.Epoch, js.Seq, js.Applied
		pt.nextTimer, pt.nextStream = js.NextTimer, js.NextStreamTimer
		switch {
		case js.Trimmed > pt.committedSeq:
			// The store saw commits the group no longer has: the group was
			// deleted or its offsets reset. Processing would apply records
			// twice.
			return fmt.Errorf("the journal knows commits up to step %d but the consumer group %s has step %d (committed offset %d): "+
				"the group's offsets were reset or deleted while the store kept its state; restore the group's offsets, "+
				"or reset this processor's store before reprocessing", js.Trimmed, r.cfg.Group, pt.committedSeq, pt.committed)
		case js.Seq < pt.committedSeq:
			// Kafka committed steps the store does not have: it lost
			// writes (a Redis crash with appendfsync everysec, a restore).
			behindFrom = js.Applied + 1
		}
		for i := range js.Pending {
			e := js.Pending[i]
			if (e.Kind == StepRecords || e.Kind == StepRepair) && pt.committed >= 0 && e.Last < pt.committed {
				return fmt.Errorf("journal entry %d (offsets %d-%d) is not committed but the group's committed offset is %d: the offsets were moved by hand", e.Seq, e.First, e.Last, pt.committed)
			}
			if e.Kind == StepRepair {
				continue // its outputs are in Kafka already
			}
			pt.replay = append(pt.replay, &pending{Entry: e})
		}
	}
	if err := pt.task.Open(ctx, pt.tc); err != nil {
		return fmt.Errorf("opening: %w", err)
	}
	if behindFrom >= 0 && pt.committed > behindFrom {
		if err := pt.repair(ctx, behindFrom, pt.committed); err != nil {
			return err
		}
	}
	if tc := pt.tc; len(tc.out) > 0 || len(tc.writes) > 0 || len(tc.custom) > 0 {
		return errors.New("a task's Open must not emit or write: only timers may be set")
	}
	if tc := pt.tc; len(tc.setTimers) > 0 || len(tc.delTimers) > 0 {
		// Timers Open set (a task waking itself up for work of its own,
		// such as a backfill) are journaled now, as a step of their own.
		st := pt.newStep(StepTimers)
		if err := pt.apply(ctx, st); err != nil {
			return fmt.Errorf("journaling the timers Open set: %w", err)
		}
	}
	pt.log.Debug("task opened", zap.Int64("committed", pt.committed), zap.Int64("seq", pt.seq), zap.Int64("applied", pt.applied),
		zap.Int("pending", len(pt.replay)), zap.Int64("epoch", pt.epoch))
	return nil
}

func (pt *ptask) closeTask(reason CloseReason) {
	if pt.task != nil {
		func() {
			defer func() {
				if v := recover(); v != nil {
					pt.log.Error("task Close panicked", zap.Any("panic", v))
				}
			}()
			pt.task.Close(reason)
		}()
		pt.task = nil
	}
}

// repair re-applies records from..to-1, which Kafka committed but the
// store lost, with their outputs dropped (they are in Kafka already).
func (pt *ptask) repair(ctx context.Context, from, to int64) error {
	r := pt.r
	pt.log.Warn("the store is behind Kafka: repairing", zap.Int64("from", from), zap.Int64("to", to-1))
	start, err := pt.logStart(ctx)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	if start > from {
		return fmt.Errorf("the store lost the effects of offsets %d-%d of %s, and Kafka no longer has offsets before %d: "+
			"it cannot be repaired from Kafka; reset this processor's store and its consumer group, then reprocess (see docs/OPERATIONS.md)",
			from, to-1, pt.tp, start)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{pt.tp.Topic: {pt.tp.Partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the committed offset may be just past a marker
	}, r.cfg.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("repair: Kafka client: %w", err)
	}
	defer cl.Close()
	pt.repairing = true
	defer func() { pt.repairing = false }()
	pt.position = from
	repaired := 0
	for pt.position < to {
		pctx, cancel := context.WithTimeout(ctx, 2*r.cfg.ProcessingTimeout)
		fs := cl.PollRecords(pctx, r.cfg.MaxPollRecords)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var recs []*kgo.Record
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset < to {
				recs = append(recs, rec)
			}
		})
		if len(recs) == 0 {
			if ferr != nil {
				return fmt.Errorf("repair: reading %s from %d: %w", pt.tp, pt.position, ferr)
			}
			return fmt.Errorf("repair: no records of %s between %d and %d within %s", pt.tp, pt.position, to-1, 2*r.cfg.ProcessingTimeout)
		}
		pt.tc.reset()
		if err := pt.stepRecords(ctx, recs); err != nil {
			return fmt.Errorf("repair of %s at offset %d: %w", pt.tp, recs[0].Offset, err)
		}
		pt.tc.reset() // outputs dropped: they are in Kafka already
		repaired += len(recs)
		r.m.Repaired.WithLabelValues(r.lbl).Add(float64(len(recs)))
		if recs[len(recs)-1].Offset >= to-1 {
			break
		}
	}
	pt.position = to
	pt.log.Warn("repaired the store from Kafka", zap.Int("records", repaired), zap.Int64("applied", pt.applied))
	return nil
}

// logStart is the partition's first offset in Kafka.
func (pt *ptask) logStart(ctx context.Context) (int64, error) {
	starts, err := kadm.NewClient(pt.s.sess.Client()).ListStartOffsets(ctx, pt.tp.Topic)
	if err != nil {
		return 0, fmt.Errorf("listing start offsets of %s: %w", pt.tp.Topic, err)
	}
	so, ok := starts.Lookup(pt.tp.Topic, pt.tp.Partition)
	if !ok {
		return 0, fmt.Errorf("listing start offsets of %s: no partition %d", pt.tp.Topic, pt.tp.Partition)
	}
	if so.Err != nil {
		return 0, fmt.Errorf("listing start offsets of %s: %w", pt.tp, so.Err)
	}
	return so.Offset, nil
}

// stepRecords handles one partition's polled records: replays those the
// store has, processes the others, journals the step. Outputs are left in
// pt.tc.out for the transaction.
func (pt *ptask) stepRecords(ctx context.Context, recs []*kgo.Record) error {
	if hasControl(recs) {
		// Transaction markers move the position but are not the task's
		// business.
		end := recs[len(recs)-1].Offset + 1
		data := make([]*kgo.Record, 0, len(recs))
		for _, rec := range recs {
			if !rec.Attrs.IsControl() {
				data = append(data, rec)
			}
		}
		if len(data) > 0 {
			if err := pt.stepRecords(ctx, data); err != nil {
				return err
			}
		}
		pt.position = max(pt.position, end)
		pt.dirty = true
		return nil
	}
	i := 0
	for ; i < len(recs); i++ {
		rec := recs[i]
		if pt.position >= 0 && rec.Offset < pt.position {
			continue
		}
		if err := pt.replayTimersBefore(rec.Offset); err != nil {
			return err
		}
		if rec.Offset > pt.applied {
			break
		}
		if err := pt.replayRecord(ctx, rec); err != nil {
			return err
		}
		pt.r.m.Replayed.WithLabelValues(pt.r.lbl).Inc()
		pt.advance(rec)
	}
	recs = recs[i:]
	if len(recs) == 0 {
		return pt.replayTimersBefore(pt.position)
	}
	if pt.singleTo >= recs[0].Offset && !pt.repairing {
		return pt.processSingly(ctx, recs)
	}
	if err := pt.process(ctx, recs); err != nil {
		return &stepError{err: err, first: recs[0].Offset, last: recs[len(recs)-1].Offset}
	}
	return nil
}

func hasControl(recs []*kgo.Record) bool {
	for _, rec := range recs {
		if rec.Attrs.IsControl() {
			return true
		}
	}
	return false
}

// stepError says which records a failed step covered.
type stepError struct {
	err         error
	first, last int64
	record      bool // the error is this single record's
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// process runs Process over recs (all above applied) and journals it.
func (pt *ptask) process(ctx context.Context, recs []*kgo.Record) (err error) {
	tc := pt.tc
	mark := len(tc.out)
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the task panicked in Process: %v\n%s", v, debug.Stack())
		}
		if err != nil {
			// Nothing of a failed call goes out or into the store.
			tc.out = tc.out[:mark]
			tc.writes, tc.setTimers, tc.delTimers, tc.custom = tc.writes[:0], tc.setTimers[:0], tc.delTimers[:0], tc.custom[:0]
		}
	}()
	if err := pt.task.Process(ctx, tc, recs); err != nil {
		return err
	}
	last := recs[len(recs)-1]
	if j := pt.r.cfg.Journal; j != nil {
		_, replayer := pt.task.(Replayer)
		if replayer {
			if err := pt.checkCustom(recs); err != nil {
				return err
			}
			if len(tc.writes) > 0 || len(tc.setTimers) > 0 || len(tc.delTimers) > 0 {
				return errors.New("a Replayer journals its own steps: Write and timers are for OnTimer only")
			}
			pt.seq = tc.custom[len(tc.custom)-1].Seq
			for _, st := range tc.custom {
				pt.noteTimers(st.SetTimers)
			}
			tc.custom = tc.custom[:0]
		} else {
			st := pt.newStep(StepRecords)
			st.First, st.Last = recs[0].Offset, last.Offset
			st.Outputs = tc.out[mark:]
			if err := pt.apply(ctx, st); err != nil {
				return err
			}
		}
		pt.applied = last.Offset
	}
	for _, rec := range recs {
		pt.advance(rec)
	}
	pt.doneSeq = pt.seq
	return nil
}

// checkCustom verifies that a Replayer's steps cover recs in order.
func (pt *ptask) checkCustom(recs []*kgo.Record) error {
	cs := pt.tc.custom
	if len(cs) == 0 {
		return errors.New("a Replayer's Process must journal its records through TaskContext.BeginStep")
	}
	if cs[0].First != recs[0].Offset || cs[len(cs)-1].Last != recs[len(recs)-1].Offset {
		return fmt.Errorf("journal steps cover offsets %d-%d, the records %d-%d", cs[0].First, cs[len(cs)-1].Last, recs[0].Offset, recs[len(recs)-1].Offset)
	}
	for i := 1; i < len(cs); i++ {
		if cs[i].First <= cs[i-1].Last || cs[i].PrevSeq != cs[i-1].Seq {
			return fmt.Errorf("journal steps %d and %d are out of order", cs[i-1].Seq, cs[i].Seq)
		}
	}
	return nil
}

// processSingly processes records one at a time after a failed step, so
// that a failure names its record, and dead-letters a record that failed
// MaxAttempts times.
func (pt *ptask) processSingly(ctx context.Context, recs []*kgo.Record) error {
	r := pt.r
	for _, rec := range recs {
		if rec.Offset > pt.singleTo {
			if err := pt.process(ctx, []*kgo.Record{rec}); err != nil {
				return &stepError{err: err, first: rec.Offset, last: rec.Offset, record: true}
			}
			continue
		}
		if rec.Offset == pt.failOffset && pt.attempts >= r.cfg.MaxAttempts && r.cfg.DeadLetterTopic != "" {
			if err := pt.deadLetter(ctx, rec); err != nil {
				return err
			}
			continue
		}
		if err := pt.process(ctx, []*kgo.Record{rec}); err != nil {
			return &stepError{err: err, first: rec.Offset, last: rec.Offset, record: true}
		}
	}
	if pt.position > pt.singleTo {
		pt.singleTo = -1
	}
	return nil
}

// deadLetter gives up on rec: it goes to the dead-letter topic with the
// last error, journaled like any step so a replay repeats the decision.
func (pt *ptask) deadLetter(ctx context.Context, rec *kgo.Record) error {
	r := pt.r
	reason := fmt.Sprintf("processing failed %d times; last error: %s", pt.attempts, pt.lastErr)
	out := dlq.New(rec, r.cfg.DeadLetterTopic, dlq.Failure{Code: "processing_failed", Stage: r.cfg.Name, Reason: reason}, r.cfg.Now())
	pt.tc.out = append(pt.tc.out, out)
	if r.cfg.Journal != nil {
		st := pt.newStep(StepRecords)
		st.First, st.Last = rec.Offset, rec.Offset
		st.Outputs = []*kgo.Record{out}
		if err := pt.apply(ctx, st); err != nil {
			return err
		}
		pt.applied = rec.Offset
	}
	pt.advance(rec)
	pt.doneSeq = pt.seq
	pt.attempts, pt.failOffset = 0, -1
	r.m.Dropped.WithLabelValues(r.lbl, "dlq:processing_failed").Inc()
	pt.log.Error("record dead-lettered after repeated failures", zap.Int64("offset", rec.Offset), zap.String("reason", reason))
	return nil
}

func (pt *ptask) advance(rec *kgo.Record) {
	pt.position = rec.Offset + 1
	if ms := rec.Timestamp.UnixMilli(); ms > pt.streamTime {
		pt.streamTime = ms
	}
	pt.dirty = true
}

// newStep starts a generic journal step chained to the last one.
func (pt *ptask) newStep(kind StepKind) *Step {
	if pt.repairing && kind == StepRecords {
		kind = StepRepair
	}
	tc := pt.tc
	return &Step{
		Kind: kind, Seq: max(pt.seq, pt.committedSeq) + 1, PrevSeq: pt.seq, Epoch: pt.epoch,
		CommittedSeq: pt.committedSeq, Writes: tc.writes, SetTimers: tc.setTimers, DelTimers: tc.delTimers,
		First: -1, Last: -1, Position: pt.position, StreamTime: pt.streamTime,
	}
}

func (pt *ptask) apply(ctx context.Context, st *Step) error {
	if st.Kind == StepRepair {
		st.Outputs = nil
	}
	if err := pt.r.cfg.Journal.Apply(ctx, pt.tp, st); err != nil {
		return err
	}
	pt.seq = st.Seq
	pt.noteTimers(st.SetTimers)
	tc := pt.tc
	tc.writes, tc.setTimers, tc.delTimers = tc.writes[:0], tc.setTimers[:0], tc.delTimers[:0]
	return nil
}

// noteTimers moves the next firing earlier for timers a step set.
func (pt *ptask) noteTimers(ts []Timer) {
	for _, t := range ts {
		ms := t.At.UnixMilli()
		switch t.Kind {
		case WallClock:
			if pt.nextTimer == 0 || ms < pt.nextTimer {
				pt.nextTimer = ms
			}
		case StreamTime:
			if pt.nextStream == 0 || ms < pt.nextStream {
				pt.nextStream = ms
			}
		}
	}
}

// replayRecord handles a record whose effects are in the store: its
// journaled outputs (or a Replayer's rebuilt ones) go to the transaction.
func (pt *ptask) replayRecord(ctx context.Context, rec *kgo.Record) error {
	for len(pt.replay) > 0 {
		e := pt.replay[0]
		if e.Kind == StepTimers || e.First > rec.Offset {
			return nil // committed before: nothing to produce
		}
		if e.Last < rec.Offset {
			pt.popReplay()
			continue
		}
		if !e.started {
			pt.tc.out = append(pt.tc.out, e.Outputs...)
			e.started = true
		}
		if len(e.Receipts) == 0 {
			// Its outputs are in the transaction and its effects in the
			// store: the entry is complete, and the rest of its records are
			// skipped as applied, even if the transaction commits part way
			// through them.
			pt.popReplay()
			return nil
		}
		if receipt, ok := e.Receipts[rec.Offset]; ok {
			rp, ok := pt.task.(Replayer)
			if !ok {
				return fmt.Errorf("journal entry %d has receipts but the task does not implement Replayer", e.Seq)
			}
			if err := rp.Replay(ctx, pt.tc, rec, receipt); err != nil {
				return fmt.Errorf("replaying offset %d: %w", rec.Offset, err)
			}
		}
		if rec.Offset == e.Last {
			pt.popReplay()
		}
		return nil
	}
	return nil
}

func (pt *ptask) popReplay() {
	e := pt.replay[0]
	pt.replay = pt.replay[1:]
	// Entries are complete in seq order, so doneSeq may move up to it.
	pt.doneSeq = max(pt.doneSeq, e.Seq)
	if len(pt.replay) == 0 {
		pt.doneSeq = max(pt.doneSeq, pt.seq)
	}
}

// replayTimersBefore produces the journaled outputs of timer firings that
// happened when the partition's position was at most next.
func (pt *ptask) replayTimersBefore(next int64) error {
	for len(pt.replay) > 0 {
		e := pt.replay[0]
		if e.Kind != StepTimers || e.Position > next {
			return nil
		}
		pt.tc.out = append(pt.tc.out, e.Outputs...)
		pt.popReplay()
		pt.dirty = true
	}
	return nil
}

// timersDue reports whether the task has timers to fire now.
func (pt *ptask) timersDue(now int64) bool {
	if !pt.ready() || len(pt.replay) > 0 {
		return false
	}
	_, ok := pt.task.(TimerHandler)
	if !ok {
		return false
	}
	return (pt.nextTimer > 0 && pt.nextTimer <= now) || (pt.nextStream > 0 && pt.nextStream <= pt.streamTime)
}

// fireTimers runs the task's due timers in one journaled step.
func (pt *ptask) fireTimers(ctx context.Context) (err error) {
	r := pt.r
	tc := pt.tc
	now := r.cfg.Now()
	due, nextWall, nextStream, err := r.cfg.Journal.DueTimers(ctx, pt.tp, now.UnixMilli(), pt.streamTime, 1000)
	if err != nil {
		return fmt.Errorf("reading due timers: %w", err)
	}
	if len(due) == 0 {
		pt.nextTimer, pt.nextStream = nextWall, nextStream
		return nil
	}
	mark := len(tc.out)
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the task panicked in OnTimer: %v\n%s", v, debug.Stack())
		}
	}()
	if err := pt.task.(TimerHandler).OnTimer(ctx, tc, due); err != nil {
		tc.custom = tc.custom[:0]
		return err
	}
	if n := len(tc.custom); n > 0 {
		// The task journaled the firing itself (BeginTimerStep).
		st := tc.custom[n-1]
		tc.custom = tc.custom[:0]
		if n != 1 || st.Kind != StepTimers || len(st.Outputs) != len(tc.out)-mark {
			return fmt.Errorf("OnTimer journaled %d steps with %d outputs, emitted %d: want one BeginTimerStep whose Outputs are what it emitted", n, len(st.Outputs), len(tc.out)-mark)
		}
		pt.seq = st.Seq
		pt.nextTimer, pt.nextStream = nextWall, nextStream
		pt.noteTimers(st.SetTimers)
	} else {
		st := pt.newStep(StepTimers)
		st.Fired = due
		st.Outputs = tc.out[mark:]
		// Until the step is written, the next timers are the ones left.
		pt.nextTimer, pt.nextStream = nextWall, nextStream
		if err := pt.apply(ctx, st); err != nil {
			return err
		}
	}
	pt.doneSeq = pt.seq
	pt.dirty = true
	r.m.TimersFired.WithLabelValues(r.lbl).Add(float64(len(due)))
	for _, t := range due {
		if t.Kind == WallClock {
			r.m.TimerLateness.WithLabelValues(r.lbl).Observe(max(0, now.Sub(t.At).Seconds()))
		}
	}
	return nil
}

// preCommit runs the task's PreCommit and journals what it wrote.
func (pt *ptask) preCommit(ctx context.Context) (err error) {
	pc, ok := pt.task.(PreCommitter)
	if !ok || len(pt.replay) > 0 {
		return nil
	}
	tc := pt.tc
	mark := len(tc.out)
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the task panicked in PreCommit: %v\n%s", v, debug.Stack())
		}
	}()
	if err := pc.PreCommit(ctx, tc); err != nil {
		return err
	}
	if pt.r.cfg.Journal != nil && (len(tc.writes) > 0 || len(tc.setTimers) > 0 || len(tc.delTimers) > 0 || len(tc.out) > mark) {
		st := pt.newStep(StepTimers) // replayed by position, like a timer firing
		st.Outputs = tc.out[mark:]
		if err := pt.apply(ctx, st); err != nil {
			return err
		}
		pt.doneSeq = pt.seq
	}
	return nil
}
