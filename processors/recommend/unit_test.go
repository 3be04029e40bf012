package recommend

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/schemas"
)

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

func TestClassify(t *testing.T) {
	order := func(c *schemas.Commerce) *schemas.Event {
		return &schemas.Event{Type: schemas.Track, Event: "Order Completed", Commerce: c}
	}
	for _, c := range []struct {
		name    string
		ev      *schemas.Event
		kind    kind
		items   []string
		revenue float64
	}{
		{"order: distinct items in order, revenue wins", order(&schemas.Commerce{OrderID: "o1", Revenue: f64(9.5), Total: f64(12),
			Products: []schemas.Product{{ProductID: "b"}, {ProductID: "a"}, {ProductID: "b"}, {SKU: "s-1"}, {}}}), ordered, []string{"b", "a", "s-1"}, 9.5},
		{"order: total without revenue", order(&schemas.Commerce{Total: f64(12), Products: []schemas.Product{{ProductID: "a"}}}), ordered, []string{"a"}, 12},
		{"order: lines' sum, quantity 1 by default", order(&schemas.Commerce{Products: []schemas.Product{
			{ProductID: "a", Price: f64(2.5), Quantity: i64(3)}, {ProductID: "b", Price: f64(1)}}}), ordered, []string{"a", "b"}, 8.5},
		{"order without products still counts", order(&schemas.Commerce{Revenue: f64(5)}), ordered, nil, 5},
		{"view", &schemas.Event{Type: schemas.Track, Event: "Product Viewed", Commerce: &schemas.Commerce{ProductID: "p"}}, viewed, []string{"p"}, 0},
		{"cart add is a view", &schemas.Event{Type: schemas.Track, Event: "Product Added", Commerce: &schemas.Commerce{SKU: "k"}}, viewed, []string{"k"}, 0},
		{"view without product", &schemas.Event{Type: schemas.Track, Event: "Product Viewed", Commerce: &schemas.Commerce{}}, ignored, nil, 0},
		{"refund ignored", &schemas.Event{Type: schemas.Track, Event: "Order Refunded", Commerce: &schemas.Commerce{Revenue: f64(5)}}, ignored, nil, 0},
		{"page ignored", &schemas.Event{Type: schemas.Page, Name: "Home"}, ignored, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := classify(c.ev)
			if a.kind != c.kind || !slices.Equal(a.items, c.items) || a.revenue != c.revenue {
				t.Errorf("classify = %+v, want kind %d items %v revenue %g", a, c.kind, c.items, c.revenue)
			}
		})
	}
}

func TestSession(t *testing.T) {
	const w = 30 * time.Minute
	minute := int64(time.Minute / time.Millisecond)
	var s session
	s.add("a", 0, w, 3)
	s.add("b", 10*minute, w, 3)
	s.add("a", 20*minute, w, 3) // seen again: moves to the end
	if got := s.items(20*minute, w); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("items = %v, want [a b] newest first", got)
	}
	s.add("c", 15*minute, w, 3) // late: goes between b and a
	if got := s.items(20*minute, w); !slices.Equal(got, []string{"a", "c", "b"}) {
		t.Errorf("after a late view items = %v, want [a c b]", got)
	}
	s.add("d", 21*minute, w, 3) // over the cap: the oldest (b) goes
	if got := s.items(21*minute, w); !slices.Equal(got, []string{"d", "a", "c"}) {
		t.Errorf("over the cap items = %v, want [d a c]", got)
	}
	s.add("e", 51*minute, w, 3) // over 30 minutes after c and a: they expire
	if got := s.items(51*minute, w); !slices.Equal(got, []string{"e", "d"}) || len(s.Views) != 2 {
		t.Errorf("after the window items = %v (%d stored), want [e d]", got, len(s.Views))
	}
	if got := s.items(90*minute, w); len(got) != 0 {
		t.Errorf("an hour later items = %v, want none", got)
	}
}

func TestSummary(t *testing.T) {
	var s summary
	s.add(100, 10)
	s.add(300, 30)
	s.add(50, 5) // late: becomes the first
	want := summary{Orders: 3, Revenue: 45, First: 50, FirstRevenue: 5, Last: 300}
	if s != want {
		t.Errorf("summary = %+v, want %+v", s, want)
	}
	if sp := spend(s); sp.X != 2 || sp.Mean != 20 {
		t.Errorf("spend = %+v, want the two later orders' mean 20", sp)
	}
	c := bgCustomer(s, 50+int64(dayMs)*10)
	if c.X != 2 || math.Abs(c.TX-250/dayMs) > 1e-12 || c.T != 10 {
		t.Errorf("BG/NBD customer = %+v", c)
	}
}

// sameItems reports whether two lists hold the same items in the same
// order for the same reasons.
func sameItems(a, b []Item) bool { return itemsHash(a) == itemsHash(b) && len(a) == len(b) }

