package processing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// TopicPartition names one input partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s[%d]", tp.Topic, tp.Partition) }

// Processor makes the task of each input partition.
type Processor interface {
	// NewTask returns the task of one partition. It is called on the
	// polling goroutine when the partition is assigned (and again after an
	// aborted transaction); the runner opens the task before giving it
	// records.
	NewTask(tp TopicPartition) (Task, error)
}

// Task processes one input partition. The runner calls it from one
// goroutine at a time.
type Task interface {
	// Open prepares the task before its first record: load state, check
	// the store. tc.Committed says where processing resumes. It may set
	// timers (they are journaled when it returns) but not emit or write.
	Open(ctx context.Context, tc *TaskContext) error
	// Process handles records of the partition in offset order. Outputs
	// go through tc.Emit; effects through the journal (tc.Write, timers,
	// or a Replayer's own journaled script). A returned error aborts the
	// transaction; the records come again after a backoff.
	Process(ctx context.Context, tc *TaskContext, recs []*kgo.Record) error
	// Close releases the task. It must not write: what was not committed
	// is replayed by the next owner.
	Close(reason CloseReason)
}

// TimerHandler is implemented by tasks that schedule timers.
type TimerHandler interface {
	// OnTimer handles timers that are due, earliest first. It runs in a
	// transaction like Process; its outputs and effects are journaled with
	// the timers' removal.
	OnTimer(ctx context.Context, tc *TaskContext, due []Timer) error
}

// PreCommitter is implemented by tasks that write to an external system
// before offsets commit (a batch insert into ClickHouse, say). PreCommit
// runs on every task with work in the transaction, just before it commits;
// it may emit; an error aborts the transaction.
type PreCommitter interface {
	PreCommit(ctx context.Context, tc *TaskContext) error
}

// PostCommitter is implemented by tasks that keep something until it is
// committed (a count to report, a cache to trust). PostCommit runs after
// every committed transaction the task had work in; it must not fail.
type PostCommitter interface {
	PostCommit(tc *TaskContext)
}

// Replayer is implemented by tasks that journal their own steps (a Lua
// script that writes the journal entry with its effects, see
// TaskContext.BeginStep) and keep a small receipt per record instead of
// the outputs. When a record whose effects are in the store comes again,
// Replay rebuilds its outputs from the record and its receipt.
type Replayer interface {
	Replay(ctx context.Context, tc *TaskContext, rec *kgo.Record, receipt []byte) error
}

// CloseReason says why a task is closed.
type CloseReason int

const (
	// Revoked: the partition moved to another member in a rebalance.
	Revoked CloseReason = iota
	// Lost: the member lost its partitions without a clean handover
	// (session timeout, fenced).
	Lost
	// Shutdown: the runner is stopping.
	Shutdown
	// Aborted: the transaction aborted; the task is opened again at once.
	Aborted
)

func (r CloseReason) String() string {
	switch r {
	case Revoked:
		return "revoked"
	case Lost:
		return "lost"
	case Shutdown:
		return "shutdown"
	case Aborted:
		return "aborted"
	}
	return "unknown"
}

// TimerKind says which clock a timer follows.
type TimerKind byte

const (
	// WallClock timers fire when the machine's clock passes them, with or
	// without input traffic.
	WallClock TimerKind = 'w'
	// StreamTime timers fire when the partition's stream time (the
	// largest record timestamp seen) passes them.
	StreamTime TimerKind = 's'
)

// Timer is a durable timer of one task. Key identifies it within the task:
// setting a key again moves the timer.
type Timer struct {
	Key  string
	At   time.Time
	Kind TimerKind
}

// Transient marks err as one that retrying will fix (a store that is
// down): it never counts towards dead-lettering.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// IsTransient reports whether err was marked Transient.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// Errors a Journal returns; the runner reacts to them.
var (
	// ErrFenced: another owner took the partition's epoch. The write was
	// refused.
	ErrFenced = errors.New("fenced: another instance took over this partition")
	// ErrDiverged: the journal is not where this task left it (the store
	// lost writes, or someone else wrote). The write was refused.
	ErrDiverged = errors.New("journal diverged from this task's view")
)

// TaskContext is a task's handle on the runtime: emit outputs, journal
// effects, schedule timers. It is valid for the task's lifetime and used
// from the task's goroutine only.
type TaskContext struct {
	tp  TopicPartition
	pt  *ptask
	log *zap.Logger

	// step buffers: what the current Process, OnTimer or PreCommit call did
	out       []*kgo.Record
	writes    []Write
	setTimers []Timer
	delTimers []string
	custom    []*Step // steps the task journaled itself
	commitReq bool
}

// Partition is the task's input partition.
func (tc *TaskContext) Partition() TopicPartition { return tc.tp }

// Logger is the runner's logger, labelled with the partition.
func (tc *TaskContext) Logger() *zap.Logger { return tc.log }

