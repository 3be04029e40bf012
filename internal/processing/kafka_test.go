package processing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// TestBrokerTimedOutTransactionStartsNewSession stalls a commit (in
// PreCommit, after the transaction produced) far beyond the transaction
// timeout, so the broker aborts the transaction and bumps the producer
// epoch: End then answers PRODUCER_FENCED, which is not another instance. The runner must start a new session and go on, with
// every input exactly once.
func TestBrokerTimedOutTransactionStartsNewSession(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in := env.Topic(t, "in", 2)
	out := env.Topic(t, "out", 2)
	const n = 500
	produceN(t, env, in, n)
	p := &countProc{out: out, stallOnce: 6 * time.Second, stallAt: 4}
	cfg := baseConfig(t, env, "stall", in)
	cfg.Journal = newJournal(env, rdb, "stall")
	cfg.TransactionTimeout, cfg.ProcessingTimeout, cfg.CommitInterval = 3*time.Second, 400*time.Millisecond, time.Second
	cfg.MaxPollRecords = 20
	m := processing.NewMetrics(nil)
	cfg.Metrics = m
	ctx, stop := context.WithCancel(context.Background())
	var rs runners
	rs.start(ctx, mustRunner(t, cfg, p))
	seen := readCommitted(t, env, out, n, 60*time.Second)
	stop()
	for _, err := range rs.wait() {
		t.Errorf("runner stopped with %v; a broker-side timeout is not a fence", err)
	}
	expectOnce(t, "outputs", seen, outputsWanted(in, n))
	for k, c := range effects(t, rdb, env.RedisPrefix()) {
		if c != 1 {
			t.Errorf("effect %s applied %d times", k, c)
		}
	}
	if s := testutil.ToFloat64(m.Errors.WithLabelValues("stall", "session")); s < 1 {
		t.Errorf("no new session was started (%v): the stall did not reach the broker's timeout", s)
	}
}

// TestBrokerRestart stops the (only) Kafka broker while a runner works and
// starts it again from its data directory a few seconds later. The runner
// must survive the outage on its own, with every input exactly once in the
// read_committed output and in the store.
func TestBrokerRestart(t *testing.T) {
	env := testkit.New(t) // for Redis; Kafka is a private broker
	rdb := env.Redis(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.Ports(port), kfake.NumBrokers(1), kfake.DataDir(dir))
		if err != nil {
			t.Fatalf("starting kfake: %v", err)
		}
		return c
	}
	broker := startBroker()
	defer func() { broker.Close() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(adm).CreateTopics(ctx, 2, 1, nil, "in", "out"); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	produce := func(from, to int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := from; i < to; i++ {
			cl.Produce(ctx, &kgo.Record{Topic: "in", Value: []byte(fmt.Sprint(i))}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 2000)

	p := &countProc{out: "out", rng: rand.New(rand.NewPCG(3, 4))}
	r := mustRunner(t, processing.Config{Name: "restart", Brokers: []string{addr}, Group: "g", Inputs: []string{"in"},
		InstanceID: "r0", StaticMembership: true, MaxPollRecords: 50, MaxBackoff: 500 * time.Millisecond, Logger: testLogger(t),
		Journal: newJournal(env, rdb, "restart")}, p)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	waitFor(t, time.Minute, "500 inputs applied", func() bool { return len(effects(t, rdb, env.RedisPrefix())) >= 500 })
	broker.Close()
	time.Sleep(3 * time.Second)
	broker = startBroker()
	produce(2000, 4000)

	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	seen := map[string]int{}
	for len(seen) < 4000 && ctx.Err() == nil {
		pctx, c := context.WithTimeout(ctx, time.Second)
		cons.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { seen[string(rec.Value)]++ })
		c()
	}
	pctx, c := context.WithTimeout(ctx, time.Second)
	cons.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { seen[string(rec.Value)]++ })
	c()
	stop()
	if err := <-done; err != nil {
		t.Errorf("runner: %v", err)
	}
	expectOnce(t, "outputs after the broker restart", seen, outputsWanted("in", 4000))
	eff := effects(t, rdb, env.RedisPrefix())
	if len(eff) != 4000 {
		t.Errorf("%d effects, want 4000", len(eff))
	}
	for k, c := range eff {
		if c != 1 {
			t.Errorf("effect %s applied %d times", k, c)
		}
	}
}
