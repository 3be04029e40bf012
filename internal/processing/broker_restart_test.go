package processing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/internal/processing"
)

// TestBrokerRestart stops the (only) Kafka broker while a runner works and
// starts it again from its data directory a few seconds later. The runner
// must survive the outage on its own and every input must still appear
// exactly once in the read_committed output.
func TestBrokerRestart(t *testing.T) {
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

	h := &flakyHandler{out: "out", rng: rand.New(rand.NewPCG(3, 4)), applied: map[int32]int64{}}
	r, err := processing.New(processing.Config{Name: "restart", Brokers: []string{addr}, Group: "g", Inputs: []string{"in"},
		InstanceID: "r0", StaticMembership: true, MaxPollRecords: 50, MaxBackoff: 500 * time.Millisecond, Logger: zaptest.NewLogger(t)}, h)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	// Stop the broker once part of the input is processed.
	for {
		h.mu.Lock()
		n := h.effects
		h.mu.Unlock()
		if n >= 500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	seen, total := map[string]int{}, 0
	for len(seen) < 4000 && ctx.Err() == nil {
		pctx, c := context.WithTimeout(ctx, time.Second)
		cons.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { seen[string(rec.Value)]++; total++ })
		c()
	}
	pctx, c := context.WithTimeout(ctx, time.Second)
	cons.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { seen[string(rec.Value)]++; total++ })
	c()
	stop()
	if err := <-done; err != nil {
		t.Errorf("runner: %v", err)
	}
	if len(seen) != 4000 || total != 4000 {
		t.Fatalf("after the broker restart: %d distinct outputs in %d records, want 4000 exactly once", len(seen), total)
	}
}