// Committed is the next offset committed in Kafka when the task was
// opened: where processing resumed.
func (tc *TaskContext) Committed() int64 { return tc.pt.committed }

// LogStart is the first offset Kafka still holds of the task's input
// partition: 0 while retention has deleted nothing, so the task can tell
// whether the partition's whole history is still there to read.
func (tc *TaskContext) LogStart(ctx context.Context) (int64, error) { return tc.pt.logStart(ctx) }

// Epoch is the partition's fencing epoch taken at Open (0 without a
// journal). Effects written outside the journal should check it.
func (tc *TaskContext) Epoch() int64 { return tc.pt.epoch }

// StreamTime is the largest record timestamp the partition has seen.
func (tc *TaskContext) StreamTime() time.Time {
	if tc.pt.streamTime == 0 {
		return time.Time{}
	}
	return time.UnixMilli(tc.pt.streamTime)
}

// Repairing reports whether the records being processed are a repair of a
// store that fell behind Kafka: their outputs are dropped.
func (tc *TaskContext) Repairing() bool { return tc.pt.repairing }

// Emit adds output records to the transaction. Each needs its Topic.
func (tc *TaskContext) Emit(recs ...*kgo.Record) { tc.out = append(tc.out, recs...) }

// Key returns a store key in the task's journal slot, so that effects
// written with Write share the journal's Redis Cluster hash slot.
func (tc *TaskContext) Key(suffix string) string {
	if tc.pt.r.cfg.Journal == nil {
		panic("processing: TaskContext.Key needs a Journal")
	}
	return tc.pt.r.cfg.Journal.Key(tc.tp, suffix)
}

// Write adds a single-key store command (for Redis: HSET key field value,
// PFADD key ..., DEL key) to the current step. The runner applies the
// step's writes atomically with its journal entry after the step returns;
// key must come from Key, so that it shares the journal's slot. Reads are
// the task's business: the fence makes the task the only writer of its
// keys, so it may read them, or cache them, at any time.
func (tc *TaskContext) Write(cmd, key string, args ...any) {
	if tc.pt.r.cfg.Journal == nil {
		panic("processing: TaskContext.Write needs a Journal")
	}
	tc.writes = append(tc.writes, Write{Cmd: cmd, Key: key, Args: args})
}

// Write is one single-key store command of a step.
type Write struct {
	Cmd  string
	Key  string
	Args []any
}

// SetTimer schedules (or moves) the timer key to fire at the wall-clock
// time at. It is written with the step, so it exists exactly when the
// step's effects do.
func (tc *TaskContext) SetTimer(key string, at time.Time) { tc.setTimer(key, at, WallClock) }

// SetStreamTimer schedules the timer key to fire when stream time reaches
// at.
func (tc *TaskContext) SetStreamTimer(key string, at time.Time) { tc.setTimer(key, at, StreamTime) }

func (tc *TaskContext) setTimer(key string, at time.Time, k TimerKind) {
	if tc.pt.r.cfg.Journal == nil {
		panic("processing: timers need a Journal")
	}
	tc.setTimers = append(tc.setTimers, Timer{Key: key, At: at, Kind: k})
}

// CancelTimer removes the timer key of either kind, if any.
func (tc *TaskContext) CancelTimer(key string) {
	if tc.pt.r.cfg.Journal == nil {
		panic("processing: timers need a Journal")
	}
	tc.delTimers = append(tc.delTimers, key)
}

// RequestCommit asks the runner to end the transaction after this step
// (a batch is full, say).
func (tc *TaskContext) RequestCommit() { tc.commitReq = true }

// BeginStep is for Replayer tasks that journal their own effects in one
// atomic store call (a Lua script that includes the journal's library): it
// returns the journal step covering the input offsets first..last, chained
// to the task's previous step. The task passes it to its script, which
// must write one receipt per offset. Steps of one Process call must cover
// its records in order, without gaps; if Process returns an error, some of
// them may have been applied, and the runner reopens the task from the
// store. Timers the script sets (J.settimer) go in the step's SetTimers, so
// that the runner fires them on time.
func (tc *TaskContext) BeginStep(first, last int64) *Step {
	pt := tc.pt
	if pt.r.cfg.Journal == nil {
		panic("processing: BeginStep needs a Journal")
	}
	prev := pt.seq
	if n := len(tc.custom); n > 0 {
		prev = tc.custom[n-1].Seq
	}
	s := &Step{
		Kind: StepRecords, Seq: max(prev, pt.committedSeq) + 1, PrevSeq: prev, Epoch: pt.epoch,
		First: first, Last: last, CommittedSeq: pt.committedSeq,
	}
	if pt.repairing {
		s.Kind = StepRepair
	}
	tc.custom = append(tc.custom, s)
	return s
}

