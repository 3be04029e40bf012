package segments

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
	fdef "github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/features/reference"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
	"github.com/streamcdp/streamcdp/schemas"
)

// refProfile is one profile in the reference: every event it has (its own
// and those of the profiles merged into it), its memberships and the
// changes they went through.
type refProfile struct {
	events     []reference.Event
	mergedInto string
	members    map[string]bool
	changes    []change
}

// refModel computes membership changes from the event log and the
// simulated clock alone: at every moment a profile's values may change (an
// event or a merge applied at the clock's time, or a window boundary one
// of its events crosses), it evaluates every condition on values computed
// by the brute-force feature reference, and records each flip.
type refModel struct {
	fset     *fdef.Set
	rules    *rules.Set
	profiles map[string]*refProfile
}

func (m *refModel) profile(id string) *refProfile {
	p := m.profiles[id]
	if p == nil {
		p = &refProfile{members: map[string]bool{}}
		m.profiles[id] = p
	}
	return p
}

func (m *refModel) eval(id string, t int64, reason string) {
	p := m.profile(id)
	env := map[string]any{"params": m.rules.Params}
	if m.rules.Params == nil {
		env["params"] = map[string]float64{}
	}
	for _, name := range m.rules.Features {
		f := m.fset.Features[m.fset.Index(name)]
		env[name] = rules.Value(f.Agg, reference.Value(f, p.events, t))
	}
	traits := map[string]any{}
	for k, raw := range reference.Traits(p.events) {
		var x any
		if json.Unmarshal([]byte(raw), &x) != nil {
			x = raw
		}
		traits[k] = x
	}
	env["traits"] = traits
	for _, seg := range m.rules.Segments {
		in, _ := seg.Eval(env)
		if in != p.members[seg.Name] {
			status := "exited"
			if in {
				status = "entered"
				p.members[seg.Name] = true
			} else {
				delete(p.members, seg.Name)
			}
			p.changes = append(p.changes, change{Segment: seg.Name, Status: status, Time: t, Reason: reason})
		}
	}
}

func (m *refModel) apply(id string, e reference.Event, t int64) {
	p := m.profile(id)
	p.events = append(p.events, e)
	m.eval(id, t, "condition")
}

func (m *refModel) merge(from, into string, t int64) {
	l := m.profile(from)
	names := make([]string, 0, len(l.members))
	for s := range l.members {
		names = append(names, s)
	}
	slices.Sort(names)
	for _, s := range names {
		l.changes = append(l.changes, change{Segment: s, Status: "exited", Time: t, Reason: "merged into " + into})
	}
	l.members = map[string]bool{}
	l.mergedInto = into
	s := m.profile(into)
	s.events = append(s.events, l.events...)
	if len(s.events) > 0 { // a profile without events has no values to change
		m.eval(into, t, "condition")
	}
}

// advance evaluates every profile at each window boundary its events cross
// in (from, to].
func (m *refModel) advance(from, to int64) {
	for id, p := range m.profiles {
		if p.mergedInto != "" {
			continue
		}
		var at []int64
		for _, e := range p.events {
			for _, f := range m.fset.Features {
				if f.Lifetime() {
					continue
				}
				var env *fdef.PredicateEnv
				if ok, _ := f.Matches(&e.Ev, &env); !ok {
					continue
				}
				b := f.Bucket
				idx := e.T / b
				if e.T%b != 0 && e.T < 0 {
					idx--
				}
				if x := (idx+1)*b + f.WindowMs(); x > from && x <= to {
					at = append(at, x)
				}
			}
		}
		slices.Sort(at)
		for _, x := range slices.Compact(at) {
			m.eval(id, x, "condition")
		}
	}
}

