package testkit

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ProcessEnv is the environment that points a `cdp` process (CDPBinary) at
// the test's services and topic prefix.
func (e *Env) ProcessEnv() []string {
	sv := e.Services
	return append(os.Environ(),
		"CDP_KAFKA_BROKERS="+strings.Join(sv.KafkaBrokers, ","),
		"CDP_SCHEMA_REGISTRY_URL="+sv.SchemaRegistryURL,
		"CDP_REDIS_URL="+sv.RedisURL,
		"CDP_CLICKHOUSE_DSN="+sv.ClickHouseDSN,
		"CDP_TOPIC_PREFIX="+sv.TopicPrefix,
	)
}

// FreeAddr returns a loopback address with a port nobody listens on, for a
// process's --metrics-addr.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitHealthy waits until a `cdp run` process serves /healthz on addr (so
// it has installed its signal handler), for up to 30 s.
func WaitHealthy(t testing.TB, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cdp run never served /healthz on %s", addr)
		}
	}
}

// Tail returns the last n lines of s (a process log for a failure message).
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ReadAll reads topic with read_committed from its start to its end. Call
// it once everything is written: the end is when polls come back empty
// (transaction markers make offsets useless for this).
func (e *Env) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ctx := Context(t)
	cl := e.Kafka(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
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

// Committed returns how many records of topic group has committed, over
// all partitions (0 while it has none).
func Committed(t testing.TB, adm *kadm.Client, group, topic string) int64 {
	t.Helper()
	committed, err := adm.FetchOffsets(Context(t), group)
	if err != nil {
		return 0
	}
	var n int64
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// WaitConsumed waits until group has committed the end of every partition
// of topic, for up to timeout.
func (e *Env) WaitConsumed(t testing.TB, group, topic string, timeout time.Duration) {
	t.Helper()
	adm := e.Admin(t)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err := adm.ListEndOffsets(ctx, topic)
		committed, cerr := adm.FetchOffsets(ctx, group)
		cancel()
		if err != nil {
			t.Fatalf("listing the end offsets of %s: %v", topic, err)
		}
		done := cerr == nil
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if !ok || c.At < o.Offset {
				done = false
			}
		})
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not consume %s within %s", group, topic, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