// BeginTimerStep is BeginStep for the OnTimer of a task that journals its
// own steps: the step removes the fired timers (the script must remove them
// too, with the journal library's J.deltimer) and journals its outputs, so
// a replay produces them again at the position where the timers fired. The
// task sets Outputs to exactly what it emits in this OnTimer call before it
// passes the step to its script (journal.StepArgs), and may set SetTimers
// (its script sets them with J.settimer) so that the runner knows when to
// fire next. When OnTimer returns without having called BeginTimerStep, the
// runner journals the firing itself, as for any task.
func (tc *TaskContext) BeginTimerStep(fired []Timer) *Step {
	pt := tc.pt
	if pt.r.cfg.Journal == nil {
		panic("processing: BeginTimerStep needs a Journal")
	}
	s := pt.newStep(StepTimers)
	s.Writes, s.SetTimers, s.DelTimers = nil, nil, nil
	s.Fired = fired
	tc.custom = append(tc.custom, s)
	return s
}

func (tc *TaskContext) reset() {
	tc.out = tc.out[:0]
	tc.writes = tc.writes[:0]
	tc.setTimers = tc.setTimers[:0]
	tc.delTimers = tc.delTimers[:0]
	tc.custom = tc.custom[:0]
	tc.commitReq = false
}

// StepKind says what a journal entry records.
type StepKind byte

const (
	// StepRecords: input records were applied.
	StepRecords StepKind = 'r'
	// StepTimers: timers fired.
	StepTimers StepKind = 't'
	// StepRepair: records were applied again to repair a store that fell
	// behind Kafka; their outputs are already in Kafka, so nothing is
	// replayed from the entry.
	StepRepair StepKind = 'x'
)

// Step is one atomic write of a task to its store with its journal entry.
// Seq numbers a partition's entries; PrevSeq is the seq the task last
// wrote, and the store refuses the step if its journal is elsewhere
// (ErrDiverged) or its epoch is not Epoch (ErrFenced).
type Step struct {
	Kind         StepKind
	Seq, PrevSeq int64
	Epoch        int64
	// First and Last are the input offsets the step covers (records and
	// repair steps); the store refuses a step at or below its applied
	// offset.
	First, Last int64
	// Position is, for a timer step, the next input offset at the time it
	// fired: on replay its outputs come after those of earlier records.
	Position int64
	// CommittedSeq: entries up to it are committed in Kafka and may be
	// dropped.
	CommittedSeq int64
	// Outputs are produced again if the entry is replayed.
	Outputs []*kgo.Record
	Writes  []Write
	// Fired timers are removed; SetTimers and DelTimers applied after.
	Fired     []Timer
	SetTimers []Timer
	DelTimers []string
	// StreamTime is the partition's stream time after the step (ms).
	StreamTime int64
}

// Entry is a journal entry that is applied but not known to be committed.
type Entry struct {
	Seq         int64
	Kind        StepKind
	First, Last int64
	Position    int64
	Outputs     []*kgo.Record
	// Receipts of a Replayer's step, by offset.
	Receipts map[int64][]byte
}

// JournalState is what Journal.Open finds for a partition.
type JournalState struct {
	// Epoch is the fencing epoch Open took.
	Epoch int64
	// Seq is the last entry written (0: none); Applied the last input
	// offset whose effects are in the store (-1: none).
	Seq, Applied int64
	// Trimmed is the highest seq the journal knows was committed.
	Trimmed int64
	// Exists is false for a journal that was never written.
	Exists bool
	// StreamTime of the last entry (ms).
	StreamTime int64
	// Pending entries (seq above the committed seq Open was given), in
	// order.
	Pending []Entry
	// NextTimer and NextStreamTimer are the earliest timers (Unix ms; 0
	// when none).
	NextTimer, NextStreamTimer int64
}

// Journal keeps, per input partition, the fencing epoch, the last applied
// offset, the entries not yet committed, and durable timers, in the same
// store (and Redis Cluster slot) as the task's effects. See
// internal/journal for the Redis implementation and the contract a
// processor's own scripts must meet.
type Journal interface {
	// Open takes a new fencing epoch for tp, drops entries up to
	// committedSeq, and returns the state.
	Open(ctx context.Context, tp TopicPartition, committedSeq int64) (*JournalState, error)
	// Apply writes a step atomically: fence and chain checks, writes,
	// timers, the entry.
	Apply(ctx context.Context, tp TopicPartition, s *Step) error
	// DueTimers returns up to limit timers due at now (wall clock) or at
	// streamTime, earliest first, and the earliest remaining ones.
	DueTimers(ctx context.Context, tp TopicPartition, now, streamTime int64, limit int) (due []Timer, nextWall, nextStream int64, err error)
	// Key names a store key in tp's slot.
	Key(tp TopicPartition, suffix string) string
	// Check reports whether the store answers.
	Check(ctx context.Context) error
}
