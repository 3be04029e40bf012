package testkit

import (
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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
