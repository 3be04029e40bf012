// Package journal is the effect journal of StreamCDP's processing runtime
// in Redis: per input partition, the fencing epoch, the last applied
// offset, the entries applied but not yet committed in Kafka (with the
// outputs or receipts to produce again on a replay), and durable timers.
// It implements processing.Journal.
//
// # Keys
//
// A partition's journal lives under
//
//	<prefix>{<tag>}:j:<processor>:<topic>:<partition>:<m|x|w|s>
//
//	m  hash    e epoch, s last step, a last applied offset, c last step known
//	           committed (entries up to it are dropped), st stream time (ms)
//	x  stream  entries, id "<step>-0": k kind (r records, t timers, x repair),
//	           f/l first/last offset, p position, o outputs, and a Replayer's
//	           receipts as offset -> receipt
//	w  zset    wall-clock timers: key -> due (Unix ms)
//	s  zset    stream-time timers
//
// The tag is the Redis Cluster hash tag: every key of one partition's
// journal, and every key its task writes, must share it, so that a step is
// one atomic script on one shard. The default tag is
// "<processor>:<topic>:<partition>", so partitions spread over the shards
// of a cluster like Kafka Streams' tasks; a processor whose state cannot be
// split by partition (the identity graph of a space) gives every partition
// the same tag as its state.
//
// # The contract of a processor's own scripts
//
// A task either lets the runtime write its steps (TaskContext.Write and
// timers: the generic apply.lua), or writes them from its own Lua script,
// as the identity graph does. Such a script must
//
//   - include the journal library (Script prepends it) and declare the
//     partition's four journal keys first (Keys);
//   - call J.begin before its first write: it checks that the epoch is the
//     task's (else "FENCED") and that the journal is at the step the task
//     last wrote (else "DIVERGED": the store lost writes, or another
//     writer); Redis does not roll a script back, so nothing may be written
//     before these checks;
//   - write one receipt per input offset it covers (J.receipt), from which
//     the task's Replay can rebuild that record's outputs, and call
//     J.finish;
//   - touch only keys in the same hash slot as the journal keys.
//
// Steps of one partition are chained (each names the one before), so a
// Redis that lost its last writes is detected at the next step and at Open,
// instead of silently diverging from what Kafka was told.
//
// # Persistence
//
// Production Redis should run with appendonly yes and appendfsync always:
// each step is one script call, so the cost is one fsync per step (per
// poll and partition), not per event. With appendfsync everysec, a machine
// crash (not a process crash: the page cache survives those) can lose the
// last second of steps; the runtime then finds the journal behind the
// committed offsets and repairs it from Kafka, but a timer firing that was
// lost may fire again.
package journal

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/processing"
)

//go:embed lib.lua
var libSrc string

//go:embed apply.lua
var applySrc string

//go:embed open.lua
var openSrc string

//go:embed due.lua
var dueSrc string

// Redis is a processing.Journal in Redis (or Redis Cluster).
type Redis struct {
	rdb       redis.UniversalClient
	prefix    string
	processor string
	tag       func(processing.TopicPartition) string
	apply     *redis.Script
	open      *redis.Script
	due       *redis.Script
}

// Option configures New.
type Option func(*Redis)

// WithTag sets the hash tag of each partition's keys (default
// "<processor>:<topic>:<partition>"). The tag must not contain braces.
func WithTag(f func(processing.TopicPartition) string) Option { return func(r *Redis) { r.tag = f } }

// New returns the journal of processor in rdb; every key starts with
// prefix (tests give each their own).
func New(rdb redis.UniversalClient, prefix, processor string, opts ...Option) *Redis {
	j := &Redis{rdb: rdb, prefix: prefix, processor: processor,
		apply: redis.NewScript(Script(applySrc)), open: redis.NewScript(openSrc), due: redis.NewScript(dueSrc)}
	j.tag = func(tp processing.TopicPartition) string {
		return processor + ":" + tp.Topic + ":" + strconv.Itoa(int(tp.Partition))
	}
	for _, o := range opts {
		o(j)
	}
	return j
}