func TestListDigest(t *testing.T) {
	a := []Item{{"x", 0.5, ReasonRepeat}, {"y", 0.1, ReasonPopular}}
	if itemsHash(a) != itemsHash([]Item{{"x", 0.7, ReasonRepeat}, {"y", 0, ReasonPopular}}) {
		t.Error("new scores alone changed the hash")
	}
	for _, b := range [][]Item{{{"y", 0, ReasonPopular}, {"x", 0, ReasonRepeat}}, {{"x", 0, ReasonRepeat}}, {{"x", 0, ReasonRepeat}, {"y", 0, ReasonAssociation}},
		{{"xy", 0, ReasonRepeat}, {"", 0, ReasonPopular}}} {
		if itemsHash(a) == itemsHash(b) {
			t.Errorf("%v and %v hash equal", a, b)
		}
	}
	d := listDigest{version: 7, at: 1_770_000_000_123, hash: itemsHash(a)}
	if got, err := parseDigest(d.String()); err != nil || got != d {
		t.Errorf("parseDigest(%q) = %+v, %v", d.String(), got, err)
	}
	for _, bad := range []string{"", "1:2", "x:2:3", "1:2:zz"} {
		if _, err := parseDigest(bad); err == nil {
			t.Errorf("parseDigest(%q) succeeded", bad)
		}
	}
}

func TestSameScoresTolerances(t *testing.T) {
	base := Scores{R: 3, F: 2, M: 4, RFMSegment: "loyal", Orders: 2, Revenue: 10, ExpectedOrders: f64(2), CLV: f64(100), PAlive: f64(0.8), ChurnRisk: f64(0.3)}
	for _, c := range []struct {
		name string
		mut  func(*Scores)
		same bool
	}{
		{"identical", func(*Scores) {}, true},
		{"lifetime value +0.5%", func(s *Scores) { s.CLV = f64(100.5) }, true},
		{"lifetime value +2%", func(s *Scores) { s.CLV = f64(102) }, false},
		{"churn risk +0.005", func(s *Scores) { s.ChurnRisk = f64(0.305) }, true},
		{"churn risk +0.02", func(s *Scores) { s.ChurnRisk = f64(0.32) }, false},
		{"segment", func(s *Scores) { s.RFMSegment = "at_risk" }, false},
		{"R score", func(s *Scores) { s.R = 4 }, false},
		{"an order", func(s *Scores) { s.Orders = 3 }, false},
		{"fit appears", func(s *Scores) { s.PAlive = nil }, false},
	} {
		b := base
		c.mut(&b)
		if got := sameScores(&base, &b); got != c.same {
			t.Errorf("%s: sameScores = %v, want %v", c.name, got, c.same)
		}
	}
}

// TestKeysShareTheJournalSlot checks that the Reader's keys, the task's
// keys and the journal's keys of one partition are in one hash slot.
func TestKeysShareTheJournalSlot(t *testing.T) {
	j := journal.New(nil, "cdp:", processorName, journal.WithTag(func(tp processing.TopicPartition) string { return tag(tp.Topic, tp.Partition) }))
	tp := processing.TopicPartition{Topic: "cdp.events.resolved", Partition: 4}
	for _, suffix := range []string{keyHistory, keyViews, keyList, keyDigest, keyScores, keySweep} {
		k := slotKey("cdp:", tp.Topic, tp.Partition, suffix)
		if k != j.Key(tp, suffix) {
			t.Errorf("key %q, journal's %q", k, j.Key(tp, suffix))
		}
		for _, jk := range j.Keys(tp) {
			if hashSlot(k) != hashSlot(jk) {
				t.Errorf("%s and the journal key %s are in different slots", k, jk)
			}
		}
	}
	if k := slotKey("cdp:", tp.Topic, 4, keyList); k != "cdp:{recommend:cdp.events.resolved:4}:rec:l" {
		t.Errorf("list key %q: the documented layout changed", k)
	}
}

// hashSlot is the Redis Cluster slot of a key's hash tag (the text between
// the first { and the next }), which is all that decides the slot.
func hashSlot(key string) string {
	i := slices.Index([]byte(key), '{')
	j := slices.Index([]byte(key[i+1:]), '}')
	return key[i+1 : i+1+j]
}

// TestSampleIsBoundedAndOrderFree feeds one set of profiles in two orders
// and expects the same bounded sample.
func TestSampleIsBoundedAndOrderFree(t *testing.T) {
	a, b := newSample(100), newSample(100)
	const n = 5000
	for i := range n {
		a.update(profileName(i), summary{Orders: int64(i)})
		b.update(profileName(n-1-i), summary{Orders: int64(n - 1 - i)})
	}
	if len(a.m) > 100 || len(a.m) < 25 {
		t.Fatalf("sample of %d profiles holds %d, want at most 100 and not far below", n, len(a.m))
	}
	sa, sb := a.summaries(), b.summaries()
	if !slices.Equal(sa, sb) || a.level != b.level {
		t.Errorf("the sample depends on the order of updates: %d vs %d profiles, levels %d and %d", len(sa), len(sb), a.level, b.level)
	}
	// A later update of a sampled profile replaces its summary.
	for p, e := range a.m {
		a.update(p, summary{Orders: -1})
		if a.m[p].s.Orders != -1 || a.m[p].hash != e.hash {
			t.Errorf("update of %s did not replace its summary", p)
		}
		break
	}
}

func profileName(i int) string {
	return "profile-" + string(rune('a'+i%26)) + "-" + time.Duration(i).String()
}
