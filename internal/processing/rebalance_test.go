package processing_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// markerProc is the handler of the overlap experiment in issue 7: it keeps
// no journal, reads its per-partition marker in one round trip and applies
// in a second, so it is safe only if no two members process a partition at
// once. The first step of each of its tasks sleeps between the two, so that
// a second member joins meanwhile.
type markerProc struct {
	rdb    redis.UniversalClient
	prefix string
	slow   time.Duration
	slowed atomic.Int32 // tasks in or past their slow step
}

func (p *markerProc) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	return &markerTask{p: p, tp: tp}, nil
}

type markerTask struct {
	p      *markerProc
	tp     processing.TopicPartition
	slowed bool
}

func (t *markerTask) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *markerTask) Close(processing.CloseReason)                        {}

func (t *markerTask) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	marker := fmt.Sprintf("%smarker:%d", t.p.prefix, t.tp.Partition)
	next, err := t.p.rdb.Get(ctx, marker).Int64()
	if err != nil && err != redis.Nil {
		return err
	}
	if t.p.slow > 0 && !t.slowed {
		t.slowed = true
		t.p.slowed.Add(1)
		time.Sleep(t.p.slow) // a slow step: the second member joins now
	}
	pipe := t.p.rdb.TxPipeline()
	for _, rec := range recs {
		if rec.Offset >= next {
			pipe.HIncrBy(ctx, t.p.prefix+"applied", fmt.Sprintf("%d/%d", rec.Partition, rec.Offset), 1)
			next = rec.Offset + 1
		}
	}
	pipe.Set(ctx, marker, next, 0)
	_, err = pipe.Exec(ctx)
	return err
}

// TestNoOverlapWhileAMemberJoins reproduces the overlap of issue 7: member
// A is slow inside its first step over both partitions while member B
// joins and is given one of them. Rebalances are blocked while a
// transaction is open, so B starts only where A committed, and no input
// is applied twice.
func TestNoOverlapWhileAMemberJoins(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in := env.Topic(t, "in", 2)
	cl := env.Kafka(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const perPartition = 200
	for i := range perPartition {
		for p := int32(0); p < 2; p++ {
			cl.Produce(testkit.Context(t), &kgo.Record{Topic: in, Partition: p, Value: []byte(strconv.Itoa(i))}, nil)
		}
	}
	if err := cl.Flush(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	procA := &markerProc{rdb: rdb, prefix: env.RedisPrefix(), slow: 8 * time.Second}
	procB := &markerProc{rdb: rdb, prefix: env.RedisPrefix()}
	cfg := baseConfig(t, env, "overlap", in)
	cfg.MaxPollRecords = 1000 // A's first step holds every record of both partitions
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var rs runners
	cfgA := cfg
	cfgA.InstanceID = env.ID + "-a"
	rs.start(ctx, mustRunner(t, cfgA, procA))
	waitFor(t, 30*time.Second, "A is in its slow step on both partitions", func() bool { return procA.slowed.Load() == 2 })
	cfgB := cfg
	cfgB.InstanceID = env.ID + "-b"
	rs.start(ctx, mustRunner(t, cfgB, procB))
	waitFor(t, 60*time.Second, "every input applied", func() bool {
		n, _ := rdb.HLen(context.Background(), env.RedisPrefix()+"applied").Result()
		return n >= 2*perPartition
	})
	time.Sleep(time.Second)
	stop()
	rs.wait()
	applied, err := rdb.HGetAll(context.Background(), env.RedisPrefix()+"applied").Result()
	if err != nil {
		t.Fatal(err)
	}
	twice := 0
	for k, v := range applied {
		if v != "1" {
			twice++
			if twice <= 5 {
				t.Errorf("input %s applied %s times", k, v)
			}
		}
	}
	if len(applied) != 2*perPartition {
		t.Errorf("%d inputs applied, want %d", len(applied), 2*perPartition)
	}
	if twice > 0 {
		t.Errorf("%d of %d inputs applied more than once: two members processed one partition at once", twice, len(applied))
	}
}