// Script returns src with the journal library prepended (after a shebang
// line, if src has one).
func Script(src string) string {
	if strings.HasPrefix(src, "#!") {
		line, rest, _ := strings.Cut(src, "\n")
		return line + "\n" + libSrc + rest
	}
	return libSrc + src
}

func (j *Redis) base(tp processing.TopicPartition) string {
	return j.prefix + "{" + j.tag(tp) + "}:j:" + j.processor + ":" + tp.Topic + ":" + strconv.Itoa(int(tp.Partition)) + ":"
}

// Key implements processing.Journal: a key in tp's slot.
func (j *Redis) Key(tp processing.TopicPartition, suffix string) string {
	return j.prefix + "{" + j.tag(tp) + "}:" + suffix
}

// Keys are tp's four journal keys, in the order scripts expect them.
func (j *Redis) Keys(tp processing.TopicPartition) []string {
	b := j.base(tp)
	return []string{b + "m", b + "x", b + "w", b + "s"}
}

// StepArgs is the step header a script's ARGV starts with (J.begin reads
// it); outputs are encoded with EncodeRecords.
func StepArgs(s *processing.Step) []any {
	out := ""
	if len(s.Outputs) > 0 {
		out = string(EncodeRecords(s.Outputs))
	}
	return []any{s.Epoch, s.PrevSeq, s.Seq, string(rune(s.Kind)), s.First, s.Last, s.Position, s.CommittedSeq, s.StreamTime, out}
}

// Classify turns a script error into processing.ErrFenced or
// processing.ErrDiverged when the journal refused the step.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "FENCED:"):
		return fmt.Errorf("%w: %s", processing.ErrFenced, msg)
	case strings.Contains(msg, "DIVERGED:"):
		return fmt.Errorf("%w: %s", processing.ErrDiverged, msg)
	}
	return err
}

// Open implements processing.Journal.
func (j *Redis) Open(ctx context.Context, tp processing.TopicPartition, committedSeq int64) (*processing.JournalState, error) {
	v, err := j.open.Run(ctx, j.rdb, j.Keys(tp), committedSeq).Slice()
	if err != nil {
		return nil, processing.Transient(fmt.Errorf("journal of %s: open: %w", tp, err))
	}
	if len(v) != 9 {
		return nil, fmt.Errorf("journal of %s: open returned %d values", tp, len(v))
	}
	n := func(i int) int64 {
		switch x := v[i].(type) {
		case int64:
			return x
		case string:
			f, _ := strconv.ParseFloat(x, 64)
			return int64(f)
		}
		return 0
	}
	st := &processing.JournalState{
		Epoch: n(0), Seq: n(1), Applied: n(2), Trimmed: n(3), StreamTime: n(4), Exists: n(5) == 1,
		NextTimer: n(6), NextStreamTimer: n(7),
	}
	entries, _ := v[8].([]any)
	for _, raw := range entries {
		e, err := parseEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("journal of %s: %w", tp, err)
		}
		st.Pending = append(st.Pending, e)
	}
	return st, nil
}

func parseEntry(raw any) (processing.Entry, error) {
	var e processing.Entry
	pair, ok := raw.([]any)
	if !ok || len(pair) != 2 {
		return e, fmt.Errorf("entry %v: not an id and fields", raw)
	}
	id, _ := pair[0].(string)
	seq, _, _ := strings.Cut(id, "-")
	var err error
	if e.Seq, err = strconv.ParseInt(seq, 10, 64); err != nil {
		return e, fmt.Errorf("entry id %q: %w", id, err)
	}
	fields, _ := pair[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		switch k {
		case "k":
			if val != "" {
				e.Kind = processing.StepKind(val[0])
			}
		case "f":
			e.First, _ = strconv.ParseInt(val, 10, 64)
		case "l":
			e.Last, _ = strconv.ParseInt(val, 10, 64)
		case "p":
			e.Position, _ = strconv.ParseInt(val, 10, 64)
		case "o":
			if e.Outputs, err = DecodeRecords([]byte(val)); err != nil {
				return e, fmt.Errorf("entry %d: outputs: %w", e.Seq, err)
			}
		default:
			off, err := strconv.ParseInt(k, 10, 64)
			if err != nil {
				return e, fmt.Errorf("entry %d: unknown field %q", e.Seq, k)
			}
			if e.Receipts == nil {
				e.Receipts = map[int64][]byte{}
			}
			e.Receipts[off] = []byte(val)
		}
	}
	return e, nil
}

