package processing_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// flakyHandler maps each input to one output and keeps an idempotent
// "external" effect: a per-partition applied offset and a sum, like a store
// would. It fails a share of batches to force aborts and replays.
type flakyHandler struct {
	out      string
	failRate float64
	mu       sync.Mutex
	rng      *rand.Rand
	applied  map[int32]int64 // next offset to apply, per partition
	effects  int             // how many inputs the effect counted
	fails    int
}

func (h *flakyHandler) Process(_ context.Context, _ string, p int32, recs []*kgo.Record) ([]*kgo.Record, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Apply the effect first, then maybe fail: the worst case, an effect
	// whose transaction aborts.
	for _, r := range recs {
		if r.Offset >= h.applied[p] {
			h.effects++
			h.applied[p] = r.Offset + 1
		}
	}
	if h.rng.Float64() < h.failRate {
		h.fails++
		return nil, errors.New("injected failure")
	}
	outs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		outs[i] = &kgo.Record{Topic: h.out, Key: r.Key, Value: append([]byte("out-"), r.Value...)}
	}
	return outs, nil
}

// TestExactlyOnceDespiteAborts runs two runners in one group over a topic
// with four partitions while the handler fails a third of its batches and one
// runner stops halfway (a rebalance). Every input must appear exactly once in
// the read_committed output and be counted once by the effect.
func TestExactlyOnceDespiteAborts(t *testing.T) {
	env := testkit.New(t)
	in := env.Topic(t, "in", 4)
	out := env.Topic(t, "out", 4)
	ctx := testkit.Context(t)

	const n = 3000
	prod := env.Kafka(t)
	for i := range n {
		prod.Produce(ctx, &kgo.Record{Topic: in, Key: []byte(fmt.Sprint(i % 97)), Value: []byte(fmt.Sprint(i))}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	h := &flakyHandler{out: out, failRate: 0.33, rng: rand.New(rand.NewPCG(1, 2)), applied: map[int32]int64{}}
	newRunner := func(id string) *processing.Runner {
		r, err := processing.New(processing.Config{
			Name: "test", Brokers: env.Services.KafkaBrokers, Group: env.Services.Topic("group"), Inputs: []string{in},
			InstanceID: env.ID + id, MaxPollRecords: 100, MaxBackoff: 50 * time.Millisecond, Logger: zaptest.NewLogger(t),
		}, h)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ctxA, stopA := context.WithCancel(ctx)
	ctxB, stopB := context.WithCancel(ctx)
	defer stopA()
	defer stopB()
	errs := make(chan error, 2)
	go func() { errs <- newRunner("a").Run(ctxA) }()
	go func() { errs <- newRunner("b").Run(ctxB) }()

	cons := env.Kafka(t, kgo.ConsumeTopics(out), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]int{}
	total := 0
	stopped := false
	deadline := time.Now().Add(45 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cons.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++; total++ })
		if !stopped && len(seen) > n/2 {
			stopA() // runner a leaves: its partitions move to b
			stopped = true
		}
	}
	// Read a little longer: a duplicate would arrive after the last new value.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cons.PollFetches(pctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++; total++ })
	cancel()
	stopB()
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("runner: %v", err)
		}
	}

	if len(seen) != n || total != n {
		t.Fatalf("output has %d distinct values in %d records, want %d exactly once", len(seen), total, n)
	}
	for i := range n {
		if c := seen[fmt.Sprintf("out-%d", i)]; c != 1 {
			t.Fatalf("out-%d seen %d times", i, c)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.effects != n {
		t.Errorf("effect counted %d inputs, want %d", h.effects, n)
	}
	if h.fails == 0 {
		t.Errorf("no batch failed: the test did not exercise aborts")
	}
	t.Logf("%d outputs exactly once after %d injected failures", n, h.fails)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  processing.Config
		want string
	}{
		{processing.Config{Brokers: []string{"x"}, Group: "g", Inputs: []string{"i"}}, "Name"},
		{processing.Config{Name: "n", Group: "g", Inputs: []string{"i"}}, "Brokers"},
		{processing.Config{Name: "n", Brokers: []string{"x"}, Inputs: []string{"i"}}, "Group"},
		{processing.Config{Name: "n", Brokers: []string{"x"}, Group: "g"}, "Inputs"},
	} {
		_, err := processing.New(tc.cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error naming %s", tc.cfg, err, tc.want)
		}
	}
}
