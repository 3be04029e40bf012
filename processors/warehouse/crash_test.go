package warehouse_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// processEnv points a `cdp run warehouse` process at the stage, with extra
// CDP_* settings.
func (s *stage) processEnv(extra ...string) []string {
	sv := s.env.Services
	return append(append(os.Environ(),
		"CDP_KAFKA_BROKERS="+strings.Join(sv.KafkaBrokers, ","),
		"CDP_SCHEMA_REGISTRY_URL="+sv.SchemaRegistryURL,
		"CDP_REDIS_URL="+sv.RedisURL,
		"CDP_CLICKHOUSE_DSN="+s.dsn,
		"CDP_TOPIC_PREFIX="+sv.TopicPrefix,
	), extra...)
}

// membershipChanges makes n entered/exited changes over the profiles.
func (s *stage) membershipChanges(t testing.TB, profiles []string, n int) []*kgo.Record {
	t.Helper()
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	out := make([]*kgo.Record, n)
	for i := range n {
		p := profiles[i%len(profiles)]
		status := "entered"
		if (i/len(profiles))%2 == 1 {
			status = "exited"
		}
		out[i] = s.native(t, s.topics.Membership, schemas.SegmentMembershipSchema, p, map[string]any{"profile_id": p,
			"segment": fmt.Sprintf("seg-%d", i%3), "status": status, "time": t0.Add(time.Duration(i) * time.Second),
			"reason": nil, "trigger_message_id": nil})
	}
	return out
}