// segEvent is a random event of a person at time at.
func segEvent(r *rand.Rand, person int, at time.Time) schemas.Event {
	ev := schemas.Event{MessageID: fmt.Sprintf("m%d-%d", person, r.Int64()), AnonymousID: "a"}
	switch k := r.IntN(20); {
	case k < 6:
		ev.Type, ev.Name = schemas.Page, "Home"
	case k < 9:
		ev.Type, ev.Event = schemas.Track, "Product Viewed"
		ev.Commerce = &schemas.Commerce{ProductID: "P" + strconv.Itoa(r.IntN(9)), Category: "C" + strconv.Itoa(r.IntN(4))}
	case k < 12:
		ev.Type, ev.Event = schemas.Track, "Product Added"
		ev.Commerce = &schemas.Commerce{ProductID: "P" + strconv.Itoa(r.IntN(9)), Category: "C" + strconv.Itoa(r.IntN(4))}
	case k < 13:
		ev.Type, ev.Event = schemas.Track, "Checkout Started"
	case k < 16:
		rev := float64(10 + r.IntN(390))
		ev.Type, ev.Event = schemas.Track, "Order Completed"
		ev.Commerce = &schemas.Commerce{Revenue: &rev, Products: []schemas.Product{{ProductID: "P1", Category: "C" + strconv.Itoa(r.IntN(4))}}}
	default:
		ev.Type = schemas.Identify
		plan := []string{`"free"`, `"pro"`, `null`}[r.IntN(3)]
		ev.Traits = map[string]json.RawMessage{"plan": json.RawMessage(plan),
			"email": json.RawMessage(strconv.Quote(fmt.Sprintf("p%d@example.org", person)))}
		if r.IntN(2) == 0 {
			ev.UserID = fmt.Sprintf("user-%d", person)
		}
	}
	_ = at
	return ev
}

