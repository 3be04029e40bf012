package features

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/topology"
)

// committed is how many input records (resolved and fold) the group has
// committed.
func (s *stage) committed(t testing.TB, adm *kadm.Client) int64 {
	t.Helper()
	committed, err := adm.FetchOffsets(testkit.Context(t), s.group)
	if err != nil {
		return 0
	}
	var n int64
	committed.Each(func(o kadm.OffsetResponse) {
		if (o.Topic == s.resolved || o.Topic == s.fold) && o.At > 0 {
			n += o.At
		}
	})
	return n
}

func defaultSet(t testing.TB) *definition.Set {
	t.Helper()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	set, err := definition.Compile(topo.Features)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestCrashRestartEqualsUninterrupted feeds the same records (resolved
// events and merges, shuffled together) to two runs: one uninterrupted
// processor in this process, and a `cdp run features` process SIGKILLed at
// random moments at least five times and restarted. Both must end with the
// same state in Redis (every profile's features and traits at several read
// times, tombstones) equal to the reference's, and changes a consumer can
// rely on: every profile's versions exactly once, each continuing the one
// before.
func TestCrashRestartEqualsUninterrupted(t *testing.T) {
	testkit.CDPBinary(t) // now, not after the uninterrupted run: fails at once without the binary
	set := defaultSet(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	base := time.Now().Truncate(time.Millisecond)

	// The topology's partition counts: the child process checks them.
	ref := newStage(t, 6, set)
	crash := newStage(t, 6, set)
	// Both runs get the same records in the same order.
	persons := genPersons(rand.New(rand.NewPCG(seed, 3)), "c", 700, base)
	refRecs := ref.streamRecords(t, rand.New(rand.NewPCG(seed, 4)), persons)
	recs := crash.streamRecords(t, rand.New(rand.NewPCG(seed, 4)), persons)
	ref.produce(t, refRecs)
	stop := ref.start(t, 1)
	ref.waitDone(t, 3*time.Minute)
	stop()

	// The crashed run gets them in chunks, one before each kill, so that
	// every kill lands while there is work in flight.
	const chunks = 8
	chunk := (len(recs) + chunks - 1) / chunks
	fed := 0
	feed := func() {
		if fed < len(recs) {
			end := min(len(recs), fed+chunk)
			crash.produce(t, recs[fed:end])
			fed = end
		}
	}
	adm := crash.env.Admin(t)
	rng := rand.New(rand.NewPCG(seed, 5))
	kills := testkit.CrashLoop{
		Args: []string{"run", "features"}, Env: crash.env.ProcessEnv(),
		Progress: func() int64 { return crash.committed(t, adm) },
		Feed:     feed,
		Pause:    func(int) time.Duration { return time.Duration(rng.IntN(60)) * time.Millisecond },
		Finish: func() {
			for fed < len(recs) {
				feed()
			}
			crash.waitDone(t, 3*time.Minute)
		},
	}.Run(t)
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}

	ctx := testkit.Context(t)
	ra, rb := ref.redis(t), crash.redis(t)
	e := ra.Engine()
	ca, cb := ref.changesByProfile(t), crash.changesByProfile(t)
	reads := []time.Duration{0, time.Hour, 3 * 24 * time.Hour, 45 * 24 * time.Hour}
	profiles := 0
	for _, p := range persons {
		for _, id := range p.ids {
			profiles++
			sa, ida, err := ra.State(ctx, id)
			if err != nil {
				t.Fatalf("%s uninterrupted: %v", id, err)
			}
			sb, idb, err := rb.State(ctx, id)
			if err != nil {
				t.Fatalf("%s after crashes: %v", id, err)
			}
			if ida != idb || ida != p.root {
				t.Fatalf("%s reads as %s uninterrupted, %s after crashes, want %s", id, ida, idb, p.root)
			}
			for _, dt := range reads {
				at := base.Add(dt).UnixMilli()
				if va, vb := e.Values(sa, at), e.Values(sb, at); !reflect.DeepEqual(va, vb) {
					t.Fatalf("%s at +%s: uninterrupted %v, after crashes %v", id, dt, va, vb)
				}
			}
			if !reflect.DeepEqual(sa.Traits, sb.Traits) {
				t.Fatalf("%s: traits %v uninterrupted, %v after crashes", id, sa.Traits, sb.Traits)
			}
		}
		checkAgainstReference(t, e, mustState(t, rb, p.root), p.events, "after crashes: "+p.root)
	}
	// Each run's changes: every version once, and each change's old values
	// are the previous change's new ones, ending at the profile's values.
	// (Which changes there are depends on when window expiries fired
	// relative to events, so the two runs' sequences may differ.)
	checkChain(t, ra, ca)
	total := checkChain(t, rb, cb)
	t.Logf("%d runs, %d SIGKILLs over %d records: %d profiles equal to the uninterrupted run; %d changes, each version once, each continuing the one before",
		kills+1, kills, len(recs), profiles, total)
}

func mustState(t *testing.T, r *Reader, id string) *State {
	t.Helper()
	st, _, err := r.State(testkit.Context(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
