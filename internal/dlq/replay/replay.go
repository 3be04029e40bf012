package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/processing"
)

// Headers a replayed record carries besides the original's own.
const (
	// HeaderReplayOf names the dead-letter record it came from,
	// "<dlq topic>/<partition>@<offset>".
	HeaderReplayOf   = "cdp.replay.of"
	HeaderReplayTime = "cdp.replay.time"
)

// Options say what Run replays.
type Options struct {
	Topic  string // the dead-letter topic
	Code   string // only this code; progress is kept per code
	To     string // target topic; default: each entry's source topic
	DryRun bool
	// Group is the consumer group (prefix) progress is kept in: Group for
	// a replay of every code, Group.<code> for one code. It names the
	// transactional id too, so it should carry the topic prefix (the CLI
	// uses "<prefix>-dlq-replay").
	Group string
	Batch int // records per poll (default 500)
	// Logger and Metrics, optional.
	Logger  *zap.Logger
	Metrics *processing.Metrics
}

// Result counts what a replay did (or, dry, would do).
type Result struct {
	Group      string
	Read       int64            // dead-letter records read
	Replayed   int64            // re-produced (dry run: would be)
	Skipped    int64            // matching, but replayed before
	Other      int64            // not matching --code
	Unreadable int64            // not in the dead-letter format
	ByCode     map[string]int64 // replayed per code
	ByTarget   map[string]int64 // replayed per target topic
	Batches    int              // transactions committed
}

func newResult(group string) *Result {
	return &Result{Group: group, ByCode: map[string]int64{}, ByTarget: map[string]int64{}}
}

func (r *Result) add(b *Result) {
	r.Read += b.Read
	r.Replayed += b.Replayed
	r.Skipped += b.Skipped
	r.Other += b.Other
	r.Unreadable += b.Unreadable
	for k, v := range b.ByCode {
		r.ByCode[k] += v
	}
	for k, v := range b.ByTarget {
		r.ByTarget[k] += v
	}
}

// GroupFor is the consumer group that records progress for code: one per
// code, so that replaying one code after its fix does not mark the others
// (still broken) as done, plus the bare prefix for replays of every code.
func GroupFor(prefix, code string) string {
	if code == "" {
		return prefix
	}
	return prefix + "." + code
}

// ReplayedBelow is, per partition, the offset below which an entry of a
// code was already replayed: by a replay of all codes (group prefix) or of
// that code (prefix.code).
type ReplayedBelow map[string]map[int32]int64 // group -> partition -> next offset

// Done reports whether the entry at partition/offset of code was replayed.
func (rb ReplayedBelow) Done(prefix, code string, partition int32, offset int64) bool {
	return offset < rb[prefix][partition] || offset < rb[GroupFor(prefix, code)][partition]
}

// loadProgress reads the committed offsets of every replay group of the
// prefix on topic.
func loadProgress(ctx context.Context, adm *kadm.Client, prefix, topic string) (ReplayedBelow, error) {
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing consumer groups: %w", err)
	}
	rb := ReplayedBelow{}
	for _, g := range lg.Groups() {
		if g != prefix && !strings.HasPrefix(g, prefix+".") {
			continue
		}
		offs, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("reading offsets of group %s: %w", g, err)
		}
		rb[g] = map[int32]int64{}
		for p, o := range offs[topic] {
			if o.Err == nil {
				rb[g][p] = o.At
			}
		}
	}
	return rb, nil
}

// decider classifies dead-letter records.
type decider struct {
	o        Options
	progress ReplayedBelow
	log      *zap.Logger
}

// decide classifies one record into res and returns the record to
// produce, or nil.
func (d *decider) decide(r *kgo.Record, now time.Time, res *Result) (*kgo.Record, error) {
	res.Read++
	e, err := dlq.Parse(r)
	if err != nil {
		res.Unreadable++
		d.log.Warn("skipping a record that is not a dead-letter record", zap.String("at", Position(r.Topic, r.Partition, r.Offset)), zap.Error(err))
		return nil, nil
	}
	switch {
	case d.o.Code != "" && e.Code != d.o.Code:
		res.Other++
		return nil, nil
	case d.progress.Done(d.o.Group, e.Code, r.Partition, r.Offset):
		res.Skipped++
		return nil, nil
	}
	out := e.Replay(d.o.To)
	if out.Topic == "" {
		return nil, fmt.Errorf("dead-letter record %s names no source topic: replay it with --to TOPIC", Position(r.Topic, r.Partition, r.Offset))
	}
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderReplayOf, Value: []byte(Position(r.Topic, r.Partition, r.Offset))},
		kgo.RecordHeader{Key: HeaderReplayTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	res.Replayed++
	res.ByCode[e.Code]++
	res.ByTarget[out.Topic]++
	return out, nil
}

