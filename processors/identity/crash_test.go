package identity_test

import (
	"math/rand/v2"
	"slices"
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
	t.Parallel() // its own Redis; overlaps the other parallel tests' waits
	crashRestartEqualsUninterrupted(t, testkit.StartRedisCluster(t, 3).URL())
}

func crashRestartEqualsUninterrupted(t *testing.T, redisURL string) {
	testkit.CDPBinary(t) // now, not after the uninterrupted run: fails at once without the binary
	cfg := generate.DefaultConfig()
	// Enough for eight chunks of over a thousand events: each kill lands
	// in a transaction with work.
	cfg.Persons, cfg.Events, cfg.Seed = 400, 16000, 11
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
	kills := testkit.CrashLoop{
		Args: []string{"run", "identity"}, Env: crash.env.ProcessEnv(),
		Progress: func() int64 { return crash.committedTotal(t, adm) }, Total: total,
		Feed:  feed,
		Pause: func(int) time.Duration { return time.Duration(rng.IntN(50)) * time.Millisecond },
		Finish: func() {
			for fed < len(lines) {
				feed()
			}
			crash.waitConsumed(t, 2*time.Minute)
		},
	}.Run(t)
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
	t.Logf("%d runs, %d SIGKILLs: %d resolved messages and %d identifiers identical to the uninterrupted run", kills+1, kills, len(got), len(a))
}
