package recommend

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/topology"
)

// topologyFile writes the default topology with refits every second, so
// the crashed run's scores settle within the test.
func topologyFile(t testing.TB) string {
	t.Helper()
	y := topology.DefaultYAML()
	fast := bytes.Replace(y, []byte("refit_interval: 1h"), []byte("refit_interval: 1s"), 1)
	if bytes.Equal(fast, y) {
		t.Fatal("the default topology has no `refit_interval: 1h` to shorten")
	}
	path := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(path, fast, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCrashRestartEqualsUninterrupted processes the same generated traffic
// twice: once with an uninterrupted processor in this process, once with a
// `cdp run recommend` process that is SIGKILLed at random moments at least
// five times while the input streams in, so that every kill lands with
// work in flight, and restarted each time. What is a function of each partition's
// input alone must be identical: the orders changelog (each order exactly
// once, with the same previous basket, session views and summary) and
// every profile's stored history, summary and session. What depends on the
// global models' timing (which lists and scores were emitted) must still
// be exactly-once: every profile's records carry versions 1..n without a
// gap or a repeat, the last one is what the read API returns, and the
// scores count the same orders and revenue as the uninterrupted run's.
func TestCrashRestartEqualsUninterrupted(t *testing.T) {
	t.Parallel()         // its own topics and keys; overlaps the cluster pipeline test
	testkit.CDPBinary(t) // now, not after the uninterrupted run: fails at once without the binary
	const partitions = 3
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 600, 30000, 11

	ref := newStage(t, partitions)
	recs, evs := ref.resolvedRecords(t, cfg)
	ref.write(t, recs)
	tr := newTruth(evs)
	_, stop := ref.start(t, 1, testConfig())
	ref.waitConsumed(t, 2*time.Minute)
	refRd := ref.reader(t, partitions)
	ref.waitSettled(t, tr, refRd, time.Minute)
	stop()

	crash := newStage(t, partitions)
	recs = crash.encode(t, evs)
	// The input arrives as a stream over the whole run (about 1,200
	// records/s for 25 s), so that every kill lands while records are
	// being processed, committed or replayed.
	feedCl := crash.env.Kafka(t, kgo.ProducerLinger(5*time.Millisecond))
	fedAll := make(chan error, 1)
	go func() {
		ctx := testkit.Context(t)
		for fed := 0; fed < len(recs); fed += 150 {
			if err := crash.writeWith(ctx, feedCl, recs[fed:min(len(recs), fed+150)]); err != nil {
				fedAll <- err
				return
			}
			time.Sleep(120 * time.Millisecond)
		}
		fedAll <- nil
	}()
	adm := crash.env.Admin(t)
	topo := topologyFile(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	total := int64(len(recs))
	rd := crash.reader(t, partitions)
	ctx := testkit.Context(t)
	kills := testkit.CrashLoop{
		Args: []string{"run", "recommend", "--topology", topo}, Env: crash.env.ProcessEnv(),
		Deadline: 4 * time.Minute,
		Progress: func() int64 { return testkit.Committed(t, adm, crash.group, crash.topics.Input) }, Total: total,
		// Every other run lives for seconds, past its ticks, so kills also
		// land in the sweeps that follow a refit.
		Pause: func(kill int) time.Duration {
			if kill%2 == 1 {
				return 2*time.Second + time.Duration(rng.IntN(4000))*time.Millisecond
			}
			return time.Duration(rng.IntN(400)) * time.Millisecond
		},
		Finish: func() {
			if err := <-fedAll; err != nil {
				t.Fatal(err)
			}
			crash.waitConsumed(t, 2*time.Minute)
			// Let a refit and its sweep score every buyer before stopping.
			crash.waitSettled(t, tr, rd, time.Minute)
		},
	}.Run(t)
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}

	// Deterministic: the changelog and the per-profile state.
	want, got := ref.orderRecords(t), crash.orderRecords(t)
	if len(got) != len(want) || len(want) != len(tr.orders) {
		t.Errorf("changelog: orders of %d profiles after crashes, %d uninterrupted, %d buyers", len(got), len(want), len(tr.orders))
	}
	orders := 0
	for p, w := range want {
		orders += len(w)
		if g := got[p]; !reflect.DeepEqual(g, w) {
			t.Errorf("profile %s: changelog after crashes\n%+v\nuninterrupted\n%+v", p, g, w)
		}
	}
	if orders != tr.total {
		t.Errorf("the uninterrupted changelog has %d orders, the input %d", orders, tr.total)
	}
	for _, suffix := range []string{keyHistory, keyViews} {
		a, b := ref.hashes(t, suffix, partitions), crash.hashes(t, suffix, partitions)
		if len(a) != len(b) {
			t.Errorf("%s: %d profiles after crashes, %d uninterrupted", suffix, len(b), len(a))
		}
		for p, v := range a {
			if b[p] != v {
				t.Errorf("%s of %s after crashes:\n%s\nuninterrupted:\n%s", suffix, p, b[p], v)
			}
		}
	}

	// Exactly once, whatever the models' timing.
	lists := crash.lists(t)
	checkVersions(t, "recommendations", lists, func(l List) int64 { return l.Version })
	for p := range tr.touched {
		stored, err := rd.Recommendations(ctx, p)
		ls := lists[p]
		switch {
		case err != nil:
			t.Fatal(err)
		case stored == nil || len(ls) == 0:
			t.Errorf("profile %s has no list after crashes", p)
		case stored.Version != ls[len(ls)-1].Version || !sameItems(stored.Items, ls[len(ls)-1].Items):
			t.Errorf("profile %s: stored list v%d, last emitted v%d", p, stored.Version, ls[len(ls)-1].Version)
		}
	}
	scores := crash.scoreRecords(t)
	checkVersions(t, "scores", scores, func(s Scores) int64 { return s.Version })
	for p := range tr.orders {
		a, err := refRd.Scores(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := rd.Scores(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		ss := scores[p]
		switch {
		case a == nil || b == nil || len(ss) == 0:
			t.Errorf("profile %s: scores uninterrupted %v, after crashes %v (%d records)", p, a, b, len(ss))
		case b.Version != ss[len(ss)-1].Version:
			t.Errorf("profile %s: stored scores v%d, last emitted v%d", p, b.Version, ss[len(ss)-1].Version)
		case a.Orders != b.Orders || a.Revenue != b.Revenue || !a.FirstOrder.Equal(b.FirstOrder) || !a.LastOrder.Equal(b.LastOrder):
			t.Errorf("profile %s: %d orders worth %.2f after crashes, %d worth %.2f uninterrupted", p, b.Orders, b.Revenue, a.Orders, a.Revenue)
		}
	}
	t.Logf("%d runs, %d SIGKILLs: %d orders of %d buyers and %d profiles' state identical to the uninterrupted run; %d lists and %d scores records exactly once",
		kills+1, kills, orders, len(want), len(tr.touched), count(lists), count(scores))
}

func count[T any](m map[string][]T) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}