// Run re-produces the dead-letter entries that match o and were not
// replayed before, to their source topic (or o.To), with their original
// key, value and headers plus cdp.replay.of. It runs on the processing
// runtime, up to the topic's end as of the call: each transaction commits
// the replayed records with the replay group's offsets, so a crash never
// resends or loses an entry, and a second replay resends nothing.
func Run(ctx context.Context, brokers []string, o Options, kopts ...kgo.Opt) (*Result, error) {
	if o.Group == "" {
		return nil, errors.New("replay: Options.Group is required")
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	group := GroupFor(o.Group, o.Code)
	res := newResult(group)
	cl, adm, ends, err := openDLQ(ctx, brokers, o.Topic)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	progress, err := loadProgress(ctx, adm, o.Group, o.Topic)
	if err != nil {
		return nil, err
	}
	starts, err := StartOffsets(ctx, adm, o.Topic)
	if err != nil {
		return nil, err
	}
	for p, off := range progress[group] {
		starts[p] = max(starts[p], off)
	}
	d := &decider{o: o, progress: progress, log: o.Logger}
	if o.DryRun {
		now := time.Now()
		var derr error
		err := Scan(ctx, brokers, o.Topic, starts, ends, func(r *kgo.Record) bool {
			_, derr = d.decide(r, now, res)
			return derr == nil
		})
		return res, errors.Join(err, derr)
	}
	stop := map[processing.TopicPartition]int64{}
	for p, end := range ends {
		if starts[p] < end {
			stop[processing.TopicPartition{Topic: o.Topic, Partition: p}] = end
		}
	}
	if len(stop) == 0 {
		return res, nil
	}
	// Partitions already replayed to their end still need a target, or the
	// runner would wait for them.
	for p, end := range ends {
		tp := processing.TopicPartition{Topic: o.Topic, Partition: p}
		if _, ok := stop[tp]; !ok {
			stop[tp] = min(end, starts[p])
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	proc := &replayProc{d: d, res: res, cancel: cancel}
	r, err := processing.New(processing.Config{
		Name: "dlq-replay", Brokers: brokers, Group: group, Inputs: []string{o.Topic},
		InstanceID: group, TransactionalID: group, // one replay per group at a time: a second one fences the first
		MaxPollRecords: o.Batch, CommitInterval: -1, StopAt: stop, Logger: o.Logger, Metrics: o.Metrics, KafkaOpts: kopts,
	}, proc)
	if err != nil {
		return nil, err
	}
	runErr := r.Run(ctx)
	if err := proc.failed(); err != nil {
		return res, fmt.Errorf("replay stopped, nothing of the failed batch was sent or recorded: %w", err)
	}
	if runErr != nil {
		return res, fmt.Errorf("replaying %s: %w", o.Topic, runErr)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("replaying %s: %w", o.Topic, err)
	}
	return res, nil
}

// replayProc turns the replay into a processor: a task per dead-letter
// partition decides each record; counts reach the result only once their
// transaction committed.
type replayProc struct {
	d      *decider
	cancel func() // stops the runner when a record cannot be replayed
	mu     sync.Mutex
	res    *Result
	err    error
}

func (p *replayProc) NewTask(processing.TopicPartition) (processing.Task, error) {
	return &replayTask{p: p}, nil
}

func (p *replayProc) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

type replayTask struct {
	p       *replayProc
	pending *Result
}

func (t *replayTask) Open(context.Context, *processing.TaskContext) error {
	t.pending = newResult("")
	return nil
}

func (t *replayTask) Close(processing.CloseReason) {}

func (t *replayTask) Process(_ context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	now := time.Now()
	for _, r := range recs {
		out, err := t.p.d.decide(r, now, t.pending)
		if err != nil {
			// A record the replay cannot place: stop rather than skip it.
			t.p.mu.Lock()
			t.p.err = err
			t.p.mu.Unlock()
			t.p.cancel()
			return err
		}
		if out != nil {
			tc.Emit(out)
		}
	}
	return nil
}

func (t *replayTask) PostCommit(tc *processing.TaskContext) {
	t.p.mu.Lock()
	t.p.res.add(t.pending)
	t.p.res.Batches++
	t.p.mu.Unlock()
	tc.Logger().Info("replay batch committed", zap.Int64("read", t.pending.Read), zap.Int64("replayed", t.pending.Replayed))
	t.pending = newResult("")
}