// TestCrashRestartExactlyOnce SIGKILLs `cdp run warehouse` at random moments
// of its batches at least five times while input arrives, restarting it
// each time, and then checks that ClickHouse holds every input exactly
// once: one row per distinct event (in total and per profile), every order
// and order line once, every membership change once, and rollups that sum
// to the same.
func TestCrashRestartExactlyOnce(t *testing.T) {
	bin := testkit.CDPBinary(t)
	// A ClickHouse of its own: the test kills clients mid-insert, and if
	// that takes the engine down, it must not take the stack's with it.
	ch := testkit.StartClickHouse(t)
	s := newStageOn(t, 4, ch.DSN())
	in := generateInput(t, 12000, 21)
	profiles := make([]string, 0, len(in.perProf))
	for p := range in.perProf {
		profiles = append(profiles, p)
	}
	slices.Sort(profiles)
	events := s.records(t, in.resolved)
	changes := s.membershipChanges(t, profiles, 600)
	const chunks = 8
	fed := 0
	feed := func() {
		if fed >= chunks {
			return
		}
		cut := func(recs []*kgo.Record) []*kgo.Record {
			n := (len(recs) + chunks - 1) / chunks
			return recs[min(len(recs), fed*n):min(len(recs), (fed+1)*n)]
		}
		s.produce(t, slices.Concat(cut(events), cut(changes)))
		fed++
	}
	adm := s.env.Admin(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	logs := filepath.Join(t.TempDir(), "warehouse.log")
	// Small, quick batches, so that every kill lands among several of them.
	env := s.processEnv("CDP_WAREHOUSE_BATCH_ROWS=500", "CDP_WAREHOUSE_BATCH_AGE=200ms")
	kills, runs, engineExits := 0, 0, 0
	deadline := time.Now().Add(6 * time.Minute)
	total := int64(len(events))
restart:
	for {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logs)
			t.Fatalf("gave up after %d runs and %d kills; the log ends:\n%s", runs, kills, tail(string(b), 60))
		}
		if ch.Exited() {
			// The local engine (chDB serving clickhouse-local) has been seen
			// to die when a client is killed mid-insert; a real server does
			// not, but a restart on the same data must not break exactly-once
			// either.
			engineExits++
			b, _ := os.ReadFile(ch.Log)
			t.Logf("the ClickHouse engine exited (%d); starting it again on its data. Its log ends:\n%s", engineExits, tail(string(b), 5))
			ch.Start()
		}
		logf, err := os.OpenFile(logs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		ops := freeAddr(t)
		cmd := exec.Command(bin, "run", "warehouse", "--instance", "crash-test", "--metrics-addr", ops)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		runs++
		if kills < 6 {
			feed()
			// Kill part way through the chunk (its batches are a sixth of
			// it), at a random moment of a batch: decoding, inserting,
			// between an insert and the commit.
			target := min(total, s.committed(t, adm)+int64(rng.IntN(int(total)/chunks)))
			c := s.committed(t, adm)
			var ended error
			for ; c < target && time.Now().Before(deadline) && len(exited) == 0 && !ch.Exited(); c = s.committed(t, adm) {
				time.Sleep(2 * time.Millisecond)
			}
			if len(exited) > 0 || ch.Exited() {
				// The process ended by itself (ClickHouse went away under
				// it), or is about to: stop it and go round.
				_ = cmd.Process.Signal(syscall.SIGKILL)
				ended = <-exited
				logf.Close()
				b, _ := os.ReadFile(logs)
				t.Logf("run %d ended without a kill (%v; ClickHouse exited: %v); its log ends:\n%s", runs, ended, ch.Exited(), tail(string(b), 3))
				continue
			}
			if c < target {
				// No progress: Go dumps the process's goroutines on SIGQUIT,
				// which says where it is stuck.
				_ = cmd.Process.Signal(syscall.SIGQUIT)
				<-exited
				logf.Close()
				b, _ := os.ReadFile(logs)
				t.Fatalf("run %d made no progress (%d of %d events committed, waiting for %d) after %d kills; the log ends:\n%s",
					runs, c, total, target, kills, tail(string(b), 400))
			}
			time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			logf.Close()
			kills++
			t.Logf("kill %d after %d of %d events committed", kills, s.committed(t, adm), total)
			continue
		}
		for fed < chunks {
			feed()
		}
		// The last run, not killed, consumes the rest.
		last := time.Now().Add(3 * time.Minute)
		for !s.consumed(adm) {
			switch {
			case ch.Exited():
				engineExits++
				t.Logf("the ClickHouse engine exited (%d) during the last run; starting it again on its data", engineExits)
				ch.Start()
			case len(exited) > 0:
				// ClickHouse was gone when it started, or its metrics port
				// was taken in the meantime: another run.
				logf.Close()
				b, _ := os.ReadFile(logs)
				t.Logf("the last run ended by itself (%v); starting another. Its log ends:\n%s", <-exited, tail(string(b), 3))
				continue restart
			case time.Now().After(last):
				_ = cmd.Process.Signal(syscall.SIGQUIT)
				<-exited
				logf.Close()
				b, _ := os.ReadFile(logs)
				t.Fatalf("the last run did not consume the inputs within 3 minutes; the log ends:\n%s", tail(string(b), 400))
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitHealthy(t, ops)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			b, _ := os.ReadFile(logs)
			t.Fatalf("cdp run warehouse after SIGTERM: %v\n%s", err, tail(string(b), 30))
		}
		logf.Close()
		break
	}
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}

	c := s.conn
	n := uint64(len(in.resolved))
	rows, distinct := count(t, c, "SELECT count() FROM events"), count(t, c, "SELECT uniqExact(message_id) FROM events")
	if rows != n || distinct != n {
		t.Errorf("events: %d rows, %d distinct messages, want %d exactly once", rows, distinct, n)
	}
	if d := diffCounts(in.perProf, perProfile(t, c)); len(d) > 0 {
		t.Errorf("%d profiles' event counts differ, e.g. %v", len(d), d[:min(5, len(d))])
	}
	for _, q := range []struct {
		what, sql string
		want      int
	}{
		{"orders", "SELECT count() FROM orders", in.orders},
		{"distinct orders", "SELECT uniqExact(order_id) FROM orders", in.orders},
		{"order lines", "SELECT count() FROM order_lines", in.lines},
		{"membership changes", "SELECT count() FROM segment_membership_changes", len(changes)},
		{"distinct membership changes", "SELECT uniqExact(topic, partition, offset) FROM segment_membership_changes", len(changes)},
		{"events per minute (rollup)", "SELECT sum(events) FROM events_per_minute", int(n)},
		{"orders per day (rollup)", "SELECT sum(orders) FROM revenue_daily", in.orders},
	} {
		if got := count(t, c, q.sql); got != uint64(q.want) {
			t.Errorf("%s: %d, want %d", q.what, got, q.want)
		}
	}
	b, _ := os.ReadFile(logs)
	t.Logf("%d runs, %d SIGKILLs, %d restarts of an exited ClickHouse engine: %d events, %d orders, %d lines, %d membership changes, each exactly once; "+
		"%d task openings found rows of a batch inserted but not committed before a kill",
		runs, kills, engineExits, n, in.orders, in.lines, len(changes), strings.Count(string(b), "rows of an uncommitted batch are in ClickHouse"))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHealthy waits until a `cdp run` process serves /healthz: SIGTERM
// before it installed its handler would kill it outright.
func waitHealthy(t *testing.T, addr string) {
	t.Helper()
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if i > 1500 {
			t.Fatalf("cdp run never served /healthz on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
