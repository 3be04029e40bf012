package processing_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// TestExactlyOnceAcrossAbortsTopicsAndRebalance runs two journaled runners
// in one group over two input topics whose offsets overlap (both start at
// 0), while the processor fails a fifth of its steps (each failure aborts
// the transaction, which spans several polls, so effects already written
// are replayed from the journal) and one runner leaves half way. Every
// input must have its effect applied exactly once, keyed by topic and
// offset (a journal that ignored the topic would skip one topic's offsets
// as already applied), and its output exactly once in read_committed.
func TestExactlyOnceAcrossAbortsTopicsAndRebalance(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in1 := env.Topic(t, "in1", 4)
	in2 := env.Topic(t, "in2", 2)
	out := env.Topic(t, "out", 4)
	const n = 1500
	produceN(t, env, in1, n)
	produceN(t, env, in2, n)

	p := &countProc{out: out, failRate: 0.2, rng: rand.New(rand.NewPCG(1, 2))}
	ctx := testkit.Context(t)
	newRunner := func(id string) (*processing.Runner, *processing.Metrics) {
		cfg := baseConfig(t, env, "eo", in1, in2)
		cfg.InstanceID = env.ID + id
		cfg.Journal = newJournal(env, rdb, "eo")
		cfg.Metrics = processing.NewMetrics(nil)
		cfg.MaxAttempts = 1000 // injected failures are not the records' fault
		return mustRunner(t, cfg, p), cfg.Metrics
	}
	ctxA, stopA := context.WithCancel(ctx)
	ctxB, stopB := context.WithCancel(ctx)
	defer stopA()
	defer stopB()
	var rs runners
	ra, ma := newRunner("a")
	rb, mb := newRunner("b")
	rs.start(ctxA, ra)
	rs.start(ctxB, rb)

	// Stop runner a once half of the inputs have their effects.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(effects(t, rdb, env.RedisPrefix())) > n {
			break
		}
	}
	stopA()
	want := append(outputsWanted(in1, n), outputsWanted(in2, n)...)
	seen := readCommitted(t, env, out, 2*n, time.Minute)
	stopB()
	for _, err := range rs.wait() {
		t.Errorf("runner: %v", err)
	}
	expectOnce(t, "outputs", seen, want)

	// Effects are keyed topic/partition/offset; every one applied once and
	// each topic's inputs all there.
	perTopic := map[string]int{}
	for k, c := range effects(t, rdb, env.RedisPrefix()) {
		topic, _, _ := strings.Cut(k, "/")
		perTopic[topic]++
		if c != 1 {
			t.Errorf("effect %s applied %d times", k, c)
		}
	}
	if perTopic[in1] != n || perTopic[in2] != n {
		t.Errorf("effects per topic: %s %d, %s %d; want %d each", in1, perTopic[in1], in2, perTopic[in2], n)
	}
	replayed := testutil.ToFloat64(ma.Replayed.WithLabelValues("eo")) + testutil.ToFloat64(mb.Replayed.WithLabelValues("eo"))
	if p.fails.Load() == 0 || replayed == 0 {
		t.Errorf("the test did not exercise replays: %d injected failures, %.0f records replayed", p.fails.Load(), replayed)
	}
	t.Logf("%d inputs of two topics exactly once after %d injected failures and %.0f replayed records", 2*n, p.fails.Load(), replayed)
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
		{processing.Config{Name: "n", Brokers: []string{"x"}, Group: "g", Inputs: []string{"i"},
			ProcessingTimeout: 20 * time.Second, TransactionTimeout: 30 * time.Second}, "half of TransactionTimeout"},
		{processing.Config{Name: "n", Brokers: []string{"x"}, Group: "g", Inputs: []string{"i"},
			ProcessingTimeout: 8 * time.Second, TransactionTimeout: 60 * time.Second, RebalanceTimeout: 10 * time.Second}, "RebalanceTimeout"},
	} {
		_, err := processing.New(tc.cfg, &countProc{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error naming %s", tc.cfg, err, tc.want)
		}
	}
}