// Apply implements processing.Journal with apply.lua.
func (j *Redis) Apply(ctx context.Context, tp processing.TopicPartition, s *processing.Step) error {
	keys := j.Keys(tp)
	keyIdx := map[string]int{}
	for _, w := range s.Writes {
		if _, ok := keyIdx[w.Key]; !ok {
			keys = append(keys, w.Key)
			keyIdx[w.Key] = len(keys) // Lua indexes from 1
		}
	}
	args := StepArgs(s)
	args = append(args, len(s.Fired))
	for _, t := range s.Fired {
		args = append(args, zsetOf(t.Kind), t.Key)
	}
	args = append(args, len(s.SetTimers))
	for _, t := range s.SetTimers {
		args = append(args, zsetOf(t.Kind), t.Key, t.At.UnixMilli())
	}
	args = append(args, len(s.DelTimers))
	for _, k := range s.DelTimers {
		args = append(args, k)
	}
	args = append(args, len(s.Writes))
	for _, w := range s.Writes {
		args = append(args, len(w.Args), w.Cmd, keyIdx[w.Key])
		args = append(args, w.Args...)
	}
	if err := j.apply.Run(ctx, j.rdb, keys, args...).Err(); err != nil {
		err = Classify(err)
		if !errors.Is(err, processing.ErrFenced) && !errors.Is(err, processing.ErrDiverged) {
			err = processing.Transient(err)
		}
		return fmt.Errorf("journal of %s: step %d: %w", tp, s.Seq, err)
	}
	return nil
}

func zsetOf(k processing.TimerKind) string {
	if k == processing.StreamTime {
		return "s"
	}
	return "w"
}

// DueTimers implements processing.Journal.
func (j *Redis) DueTimers(ctx context.Context, tp processing.TopicPartition, now, streamTime int64, limit int) ([]processing.Timer, int64, int64, error) {
	keys := j.Keys(tp)
	v, err := j.due.Run(ctx, j.rdb, keys[2:], now, streamTime, limit).Slice()
	if err != nil {
		return nil, 0, 0, processing.Transient(fmt.Errorf("journal of %s: due timers: %w", tp, err))
	}
	if len(v) != 4 {
		return nil, 0, 0, fmt.Errorf("journal of %s: due timers returned %d values", tp, len(v))
	}
	var due []processing.Timer
	for i, kind := range []processing.TimerKind{processing.WallClock, processing.StreamTime} {
		list, _ := v[i].([]any)
		for k := 0; k+1 < len(list); k += 2 {
			key, _ := list[k].(string)
			score, _ := list[k+1].(string)
			ms, _ := strconv.ParseFloat(score, 64)
			due = append(due, processing.Timer{Key: key, At: time.UnixMilli(int64(ms)), Kind: kind})
		}
	}
	next := func(x any) int64 {
		s, _ := x.(string)
		f, _ := strconv.ParseFloat(s, 64)
		return int64(f)
	}
	sortTimers(due)
	return due, next(v[2]), next(v[3]), nil
}

func sortTimers(ts []processing.Timer) {
	slices.SortStableFunc(ts, func(a, b processing.Timer) int { return a.At.Compare(b.At) })
}

// Check implements processing.Journal: Redis answers.
func (j *Redis) Check(ctx context.Context) error {
	if err := j.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