// Random streams of events (late, out of order and duplicated), identifies with
// conflicting traits and merges, with a simulated clock moving from minutes
// to months at a time, through the features and segments processors over
// Kafka and Redis: every profile's membership changes (segment, entered or
// exited, time, order) and final memberships equal a brute-force reference
// computed from the event log and the clock alone.
func TestMembershipMatchesReference(t *testing.T) {
	fspec, sspec := defaultSpecs(t)
	sspec.Definitions = append(slices.Clone(sspec.Definitions),
		rules.SegmentSpec{Name: "pro_browsers", Condition: `traits.plan == "pro" && page_views_24h >= 2`, Activation: []string{"email"}})
	clk := &clock{}
	base := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	clk.Set(base)
	pl := newPipeline(t, fspec, sspec, clk)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 9))

	model := &refModel{fset: pl.fset, rules: pl.rules, profiles: map[string]*refProfile{}}
	stopS := pl.startSegments(t)
	defer stopS()
	pl.settle(t) // the initial backfill of an empty store
	stopF := pl.startFeatures(t)
	defer stopF()

	// Persons with 1-3 profiles; merges join them leaf by leaf.
	const persons = 50
	ids := make([][]string, persons)
	parent := map[string]string{}
	for i := range ids {
		for j := range 1 + r.IntN(3) {
			id := fmt.Sprintf("%s-%d-%d", pl.env.ID, i, j)
			ids[i] = append(ids[i], id)
			if j > 0 {
				parent[id] = ids[i][r.IntN(j)]
			}
		}
	}
	merged := map[string]bool{}
	current := func(id string) string { // where identity sends it now
		for merged[id] {
			id = parent[id]
		}
		return id
	}
	steps := []time.Duration{30 * time.Minute, 5 * time.Hour, 26 * time.Hour, 3 * 24 * time.Hour, 20 * 24 * time.Hour, 45 * 24 * time.Hour, 100 * 24 * time.Hour}
	events, merges := 0, 0
	for phase := range 9 {
		now := clk.Now()
		// Events: some persons act, a few with late events.
		var recs []*kgo.Record
		for i := range persons {
			if r.IntN(3) == 0 {
				continue
			}
			for range 1 + r.IntN(3) {
				at := now.Add(-time.Duration(r.Int64N(int64(2 * time.Hour))))
				if r.IntN(5) == 0 {
					at = now.Add(-time.Duration(r.Int64N(int64(10 * 24 * time.Hour)))) // late
				}
				at = at.Truncate(time.Millisecond)
				id := current(ids[i][r.IntN(len(ids[i]))])
				ev := segEvent(r, i, at)
				recs = append(recs, pl.eventRecord(t, id, ev, at))
				model.apply(id, reference.Event{Ev: ev, T: at.UnixMilli()}, now.UnixMilli())
				events++
				if r.IntN(10) == 0 {
					// A duplicate that escaped identity's dedup window (a
					// redelivery days later): it counts again, in both.
					recs = append(recs, pl.eventRecord(t, id, ev, at))
					model.apply(id, reference.Event{Ev: ev, T: at.UnixMilli()}, now.UnixMilli())
					events++
				}
			}
		}
		pl.produce(t, recs)
		pl.settle(t)
		// Merges: a leaf into its parent, at most one into each survivor.
		if phase%3 == 1 {
			recs = recs[:0]
			into := map[string]bool{}
			for _, person := range ids {
				for _, id := range person[1:] {
					isLeaf := true
					for _, other := range person {
						if parent[other] == id && !merged[other] {
							isLeaf = false
						}
					}
					p := current(parent[id])
					if merged[id] || !isLeaf || into[p] || r.IntN(2) == 0 {
						continue
					}
					into[p] = true
					merged[id] = true
					recs = append(recs, pl.mergeRecord(t, id, p))
					model.merge(id, p, now.UnixMilli())
					merges++
				}
			}
			pl.produce(t, recs)
			pl.settle(t)
		}
		// Time passes: windows fall.
		next := now.Add(steps[r.IntN(len(steps))])
		model.advance(now.UnixMilli(), next.UnixMilli())
		clk.Set(next)
		pl.settle(t)
	}

	for _, rec := range pl.env.ReadAll(t, pl.dlqT) {
		var hs []string
		for _, h := range rec.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		t.Errorf("dead letter keyed %q: %v", rec.Key, hs)
	}
	got := pl.memberships(t)
	rd := pl.redis(t)
	ctx := testkit.Context(t)
	total := 0
	for id, p := range model.profiles {
		g := got[id]
		if len(g) != len(p.changes) {
			t.Fatalf("%s: %d membership changes, reference %d\ngot  %v\nwant %v\nits profile changes: %s", id, len(g), len(p.changes), g, p.changes, pl.profileChanges(t, id))
		}
		for i, want := range p.changes {
			c := g[i]
			if c.Segment != want.Segment || c.Status != want.Status || c.Time != want.Time {
				t.Fatalf("%s change %d: %v, reference %v\ngot  %v\nwant %v\nits profile changes: %s\nits events: %s", id, i, c, want, g, p.changes, pl.profileChanges(t, id), eventTimes(p.events))
			}
			if want.Reason != "condition" && c.Reason != want.Reason {
				t.Fatalf("%s change %d: reason %q, want %q", id, i, c.Reason, want.Reason)
			}
		}
		total += len(g)
		if p.mergedInto != "" {
			continue
		}
		ms, _, err := rd.Members(ctx, id)
		if err != nil && len(p.members) > 0 {
			t.Fatalf("%s: %v", id, err)
		}
		var names []string
		for _, m := range ms {
			names = append(names, m.Segment)
		}
		var want []string
		for s := range p.members {
			want = append(want, s)
		}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Fatalf("%s: members %v, reference %v", id, names, want)
		}
	}
	// The pipelined read, every profile in one pipeline, answers what
	// Members answers, merged-away profiles followed to their survivor.
	pipe := rd.rdb.Pipeline()
	queued := map[string]func() ([]Membership, string, error){}
	for id := range model.profiles {
		queued[id] = rd.QueueMembers(ctx, pipe, id)
	}
	_, _ = pipe.Exec(ctx) // a profile without memberships state is a redis.Nil here
	followed := 0
	for id, q := range queued {
		ms, into, err := q()
		wms, winto, werr := rd.Members(ctx, id)
		if !reflect.DeepEqual(ms, wms) || into != winto || (err == nil) != (werr == nil) || errors.Is(err, ErrNotFound) != errors.Is(werr, ErrNotFound) {
			t.Fatalf("QueueMembers(%s) = %v %s %v; Members = %v %s %v", id, ms, into, err, wms, winto, werr)
		}
		if into != id {
			followed++
		}
	}
	t.Logf("pipelined reads of %d profiles, %d of them followed to their survivor", len(queued), followed)

	for id := range got {
		if model.profiles[id] == nil {
			t.Fatalf("membership changes for %s, which the reference never saw", id)
		}
	}
	sizes, err := rd.Sizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantSizes := map[string]int64{}
	for _, p := range model.profiles {
		for s := range p.members {
			wantSizes[s]++
		}
	}
	for _, seg := range pl.rules.Segments {
		if sizes[seg.Name] != wantSizes[seg.Name] {
			t.Errorf("size of %s: %d, reference %d", seg.Name, sizes[seg.Name], wantSizes[seg.Name])
		}
	}
	t.Logf("%d events, %d merges, 9 phases of time: %d membership changes of %d profiles equal to the reference; sizes %v",
		events, merges, total, len(model.profiles), wantSizes)
}

func eventTimes(evs []reference.Event) string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s%s@%s", e.Ev.MessageID, e.Ev.Type, e.Ev.Event, time.UnixMilli(e.T).UTC().Format(time.RFC3339)))
	}
	return fmt.Sprint(out)
}
