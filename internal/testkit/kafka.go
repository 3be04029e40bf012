package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadAll reads topic with read_committed from its start to the end it
// has when called (records of aborted transactions are not returned).
func (e *Env) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ends, err := e.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	// Transaction markers come through so that every partition's position
	// reaches its end, which is usually a marker.
	cl := e.Kafka(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d partitions short of their end after 3 minutes: %v", topic, len(left), left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
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
