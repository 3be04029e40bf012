package processing_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// slowLogProc appends "instance epoch offset" to a list in the store for
// every record, through the journal, and takes its time about it, so that
// a paused instance is caught in the middle of a step.
type slowLogProc struct {
	instance string
	delay    time.Duration
}

func (p *slowLogProc) NewTask(processing.TopicPartition) (processing.Task, error) {
	return &slowLogTask{p: p}, nil
}

type slowLogTask struct{ p *slowLogProc }

func (t *slowLogTask) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *slowLogTask) Close(processing.CloseReason)                        {}

func (t *slowLogTask) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	for _, rec := range recs {
		tc.Write("RPUSH", tc.Key("log"), fmt.Sprintf("%s %d %d", t.p.instance, tc.Epoch(), rec.Offset))
	}
	select {
	case <-time.After(t.p.delay):
	case <-ctx.Done():
	}
	return nil
}

type logEntry struct {
	instance      string
	epoch, offset int64
}

// readLogs returns each partition's log, in write order.
func readLogs(t *testing.T, rdb redis.UniversalClient, prefix string) map[string][]logEntry {
	t.Helper()
	ctx := context.Background()
	out := map[string][]logEntry{}
	iter := rdb.Scan(ctx, 0, prefix+"*:log", 100).Iterator()
	for iter.Next(ctx) {
		vals, err := rdb.LRange(ctx, iter.Val(), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			f := strings.Fields(v)
			e, _ := strconv.ParseInt(f[1], 10, 64)
			o, _ := strconv.ParseInt(f[2], 10, 64)
			out[iter.Val()] = append(out[iter.Val()], logEntry{f[0], e, o})
		}
	}
	return out
}

// TestPausedInstanceWritesNothingAfterTheNewOwnerStarted stops a processor
// process with SIGSTOP in the middle of its steps, long enough for the
// group to give its partitions to a second instance, then resumes it. The
// store must show no write of the paused instance after the new owner's
// first write (per partition, epochs never go down in write order), and
// every input applied exactly once.
func TestPausedInstanceWritesNothingAfterTheNewOwnerStarted(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in := env.Topic(t, "in", 2)
	// Records keep coming to both partitions while the test runs, so both
	// have work before, during and after the takeover.
	var n atomic.Int64
	prodCtx, stopProducing := context.WithCancel(context.Background())
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		cl := env.Kafka(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for i := 0; prodCtx.Err() == nil; i++ {
			for p := int32(0); p < 2; p++ {
				if err := cl.ProduceSync(prodCtx, &kgo.Record{Topic: in, Partition: p, Value: []byte(strconv.Itoa(i))}).FirstErr(); err == nil {
					n.Add(1)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	group := env.Services.Topic("fence")
	spec := helperSpec{Kind: "slowlog", Brokers: env.Services.KafkaBrokers, RedisURL: env.Services.RedisURL, Prefix: env.RedisPrefix(),
		Group: group, Inputs: []string{in}, Instance: "A", SessionTimeout: 6 * time.Second, StepDelay: time.Second,
		// A's step deadline outlasts the pause, so that A, woken up, does
		// try to write (with a shorter one it would give up by itself).
		ProcessingTimeout: 25 * time.Second, TransactionTimeout: 60 * time.Second, RebalanceTimeout: 60 * time.Second}
	logPath := filepath.Join(t.TempDir(), "a.log")
	a := startChild(t, spec, logPath)
	waitFor(t, 30*time.Second, "instance A applies records", func() bool { return len(readLogs(t, rdb, env.RedisPrefix())) == 2 })
	// Pause A inside a step: a step's writes land when it ends, then A
	// commits and starts the next step, which takes StepDelay. Paused in
	// a step, A's transaction holds no offsets yet, so B takes over after
	// A's session timeout; paused in a commit, B must wait for the broker
	// to abort A's transaction, which outlasts A's step deadline.
	applied := 0
	for _, l := range readLogs(t, rdb, env.RedisPrefix()) {
		applied += len(l)
	}
	waitFor(t, 30*time.Second, "instance A applies another step", func() bool {
		now := 0
		for _, l := range readLogs(t, rdb, env.RedisPrefix()) {
			now += len(l)
		}
		return now > applied
	})
	time.Sleep(400 * time.Millisecond)
	a.signal(syscall.SIGSTOP)
	stopped := time.Now()

	cfg := baseConfig(t, env, "slowlog", in)
	cfg.Group, cfg.InstanceID, cfg.MaxPollRecords = group, "B", 20
	cfg.SessionTimeout = 6 * time.Second
	cfg.Journal = newJournal(env, rdb, "slowlog")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var rs runners
	rs.start(ctx, mustRunner(t, cfg, &slowLogProc{instance: "B", delay: 10 * time.Millisecond}))
	// B owns both partitions once A's session timed out, and reads their
	// committed offsets once the broker aborted A's open transaction, which
	// may hold offsets of them: up to A's TransactionTimeout (60 s) after A
	// stopped, more on a loaded machine.
	waitFor(t, 3*time.Minute, "instance B writes to both partitions", func() bool {
		got := 0
		for _, l := range readLogs(t, rdb, env.RedisPrefix()) {
			for _, e := range l {
				if e.instance == "B" {
					got++
					break
				}
			}
		}
		return got == 2
	})
	pause := time.Since(stopped)
	t.Logf("B took over %s after A was stopped", pause.Round(100*time.Millisecond))
	a.signal(syscall.SIGCONT)
	time.Sleep(5 * time.Second) // A wakes up mid-step, writes into the fence, rejoins
	stopProducing()
	<-prodDone
	waitFor(t, 90*time.Second, "every input applied", func() bool {
		total := 0
		for _, l := range readLogs(t, rdb, env.RedisPrefix()) {
			total += len(l)
		}
		return int64(total) >= n.Load()
	})
	time.Sleep(2 * time.Second) // a late zombie write would land now
	stop()
	rs.wait()
	a.signal(syscall.SIGTERM)
	_ = a.cmd.Wait()

	seen := map[string]int{}
	for key, l := range readLogs(t, rdb, env.RedisPrefix()) {
		var maxEpoch int64
		for i, e := range l {
			if e.epoch < maxEpoch {
				t.Errorf("%s: write %d (%s epoch %d offset %d) after a write of epoch %d: a fenced instance wrote", key, i, e.instance, e.epoch, e.offset, maxEpoch)
			}
			maxEpoch = max(maxEpoch, e.epoch)
			seen[fmt.Sprintf("%s/%d", key, e.offset)]++
		}
	}
	total := 0
	for k, c := range seen {
		total++
		if c != 1 {
			t.Errorf("input %s applied %d times", k, c)
		}
	}
	if int64(total) != n.Load() {
		t.Errorf("%d inputs applied, want %d", total, n.Load())
	}
	// The fence is tested only if A did try to write after it woke up.
	// It cannot when the pause outlasted its step deadline (A was paused
	// in a commit, see above): it then gives up by itself, which the
	// checks above cover.
	switch {
	case logContains(t, logPath, "fenced"):
	case pause >= spec.ProcessingTimeout:
		t.Logf("the pause (%s) outlasted A's step deadline (%s): A gave up by itself and did not meet the fence", pause.Round(time.Second), spec.ProcessingTimeout)
	default:
		t.Errorf("instance A never hit the fence; its log:\n%s", tailFile(logPath, 30))
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
