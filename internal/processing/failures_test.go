package processing_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// poisonProc fails every step that holds a record whose value is
// "poison", like a processor with a bug a record triggers.
type poisonProc struct {
	out      string
	attempts atomic.Int64
}

func (p *poisonProc) NewTask(processing.TopicPartition) (processing.Task, error) {
	return &poisonTask{p: p}, nil
}

type poisonTask struct{ p *poisonProc }

func (t *poisonTask) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *poisonTask) Close(processing.CloseReason)                        {}

func (t *poisonTask) Process(_ context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	for _, rec := range recs {
		if string(rec.Value) == "poison" {
			t.p.attempts.Add(1)
			return errors.New("cannot digest poison")
		}
		tc.Write("HINCRBY", tc.Key("eff"), rec.Topic+"/"+strconv.Itoa(int(rec.Partition))+"/"+strconv.FormatInt(rec.Offset, 10), 1)
		tc.Emit(&kgo.Record{Topic: t.p.out, Value: append([]byte("out-"), rec.Value...)})
	}
	return nil
}

// TestPoisonRecordIsolatedThenDeadLettered puts a record that always fails
// into one of two partitions. Without a dead-letter topic the failing
// partition is paused and retried while the other one is processed to its
// end. With one, the record is dead-lettered with its error after
// MaxAttempts tries, and every other record of its partition goes on,
// each exactly once.
func TestPoisonRecordIsolatedThenDeadLettered(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in := env.Topic(t, "in", 2)
	out := env.Topic(t, "out", 2)
	dlqTopic := env.Topic(t, "dlq", 1)
	cl := env.Kafka(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const per = 300
	var want []string
	for i := range per {
		for p := int32(0); p < 2; p++ {
			v := strconv.Itoa(int(p)*per + i)
			if p == 0 && i == per/3 {
				v = "poison"
			} else {
				want = append(want, "out-"+v)
			}
			cl.Produce(testkit.Context(t), &kgo.Record{Topic: in, Partition: p, Value: []byte(v)}, nil)
		}
	}
	if err := cl.Flush(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	proc := &poisonProc{out: out}
	cfg := baseConfig(t, env, "poison", in)
	cfg.Journal = newJournal(env, rdb, "poison")
	cfg.MaxAttempts = 3

	// Phase 1: no dead-letter topic. Partition 1 completes; partition 0
	// stops at the poison, retried with backoff.
	ctx, stop := context.WithCancel(context.Background())
	var rs runners
	rs.start(ctx, mustRunner(t, cfg, proc))
	seen := readCommitted(t, env, out, per+per/3, 30*time.Second)
	waitFor(t, 30*time.Second, "the poison record is retried", func() bool { return proc.attempts.Load() >= 5 })
	stop()
	rs.wait()
	p1 := 0
	for v := range seen {
		n, _ := strconv.Atoi(strings.TrimPrefix(v, "out-"))
		if n >= per {
			p1++
		}
	}
	if p1 != per {
		t.Errorf("partition 1 produced %d of %d outputs while partition 0 was failing", p1, per)
	}
	if len(seen) != per+per/3 {
		t.Errorf("%d outputs before the poison record was dead-lettered, want %d (partition 1, and partition 0 up to the poison)", len(seen), per+per/3)
	}

	// Phase 2: with a dead-letter topic.
	cfg.DeadLetterTopic = dlqTopic
	ctx, stop = context.WithCancel(context.Background())
	rs = runners{}
	rs.start(ctx, mustRunner(t, cfg, proc))
	seen = readCommitted(t, env, out, len(want), 60*time.Second)
	stop()
	rs.wait()
	expectOnce(t, "outputs", seen, want)
	for k, c := range effects(t, rdb, env.RedisPrefix()) {
		if c != 1 {
			t.Errorf("effect %s applied %d times", k, c)
		}
	}
	dead := env.Kafka(t, kgo.ConsumeTopics(dlqTopic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var letters []dlq.Entry
	deadline := time.Now().Add(10 * time.Second)
	for len(letters) < 1 && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		dead.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			e, err := dlq.Parse(r)
			if err != nil {
				t.Errorf("dead letter: %v", err)
				return
			}
			letters = append(letters, e)
		})
		cancel()
	}
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	e := letters[0]
	if string(e.Value) != "poison" || e.Code != "processing_failed" || !strings.Contains(e.Reason, "cannot digest poison") || e.SourcePartition != 0 {
		t.Errorf("dead letter: value %q code %s partition %d reason %q", e.Value, e.Code, e.SourcePartition, e.Reason)
	}
}
