package identity

import (
	"fmt"
	"testing"
)

// TestProfileSizeCapStopsAFlood: a producer that sends a fresh anonymous id
// with one user id on every event (100k events) grows the profile to the
// cap and no further; every identifier past it is refused with rule
// profile_size. A merge that would pass the cap is refused too, and the
// largest merge the cap allows is timed in Redis.
func TestProfileSizeCapStopsAFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("resolves 100k events")
	}
	f := newFixture(t)
	const flood = 100_000
	refused := 0
	var profile string
	for start := 0; start < flood; start += 500 {
		batch := make([]Input, 0, 500)
		for i := start; i < start+500; i++ {
			batch = append(batch, f.ev(fmt.Sprint("flood-", i), "user_id=u-flood", fmt.Sprintf("anonymous_id=anon-%d", i)))
		}
		for _, r := range f.resolve(f.g, batch...) {
			profile = r.ProfileID
			for _, rej := range r.Rejected {
				if rej.Rule != RuleProfileSize {
					t.Fatalf("rejection %+v, want %s", rej, RuleProfileSize)
				}
				refused++
			}
		}
	}
	_, ids, err := f.g.Profile(f.ctx, profile)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != DefaultMaxIdentifiers {
		t.Errorf("the flooded profile holds %d identifiers, want the cap %d", len(ids), DefaultMaxIdentifiers)
	}
	if want := flood - (DefaultMaxIdentifiers - 1); refused != want {
		t.Errorf("%d anonymous ids refused, want %d", refused, want)
	}

	// Two profiles of 600 identifiers: linking them would pass the cap.
	grow := func(user string, n int) string {
		batch := []Input{}
		for i := range n - 1 {
			batch = append(batch, f.ev(fmt.Sprint(user, "-", i), "user_id="+user, fmt.Sprintf("device_id=%s-dev-%d", user, i)))
		}
		return f.resolve(f.g, batch...)[0].ProfileID
	}
	a, b := grow("ua", 600), grow("ub", 600)
	r := f.one("link-ab", "device_id=ua-dev-1", "device_id=ub-dev-1")
	if r.ProfileID != a || len(r.Merges) != 0 || len(r.Rejected) != 1 || r.Rejected[0].Rule != RuleProfileSize {
		t.Fatalf("linking two profiles of 600: %+v; want no merge and a %s rejection", r, RuleProfileSize)
	}
	if got := f.lookup(f.g, "device_id", "ub-dev-1"); got != b {
		t.Fatalf("ub-dev-1 moved to %s", got)
	}

	// The largest merge the cap allows: a profile of one identifier
	// absorbing a younger one of 999 (the younger is the one moved).
	c := f.one("c-0", "user_id=uc").ProfileID
	growAnon := func(dev string, n int) {
		batch := []Input{}
		for i := range n - 1 {
			batch = append(batch, f.ev(fmt.Sprint(dev, "-", i), "device_id="+dev, fmt.Sprintf("anonymous_id=%s-anon-%d", dev, i)))
		}
		f.resolve(f.g, batch...)
	}
	growAnon("bot", DefaultMaxIdentifiers-1)
	before := evalshaUsec(t, f.rdb)
	r = f.one("link-c-bot", "user_id=uc", "device_id=bot")
	took := evalshaUsec(t, f.rdb) - before
	if r.ProfileID != c || len(r.Merges) != 1 || len(r.Merges[0].Moved) != DefaultMaxIdentifiers-1 {
		t.Fatalf("merge of a profile of %d into one of 1: %+v", DefaultMaxIdentifiers-1, r)
	}
	t.Logf("the flood stopped at %d identifiers (%d refused); the largest merge the cap allows (%d identifiers moved) took %d µs of script time in Redis",
		len(ids), refused, DefaultMaxIdentifiers-1, took)
}

// TestDedupKeysStayBounded resolves 1M events of one dedup window: the
// bucket's keys split as it grows (resolve.lua), so no key may hold more
// than a few thousand message ids (at most about twice DedupKeyIDs, 2,000)
// and no expiry frees a large one; the keys must hold what the layout
// says. It reports the dedup memory per event, the figure the sizing in
// doc.go is computed from.
func TestDedupKeysStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("resolves 1M events")
	}
	t.Parallel() // its own key prefix; measures keys, not the server
	f := newFixture(t, WithChunkSize(1000))
	const events = 1_000_000
	batch := make([]Input, 0, 5000)
	for i := range events {
		in := f.ev(fmt.Sprint("m-", i), fmt.Sprintf("user_id=u-%d", i%20000))
		in.Time = f.t0 // one window
		batch = append(batch, in)
		if len(batch) == cap(batch) {
			f.resolve(f.g, batch...)
			batch = batch[:0]
		}
	}
	keys, largest := checkDedupLayout(t, f.ctx, f.rdb, f.prefix+"{default}:")
	// 1M ids at 2,000 a key: 500 keys, level 8 with 244 of 256 split.
	if keys < 450 || keys > 550 {
		t.Errorf("1M ids in %d dedup keys, want about 500", keys)
	}
	if largest > 4500 {
		t.Errorf("a dedup key holds %d message ids, want at most 4,500 (about 3,900 expected in the keys not yet split)", largest)
	}
	mem := memoryUsage(t, f.ctx, f.rdb, f.prefix+"{default}:")
	t.Logf("1M events over %d dedup keys: largest %d ids; dedup memory %.1f B per event", keys, largest, float64(mem['h']+mem['g'])/events)
}
