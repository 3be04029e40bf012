package identity

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/generate"
)

// jsonEvent is the part of docs/EVENT_JSON.md identity resolution reads.
type jsonEvent struct {
	MessageID   string `json:"messageId"`
	UserID      string `json:"userId"`
	AnonymousID string `json:"anonymousId"`
	Timestamp   string `json:"timestamp"`
	Traits      *struct{ Email, Phone string }
	Context     *struct {
		Device *struct{ ID string }
		Traits *struct{ Email, Phone string }
	}
}

func (e *jsonEvent) input(offset int64) Input {
	in := Input{MessageID: e.MessageID, Offset: offset}
	in.Time, _ = time.Parse(time.RFC3339Nano, e.Timestamp)
	add := func(typ, v string) {
		if v != "" {
			in.Identifiers = append(in.Identifiers, Identifier{typ, v})
		}
	}
	add(TypeUserID, e.UserID)
	add(TypeAnonymousID, e.AnonymousID)
	if e.Traits != nil {
		add(TypeEmail, e.Traits.Email)
		add(TypePhone, e.Traits.Phone)
	}
	if e.Context != nil {
		if e.Context.Device != nil {
			add(TypeDeviceID, e.Context.Device.ID)
		}
		if e.Context.Traits != nil {
			add(TypeEmail, e.Context.Traits.Email)
			add(TypePhone, e.Context.Traits.Phone)
		}
	}
	return in
}

// TestGeneratedTrafficMatchesTruth resolves `cdp generate` traffic (the
// valid lines; the runtime sends invalid ones to the dead-letter topic) and
// scores the grouping against the truth's knowable groups by pairwise
// precision and recall. With shared devices the knowable groups join two
// people whose user ids differ, which merge protection refuses: recall is
// then below 1 by design, so only logged.
func TestGeneratedTrafficMatchesTruth(t *testing.T) {
	for _, shared := range []float64{0, 0.05} {
		f := newFixture(t)
		cfg := generate.DefaultConfig()
		cfg.Events = 15000
		cfg.DupShare, cfg.InvalidShare, cfg.LateShare, cfg.SharedDeviceShare = 0.02, 0.01, 0.02, shared
		var lines [][]byte
		truth, err := generate.Generate(f.ctx, cfg, generate.SinkFunc(func(_ context.Context, l []byte) error {
			lines = append(lines, append([]byte(nil), l...))
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		invalid := map[string]bool{}
		for _, e := range truth.InvalidEvents {
			invalid[e.MessageID] = true
		}
		var batch []Input
		dups := 0
		flush := func() {
			res := f.resolve(f.g, batch...)
			for _, r := range res {
				if r.Duplicate {
					dups++
				} else if r.ProfileID == "" {
					t.Fatalf("a valid event got no profile: %+v", r)
				}
			}
			batch = batch[:0]
		}
		for _, l := range lines {
			var e jsonEvent
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatalf("generated line %s: %v", l, err)
			}
			if !invalid[e.MessageID] {
				batch = append(batch, e.input(int64(len(batch))+f.off))
				if len(batch) == 500 {
					f.off += 500
					flush()
				}
			}
		}
		f.off += int64(len(batch))
		flush()

		// Pairwise scores from the contingency of (profile, truth group).
		pairs := func(n int64) int64 { return n * (n - 1) / 2 }
		var truthPairs, predPairs, both int64
		cells := map[[2]string]int64{}
		sizes := map[string]int64{}
		for gi, grp := range truth.KnowableGroups {
			keys := grp.Identifiers.Keys()
			truthPairs += pairs(int64(len(keys)))
			for _, k := range keys {
				typ, val, _ := strings.Cut(k, ":")
				p := f.lookup(f.g, typ, val)
				if p == "" {
					t.Fatalf("identifier %s has no profile", k)
				}
				cells[[2]string{p, strconv.Itoa(gi)}]++
				sizes[p]++
			}
		}
		for _, n := range sizes {
			predPairs += pairs(n)
		}
		for _, n := range cells {
			both += pairs(n)
		}
		precision, recall := float64(both)/float64(predPairs), float64(both)/float64(truthPairs)
		st, err := f.g.Stats(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("shared devices %.0f%%: %d lines, %d duplicates flagged (truth %d), %d profiles, %d knowable groups: pairwise precision %.4f, recall %.4f",
			100*shared, len(lines), dups, truth.Counts.Duplicates, st.Profiles, len(truth.KnowableGroups), precision, recall)
		if dups != truth.Counts.Duplicates {
			t.Errorf("flagged %d duplicates, the truth has %d", dups, truth.Counts.Duplicates)
		}
		if precision < 0.99 || (shared == 0 && recall < 0.99) {
			t.Errorf("precision %.4f recall %.4f, want at least 0.99", precision, recall)
		}
	}
}
