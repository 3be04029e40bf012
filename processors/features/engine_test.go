package features

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/features/reference"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// testSet is the default topology's features plus one of every other
// aggregation, so every code path meets the reference.
func testSet(t testing.TB) *definition.Set {
	t.Helper()
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	spec := topo.Features
	spec.Definitions = append(slices.Clone(spec.Definitions),
		definition.FeatureSpec{Name: "min_price_7d", Type: "track", Agg: "min", Field: "product.price", Window: "7d"},
		definition.FeatureSpec{Name: "max_price", Type: "track", Agg: "max", Field: "product.price"},
		definition.FeatureSpec{Name: "first_category", Agg: "first", Field: "product.category"},
		definition.FeatureSpec{Name: "last_category_24h", Agg: "last", Field: "product.category", Window: "24h"},
		definition.FeatureSpec{Name: "items_ordered_30d", Type: "track", Events: []string{"Order Completed"}, Agg: "count", Field: "products.product_id", Window: "30d", Buckets: 30},
		definition.FeatureSpec{Name: "big_orders_15m", Type: "track", Events: []string{"Order Completed"}, Where: "properties.revenue >= 50", Agg: "count", Window: "15m"},
		definition.FeatureSpec{Name: "first_seen_1h", Agg: "first_seen", Window: "1h"},
		definition.FeatureSpec{Name: "plan", Agg: "last", Field: "traits.plan"},
	)
	set, err := definition.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

var (
	testCategories = []string{"Kitchen", "Garden", "Toys", "Lighting", "Gifts", "Bags"}
	testPlans      = []string{`"free"`, `"pro"`, `"team"`, `null`}
)

// randomEvent makes an event of a customer around base: page views,
// product views and adds, checkouts, orders with products, identifies with
// conflicting traits, and track events carrying context traits. Times
// spread over ±120 days, so windows, lateness and order all matter.
func randomEvent(r *rand.Rand, id int, base time.Time) reference.Event {
	ev := schemas.Event{MessageID: fmt.Sprintf("m-%d-%d", id, r.IntN(1<<30)), AnonymousID: "a"}
	var at time.Time
	switch r.IntN(4) {
	case 0: // a burst within the last hour
		at = base.Add(-time.Duration(r.Int64N(int64(time.Hour))))
	case 1: // the last days
		at = base.Add(-time.Duration(r.Int64N(int64(72 * time.Hour))))
	default: // anywhere in four months
		at = base.Add(-time.Duration(r.Int64N(int64(120 * 24 * time.Hour))))
	}
	at = at.Truncate(time.Millisecond)
	product := func() schemas.Product {
		price := float64(r.IntN(20000)) / 100
		q := int64(1 + r.IntN(3))
		return schemas.Product{ProductID: "P" + strconv.Itoa(r.IntN(12)), Category: testCategories[r.IntN(len(testCategories))], Price: &price, Quantity: &q}
	}
	switch k := r.IntN(10); {
	case k < 3:
		ev.Type = schemas.Page
		ev.Name = "Home"
	case k < 5:
		ev.Type, ev.Event = schemas.Track, "Product Viewed"
		p := product()
		ev.Commerce = &schemas.Commerce{ProductID: p.ProductID, Category: p.Category, Price: p.Price}
	case k < 6:
		ev.Type, ev.Event = schemas.Track, "Product Added"
		p := product()
		ev.Commerce = &schemas.Commerce{ProductID: p.ProductID, Category: p.Category, Price: p.Price, Quantity: p.Quantity}
	case k < 7:
		ev.Type, ev.Event = schemas.Track, "Checkout Started"
	case k < 8:
		ev.Type, ev.Event = schemas.Track, "Order Completed"
		rev := float64(r.IntN(30000)) / 100
		ev.Commerce = &schemas.Commerce{OrderID: "o" + strconv.Itoa(r.IntN(1e6)), Revenue: &rev}
		for range 1 + r.IntN(3) {
			ev.Commerce.Products = append(ev.Commerce.Products, product())
		}
	default:
		ev.Type = schemas.Identify
		ev.Traits = map[string]json.RawMessage{"plan": json.RawMessage(testPlans[r.IntN(len(testPlans))])}
		if r.IntN(2) == 0 {
			ev.Traits["email"] = json.RawMessage(strconv.Quote(fmt.Sprintf("c%d-%d@example.org", id, r.IntN(3))))
		}
	}
	if r.IntN(5) == 0 {
		ev.Context.Traits = map[string]json.RawMessage{"plan": json.RawMessage(testPlans[r.IntN(len(testPlans))])}
	}
	return reference.Event{Ev: ev, T: at.UnixMilli()}
}

// mirror is what a consumer of the changes holds: every feature's value as
// the changes say. After each change it must equal the profile's values at
// its Clock.
type mirror struct {
	vals   []definition.Value
	traits map[string]string
}

func newMirror(set *definition.Set) *mirror {
	m := &mirror{vals: make([]definition.Value, len(set.Features)), traits: map[string]string{}}
	for i, f := range set.Features {
		switch f.Agg {
		case definition.Count, definition.Sum, definition.Distinct:
			m.vals[i] = definition.Num(0)
		}
	}
	return m
}

func (m *mirror) apply(t *testing.T, ch Change, e *Engine, st *State) {
	t.Helper()
	m.take(t, ch, e)
	if ch.Time != st.Clock {
		t.Fatalf("change at %d, profile clock %d", ch.Time, st.Clock)
	}
	if got := e.Values(st, st.Clock); !slices.Equal(got, m.vals) {
		t.Fatalf("after a change the consumer holds %v, the profile has %v", m.vals, got)
	}
}

// take applies ch without comparing with the profile (changes that are not
// the profile's last).
func (m *mirror) take(t *testing.T, ch Change, e *Engine) {
	t.Helper()
	for _, fc := range ch.Features {
		if m.vals[fc.Index] != fc.Old {
			t.Fatalf("%s: change says old %v, the consumer holds %v", e.Set().Features[fc.Index].Name, fc.Old, m.vals[fc.Index])
		}
		m.vals[fc.Index] = fc.New
	}
	for _, tc := range ch.Traits {
		if m.traits[tc.Name] != tc.Old {
			t.Fatalf("trait %s: change says old %q, the consumer holds %q", tc.Name, tc.Old, m.traits[tc.Name])
		}
		if tc.New == "" {
			delete(m.traits, tc.Name)
		} else {
			m.traits[tc.Name] = tc.New
		}
	}
}

func valuesEqual(a, b definition.Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	if a.Kind == definition.Number {
		return a.Num == b.Num
	}
	return a.Str == b.Str
}

// checkAgainstReference compares every feature and trait of st with the
// reference over evs at several read times from the latest event on.
func checkAgainstReference(t *testing.T, e *Engine, st *State, evs []reference.Event, label string) {
	t.Helper()
	// Reads are exact from the profile's Clock (its latest event or
	// expiry) minus the allowed lateness: read from the later of the
	// latest event and the Clock.
	latest := st.Clock
	for _, re := range evs {
		latest = max(latest, re.T)
	}
	for _, dt := range []time.Duration{0, 10 * time.Minute, 2 * time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 31 * 24 * time.Hour, 100 * 24 * time.Hour} {
		at := latest + dt.Milliseconds()
		got := e.Values(st, at)
		for i, f := range e.Set().Features {
			want := reference.Value(f, evs, at)
			if !valuesEqual(got[i], want) {
				t.Fatalf("%s: %s at latest+%s = %v, reference %v (%d events)", label, f.Name, dt, got[i], want, len(evs))
			}
		}
	}
	want := reference.Traits(evs)
	got := map[string]string{}
	for k, tr := range st.Traits {
		if tr.Value != "" {
			got[k] = tr.Value
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: traits %v, reference %v", label, got, want)
	}
}

// Events applied in any order, split over profiles folded together in any
// order, and stored and loaded in between, give the reference's values.
func TestEngineMatchesReference(t *testing.T) {
	set := testSet(t)
	e := NewEngine(set)
	base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		n := 1 + r.IntN(60)
		evs := make([]reference.Event, n)
		for i := range evs {
			evs[i] = randomEvent(r, int(seed), base)
		}
		// Split into up to 4 profiles, each fed its events in arrival order
		// (a shuffle: late and out-of-order events).
		parts := 1 + r.IntN(4)
		states := make([]*State, parts)
		for i := range states {
			states[i] = &State{}
		}
		mirrors := make([]*mirror, parts)
		for i := range mirrors {
			mirrors[i] = newMirror(set)
		}
		order := r.Perm(n)
		for _, k := range order {
			p := r.IntN(parts)
			// Sometimes processed well after it happened: the windows that
			// fell in between are changes of their own first.
			now := int64(0)
			if r.IntN(3) == 0 {
				now = evs[k].T + r.Int64N(int64(3*24*time.Hour/time.Millisecond))
			}
			for _, ch := range e.Advance(states[p], max(states[p].Clock, evs[k].T, now)) {
				mirrors[p].take(t, ch, e)
			}
			ch, err := e.Apply(states[p], &evs[k].Ev, evs[k].T, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.Features) > 0 && ch.Time != states[p].Clock {
				t.Fatalf("change at %d, clock %d", ch.Time, states[p].Clock)
			}
			mirrors[p].apply(t, ch, e, states[p])
			if r.IntN(6) == 0 { // a window expiry timer fires
				at := e.NextChange(states[p], states[p].Clock)
				if at != 0 {
					mirrors[p].apply(t, e.Expire(states[p], at), e, states[p])
				}
			}
			if r.IntN(8) == 0 { // stored and loaded: the codec keeps everything
				e.PruneAll(states[p])
				st, err := e.Decode(e.Encode(nil, states[p]))
				if err != nil {
					t.Fatal(err)
				}
				states[p] = st
			}
		}
		// Fold in a random order.
		for len(states) > 1 {
			i, j := r.IntN(len(states)), r.IntN(len(states)-1)
			if j >= i {
				j++
			}
			src := states[j]
			if r.IntN(2) == 0 {
				var err error
				if src, err = e.Decode(e.Encode(nil, src)); err != nil {
					t.Fatal(err)
				}
			}
			mirrors[i].apply(t, e.Fold(states[i], src), e, states[i])
			states = slices.Delete(states, j, j+1)
			mirrors = slices.Delete(mirrors, j, j+1)
		}
		checkAgainstReference(t, e, states[0], evs, fmt.Sprintf("seed %d", seed))
	}
}

// A change lists exactly the features and traits whose values differ
// before and after, evaluated at the new watermark.
func TestApplyReportsChanges(t *testing.T) {
	set := testSet(t)
	e := NewEngine(set)
	st := &State{}
	day := 24 * time.Hour
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	rev := 20.0
	order := schemas.Event{MessageID: "o1", Type: schemas.Track, Event: "Order Completed", Commerce: &schemas.Commerce{Revenue: &rev}}
	ch, err := e.Apply(st, &order, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	changed := map[string]string{}
	for _, fc := range ch.Features {
		changed[set.Features[fc.Index].Name] = fc.Old.String() + "->" + fc.New.String()
	}
	for name, want := range map[string]string{
		"orders_30d": "0->1", "orders_lifetime": "0->1", "revenue_30d": "0->20", "avg_order_value": "null->20",
		"last_order_at": "null->" + strconv.FormatInt(t0, 10), "first_seen": "null->" + strconv.FormatInt(t0, 10),
		"page_views_1h": "", "big_orders_15m": "",
	} {
		if changed[name] != want {
			t.Errorf("%s: change %q, want %q", name, changed[name], want)
		}
	}
	// 40 days later the first order has left the 30-day window, and a
	// second order is in it: orders_30d was 1 at the last change and is 1
	// now, so it is not in the change; orders_lifetime is.
	order2 := order
	order2.MessageID = "o2"
	ch, _ = e.Apply(st, &order2, t0+(40*day).Milliseconds(), 0)
	changed = map[string]string{}
	for _, fc := range ch.Features {
		changed[set.Features[fc.Index].Name] = fc.Old.String() + "->" + fc.New.String()
	}
	for name, want := range map[string]string{"orders_30d": "", "revenue_30d": "", "orders_lifetime": "1->2", "revenue_lifetime": "20->40"} {
		if changed[name] != want {
			t.Errorf("second order: %s change %q, want %q", name, changed[name], want)
		}
	}
	// Without an event, the window falls when its bucket leaves it.
	next := e.NextChange(st, st.Clock)
	ch = e.Expire(st, next)
	changed = map[string]string{}
	for _, fc := range ch.Features {
		changed[set.Features[fc.Index].Name] = fc.Old.String() + "->" + fc.New.String()
	}
	if next <= t0+(40*day).Milliseconds() || len(ch.Features) == 0 || len(ch.Traits) != 0 {
		t.Errorf("expiry at %d: %v", next, changed)
	}
	ch = e.Expire(st, t0+(71*day).Milliseconds())
	changed = map[string]string{}
	for _, fc := range ch.Features {
		changed[set.Features[fc.Index].Name] = fc.Old.String() + "->" + fc.New.String()
	}
	if changed["orders_30d"] != "1->0" || changed["revenue_30d"] != "20->0" || changed["orders_lifetime"] != "" {
		t.Errorf("expiry after 71 days: %v", changed)
	}
	// An identify with an older time than the stored trait changes nothing.
	idNew := schemas.Event{MessageID: "i1", Type: schemas.Identify, Traits: map[string]json.RawMessage{"plan": json.RawMessage(`"pro"`)}}
	idOld := schemas.Event{MessageID: "i0", Type: schemas.Identify, Traits: map[string]json.RawMessage{"plan": json.RawMessage(`"free"`)}}
	ch, _ = e.Apply(st, &idNew, t0+(41*day).Milliseconds(), 0)
	if len(ch.Traits) != 1 || ch.Traits[0] != (TraitChange{"plan", "", `"pro"`}) {
		t.Errorf("trait change %+v", ch.Traits)
	}
	ch, _ = e.Apply(st, &idOld, t0+(39*day).Milliseconds(), 0)
	if len(ch.Traits) != 0 || st.Traits["plan"].Value != `"pro"` {
		t.Errorf("a late identify changed the trait: %+v, plan %s", ch.Traits, st.Traits["plan"].Value)
	}
}

// An event older than a window's kept buckets counts in lifetime features
// only, and is reported late.
func TestLateEventCountsInLifetimeOnly(t *testing.T) {
	set := testSet(t)
	e := NewEngine(set)
	st := &State{}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	pv := func(id string, at time.Time) {
		ev := schemas.Event{MessageID: id, Type: schemas.Page, Name: "Home"}
		if _, err := e.Apply(st, &ev, at.UnixMilli(), 0); err != nil {
			t.Fatal(err)
		}
	}
	pv("p1", now)
	ev := schemas.Event{MessageID: "p0", Type: schemas.Page, Name: "Home"}
	ch, err := e.Apply(st, &ev, now.Add(-3*time.Hour).UnixMilli(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// page_views_1h and first_seen_1h keep buckets from 2h back; the 24h
	// and lifetime features take it.
	if ch.Late != 2 {
		t.Errorf("late = %d, want 2", ch.Late)
	}
	vals := e.Values(st, now.UnixMilli())
	if v := vals[set.Index("page_views_1h")]; v.Num != 1 {
		t.Errorf("page_views_1h = %v", v)
	}
	if v := vals[set.Index("page_views_24h")]; v.Num != 2 {
		t.Errorf("page_views_24h = %v", v)
	}
	if v := vals[set.Index("first_seen")]; int64(v.Num) != now.Add(-3*time.Hour).UnixMilli() {
		t.Errorf("first_seen = %v", v)
	}
}

// Beyond its exact limit a distinct count is estimated by the sketch within
// a few standard errors, also after folding overlapping profiles.
func TestDistinctSketch(t *testing.T) {
	set, err := definition.Compile(definition.Spec{Definitions: []definition.FeatureSpec{
		{Name: "d7", Agg: "distinct", Field: "properties.product_id", Window: "7d"},
		{Name: "dl", Agg: "distinct", Field: "properties.product_id"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a, b := &State{}, &State{}
	for i := range 3000 {
		st := a
		if i%2 == 1 {
			st = b
		}
		ev := schemas.Event{MessageID: strconv.Itoa(i), Type: schemas.Track, Event: "Product Viewed",
			Commerce: &schemas.Commerce{ProductID: "P" + strconv.Itoa(i%2000)}}
		// the first 1000 values 10 days ago, the rest in the last 6 days
		at := base.Add(-10 * 24 * time.Hour)
		if i%2000 >= 1000 {
			at = base.Add(-time.Duration(i%6) * 24 * time.Hour)
		}
		if _, err := e.Apply(st, &ev, at.UnixMilli(), 0); err != nil {
			t.Fatal(err)
		}
	}
	e.Fold(a, b)
	vals := e.Values(a, base.UnixMilli())
	for name, want := range map[string]float64{"d7": 1000, "dl": 2000} {
		got := vals[set.Index(name)].Num
		if got < want*0.8 || got > want*1.2 {
			t.Errorf("%s = %v, want %v ± 20%% (sketch error 6.5%%)", name, got, want)
		}
		t.Logf("%s = %v (true %v)", name, got, want)
	}
	if n := len(e.Encode(nil, a)); n > 4096 {
		t.Errorf("sketched state takes %d bytes", n)
	}
}

// NextChange is the first read time at which a windowed value moves.
func TestNextChange(t *testing.T) {
	set := testSet(t)
	e := NewEngine(set)
	st := &State{}
	at := time.Date(2026, 6, 1, 10, 0, 30, 0, time.UTC)
	ev := schemas.Event{MessageID: "p", Type: schemas.Page, Name: "Home"}
	if _, err := e.Apply(st, &ev, at.UnixMilli(), 0); err != nil {
		t.Fatal(err)
	}
	next := e.NextChange(st, at.UnixMilli())
	i := set.Index("page_views_1h")
	// 1-minute buckets: the event's bucket is 10:00-10:01, counted until 11:01.
	if want := time.Date(2026, 6, 1, 11, 1, 0, 0, time.UTC).UnixMilli(); next != want {
		t.Fatalf("next change %v, want %v", time.UnixMilli(next).UTC(), time.UnixMilli(want).UTC())
	}
	if v := e.Value(st, i, next-1); v.Num != 1 {
		t.Errorf("just before: %v", v)
	}
	if v := e.Value(st, i, next); v.Num != 0 {
		t.Errorf("at next change: %v", v)
	}
}

func FuzzDecode(f *testing.F) {
	set := testSet(f)
	e := NewEngine(set)
	r := rand.New(rand.NewPCG(1, 2))
	st := &State{}
	for range 40 {
		re := randomEvent(r, 1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		_, _ = e.Apply(st, &re.Ev, re.T, 0)
	}
	f.Add(e.Encode(nil, st))
	f.Add(e.Encode(nil, &State{MergedInto: "p2"}))
	f.Add([]byte{'F', 1, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := e.Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes can be evaluated, encoded and decoded again.
		e.Values(st, 1e12)
		e.NextChange(st, 1e12)
		again, err := e.Decode(e.Encode(nil, st))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if st.MergedInto != again.MergedInto || st.Version != again.Version {
			t.Fatalf("round trip changed the header")
		}
	})
}
