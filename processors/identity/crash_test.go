package identity_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// committedTotal is how many raw records the identity group has committed.
func (s *stage) committedTotal(t testing.TB, adm *kadm.Client) int64 {
	t.Helper()
	committed, err := adm.FetchOffsets(testkit.Context(t), s.group)
	if err != nil {
		return 0
	}
	var n int64
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == s.raw && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// TestCrashRestartEqualsUninterrupted processes the same generated traffic
// twice: once with one uninterrupted identity processor (in this process),
// once with a `cdp run identity` process that is SIGKILLed at random moments
// at least five times and restarted each time. Both runs must end with the
// same identity graph and the same resolved topic: every valid message
// exactly once (read_committed), with the same profile id, and no other
// record. The raw topic has one partition so that both runs see the events
// in one order, which makes profile ids comparable one to one.
func TestCrashRestartEqualsUninterrupted(t *testing.T) { crashRestartEqualsUninterrupted(t, "") }

// TestCrashRestartOnRedisCluster is the same on a Redis Cluster of three
// redis-server processes.
func TestCrashRestartOnRedisCluster(t *testing.T) {
	crashRestartEqualsUninterrupted(t, testkit.StartRedisCluster(t, 3).URL())
}

func crashRestartEqualsUninterrupted(t *testing.T, redisURL string) {
	bin := testkit.CDPBinary(t)
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 600, 40000, 11
	cfg.DupShare, cfg.InvalidShare = 0.02, 0.01

	ref := newStageOn(t, 1, redisURL)
	_, truth := ref.produce(t, cfg)
	refProcs, stop := ref.start(t, 1)
	ref.waitConsumed(t, 2*time.Minute)
	stop()

	// The crashed run gets the same records in the same order, but in
	// chunks, one before each kill, so that every kill lands while there
	// is work in flight (a whole backlog is processed in a few seconds).
	crash := newStageOn(t, 1, redisURL)
	lines, _ := generateLines(t, cfg)
	const chunks = 8
	chunk := (len(lines) + chunks - 1) / chunks
	fed := 0
	feed := func() {
		if fed < len(lines) {
			end := min(len(lines), fed+chunk)
			crash.write(t, lines[fed:end])
			fed = end
		}
	}
	adm := crash.env.Admin(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	total := int64(len(truth.InvalidEvents) + truth.Counts.Valid + len(truth.DuplicateMessageIDs))
	logs := filepath.Join(t.TempDir(), "identity.log")
	kills, runs := 0, 0
	deadline := time.Now().Add(6 * time.Minute)
	for {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logs)
			t.Fatalf("gave up after %d runs and %d kills; the log ends:\n%s", runs, kills, testkit.Tail(string(b), 40))
		}
		logf, err := os.OpenFile(logs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		ops := testkit.FreeAddr(t)
		cmd := exec.Command(bin, "run", "identity", "--instance", "crash-test", "--metrics-addr", ops)
		cmd.Env, cmd.Stdout, cmd.Stderr = crash.env.ProcessEnv(), logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		runs++
		if kills < 6 {
			// Measured before feeding: a fast run may commit the whole chunk
			// before a later look.
			before := crash.committedTotal(t, adm)
			feed()
			// Kill once the process has made progress, at a random moment
			// within its batches, so every kill hits a different point of
			// the poll, apply, produce, commit cycle.
			for c := crash.committedTotal(t, adm); c == before && c < total && time.Since(deadline) < 0; c = crash.committedTotal(t, adm) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			logf.Close()
			kills++
			t.Logf("kill %d after %d of %d records committed", kills, crash.committedTotal(t, adm), total)
			continue
		}
		for fed < len(lines) {
			feed()
		}
		crash.waitConsumed(t, 2*time.Minute)
		// SIGTERM before the process installed its handler would kill it
		// outright: wait until it serves /healthz.
		testkit.WaitHealthy(t, ops)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b, _ := os.ReadFile(logs)
			t.Fatalf("cdp run identity after SIGTERM: %v\n%s", err, testkit.Tail(string(b), 30))
		}
		logf.Close()
		break
	}
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}

	want, got := ref.resolvedByMessage(t), crash.resolvedByMessage(t)
	if len(got) != truth.Counts.Valid || len(want) != truth.Counts.Valid {
		t.Errorf("resolved messages: crashed run %d, uninterrupted %d, truth %d valid", len(got), len(want), truth.Counts.Valid)
	}
	mismatches := 0
	for id, ps := range got {
		if len(ps) != 1 {
			t.Fatalf("message %s resolved %d times after crashes", id, len(ps))
		}
		if w := want[id]; len(w) != 1 || w[0] != ps[0] {
			mismatches++
			if mismatches <= 5 {
				t.Errorf("message %s: profile %s after crashes, %v uninterrupted", id, ps[0], w)
			}
		}
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("message %s missing after crashes", id)
		}
	}
	// Same graph: every identifier resolves to the same profile.
	crashGraph := openGraph(t, crash)
	a, b := grouping(t, refProcs[0].Graph(), truth), grouping(t, crashGraph, truth)
	for k, p := range a {
		if b[k] != p {
			t.Fatalf("identifier %s: profile %s uninterrupted, %s after crashes", k, p, b[k])
		}
	}
	if !slices.Equal(partitionOf(a), partitionOf(b)) {
		t.Errorf("groupings differ")
	}
	t.Logf("%d runs, %d SIGKILLs: %d resolved messages and %d identifiers identical to the uninterrupted run", runs, kills, len(got), len(a))
}
