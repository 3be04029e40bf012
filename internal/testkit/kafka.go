package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadAll reads topic with read_committed from its start until polls stop
// returning records (call it once everything is written: transaction
// markers make offsets useless for finding the end).
func (e *Env) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ctx := Context(t)
	cl := e.Kafka(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	var out []*kgo.Record
	for idle := 0; idle < 3; {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	return out
}

// Consumed names a consumer group and the topics it must have consumed.
type Consumed struct {
	Group  string
	Topics []string
}

// WaitConsumed waits until every group has committed the end of its topics
// at two checks quiet apart in a row (processors that feed topics they
// read, or fire timers, settle only then), or fails the test after
// timeout.
func (e *Env) WaitConsumed(t testing.TB, timeout, quiet time.Duration, cs ...Consumed) {
	t.Helper()
	adm := e.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for streak := 0; streak < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%v did not consume their inputs within %s", cs, timeout)
		}
		time.Sleep(quiet)
		done := true
		for _, c := range cs {
			ends, err := adm.ListEndOffsets(ctx, c.Topics...)
			if err != nil {
				t.Fatal(err)
			}
			committed, err := adm.FetchOffsets(ctx, c.Group)
			ends.Each(func(o kadm.ListedOffset) {
				if o.Offset == 0 {
					return // nothing to consume (a group that never joined is done)
				}
				at, ok := committed.Lookup(o.Topic, o.Partition)
				if err != nil || !ok || at.At < o.Offset {
					done = false
				}
			})
		}
		if done {
			streak++
		} else {
			streak = 0
		}
	}
}
