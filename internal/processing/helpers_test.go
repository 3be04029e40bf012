package processing_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// countProc is a journaled processor: per record, one effect (a counter
// per topic and offset in the partition's slot) and one output. It fails a
// share of its Process calls to force aborts and replays.
type countProc struct {
	out      string
	failRate float64
	mu       sync.Mutex
	rng      *rand.Rand
	fails    atomic.Int64
	calls    atomic.Int64
	// stallOnce makes PreCommit hang this long once Process was called
	// stallAt times, ignoring its context (a GC pause, a stuck client).
	stallOnce time.Duration
	stallAt   int64
	stalled   atomic.Bool
}

func (p *countProc) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	return &countTask{p: p}, nil
}

func (p *countProc) fail() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng != nil && p.rng.Float64() < p.failRate
}

type countTask struct{ p *countProc }

// PreCommit stalls once, after the steps of a transaction were journaled
// and their outputs produced, so the commit comes after the broker gave up.
func (t *countTask) PreCommit(context.Context, *processing.TaskContext) error {
	if t.p.stallOnce > 0 && t.p.calls.Load() >= t.p.stallAt && t.p.stalled.CompareAndSwap(false, true) {
		time.Sleep(t.p.stallOnce)
	}
	return nil
}

func (t *countTask) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *countTask) Close(processing.CloseReason)                        {}

func (t *countTask) Process(_ context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	t.p.calls.Add(1)
	for _, rec := range recs {
		tc.Write("HINCRBY", tc.Key("eff"), fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, rec.Offset), 1)
		tc.Emit(&kgo.Record{Topic: t.p.out, Key: rec.Key, Value: []byte("out-" + rec.Topic + "-" + string(rec.Value))})
	}
	if t.p.fail() {
		t.p.fails.Add(1)
		// Not the records' fault (a store hiccup): the transaction aborts
		// and the same records come again, as they are.
		return processing.Transient(errors.New("injected failure"))
	}
	return nil
}

// effects sums the counters every countTask wrote under prefix: topic/offset
// -> times applied.
func effects(t *testing.T, rdb redis.UniversalClient, prefix string) map[string]int {
	t.Helper()
	return counters(t, rdb, prefix, "eff")
}

// effects2 sums the counters of hashes named suffix in the test's keys.
func effects2(t *testing.T, env *testkit.Env, rdb redis.UniversalClient, suffix string) map[string]int {
	t.Helper()
	return counters(t, rdb, env.RedisPrefix(), suffix)
}

func counters(t *testing.T, rdb redis.UniversalClient, prefix, suffix string) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	iter := rdb.Scan(ctx, 0, prefix+"*:"+suffix, 1000).Iterator()
	for iter.Next(ctx) {
		m, err := rdb.HGetAll(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			n, _ := strconv.Atoi(v)
			out[k] += n
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// produceN writes values 0..n-1 to topic, keyed so they spread over its
// partitions.
func produceN(t *testing.T, env *testkit.Env, topic string, n int) {
	t.Helper()
	ctx := testkit.Context(t)
	cl := env.Kafka(t)
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 97)), Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// readCommitted reads topic with read_committed until want distinct values
// arrived (or the deadline), then a little longer so that a duplicate would
// show. It returns value -> count.
func readCommitted(t *testing.T, env *testkit.Env, topic string, want int, deadline time.Duration) map[string]int {
	t.Helper()
	cons := env.Kafka(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]int{}
	end := time.Now().Add(deadline)
	extra := time.Time{}
	for time.Now().Before(end) {
		pctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cons.PollFetches(pctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
		cancel()
		if len(seen) >= want {
			if extra.IsZero() {
				extra = time.Now().Add(1500 * time.Millisecond)
			} else if time.Now().After(extra) {
				break
			}
		}
	}
	return seen
}

// runners runs processors until the test ends or stop is called.
type runners struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func (rs *runners) start(ctx context.Context, r *processing.Runner) {
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		if err := r.Run(ctx); err != nil {
			rs.mu.Lock()
			rs.errs = append(rs.errs, err)
			rs.mu.Unlock()
		}
	}()
}

func (rs *runners) wait() []error {
	rs.wg.Wait()
	return rs.errs
}

// baseConfig is a runner config for tests: quick backoffs and commits.
func baseConfig(t *testing.T, env *testkit.Env, name string, inputs ...string) processing.Config {
	return processing.Config{
		Name: name, Brokers: env.Services.KafkaBrokers, Group: env.Services.Topic("group-" + name), Inputs: inputs,
		InstanceID: env.ID + "-" + name, MaxPollRecords: 100, MaxBackoff: 200 * time.Millisecond,
		CommitInterval: 200 * time.Millisecond, Logger: testLogger(t),
	}
}

func testLogger(t *testing.T) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	return zap.NewNop()
}

func newJournal(env *testkit.Env, rdb redis.UniversalClient, name string, opts ...journal.Option) *journal.Redis {
	return journal.New(rdb, env.RedisPrefix(), name, opts...)
}

func mustRunner(t *testing.T, cfg processing.Config, p processing.Processor) *processing.Runner {
	t.Helper()
	r, err := processing.New(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func expectOnce(t *testing.T, what string, got map[string]int, want []string) {
	t.Helper()
	missing, dup := 0, 0
	for _, k := range want {
		switch c := got[k]; {
		case c == 0:
			missing++
			if missing <= 3 {
				t.Errorf("%s: %s missing", what, k)
			}
		case c > 1:
			dup++
			if dup <= 3 {
				t.Errorf("%s: %s seen %d times", what, k, c)
			}
		}
	}
	if len(got) != len(want) {
		var extra []string
		wantSet := map[string]bool{}
		for _, k := range want {
			wantSet[k] = true
		}
		for k := range got {
			if !wantSet[k] && len(extra) < 3 {
				extra = append(extra, k)
			}
		}
		t.Errorf("%s: %d distinct, want %d (extra: %s)", what, len(got), len(want), strings.Join(extra, ", "))
	}
	if missing+dup > 0 {
		t.Errorf("%s: %d missing, %d duplicated of %d", what, missing, dup, len(want))
	}
}

func outputsWanted(topic string, n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("out-%s-%d", topic, i)
	}
	return out
}
