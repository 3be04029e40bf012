package recommend

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

var day0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// trackEvent is a resolved track event of profile at at.
func trackEvent(profile, name, msg string, at time.Time, c *schemas.Commerce) schemas.ResolvedEvent {
	return schemas.ResolvedEvent{ProfileID: profile, Timestamp: at, Event: schemas.Event{MessageID: msg, Type: schemas.Track, Event: name,
		UserID: profile, OriginalTimestamp: at, SentAt: at, ReceivedAt: at, Commerce: c}}
}

func orderEvent(profile, msg string, at time.Time, revenue float64, items ...string) schemas.ResolvedEvent {
	c := &schemas.Commerce{OrderID: "o-" + msg, Revenue: &revenue}
	for _, it := range items {
		c.Products = append(c.Products, schemas.Product{ProductID: it})
	}
	return trackEvent(profile, "Order Completed", msg, at, c)
}

func viewEvent(profile, msg string, at time.Time, item string) schemas.ResolvedEvent {
	return trackEvent(profile, "Product Viewed", msg, at, &schemas.Commerce{ProductID: item})
}

// seedShoppers writes 20 shoppers who each bought A and B, and a day later
// A and C, and waits until every processor's associations learned the 40
// orders: A and B, A and C are bought together; after A or B, both A and
// C follow in the next basket.
func (s *stage) seedShoppers(t *testing.T, procs []*Processor) {
	t.Helper()
	var evs []schemas.ResolvedEvent
	for i := range 20 {
		p := fmt.Sprintf("shopper-%d", i)
		at := day0.Add(time.Duration(i) * time.Minute)
		evs = append(evs, orderEvent(p, p+"-1", at, 10, "A", "B"), orderEvent(p, p+"-2", at.Add(24*time.Hour), 10, "A", "C"))
	}
	s.write(t, s.encode(t, evs))
	for _, p := range procs {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if _, n := p.Shared().Stats(); n == 40 {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("the associations learned %d of 40 orders in a minute", n)
			}
		}
	}
}

func ids(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ProductID + ":" + it.Reason
	}
	return out
}

// TestListsFollowTheAssociations checks the lists of a buyer and of a
// viewer against the associations of a small, known catalogue: the buyer of
// B gets what follows B (A before C, A being also bought with B) and B
// again as a repeat item, unless bought items are excluded; the viewer of
// B, who bought nothing, gets A, bought with B, first.
func TestListsFollowTheAssociations(t *testing.T) {
	for _, c := range []struct {
		exclude     bool
		buyer, view []string
	}{
		{false, []string{"A:association", "C:association", "B:repeat"}, []string{"A:association", "B:viewed", "C:popular"}},
		{true, []string{"A:association", "C:association"}, []string{"A:association", "B:viewed", "C:popular"}},
	} {
		t.Run(fmt.Sprintf("exclude_bought=%v", c.exclude), func(t *testing.T) {
			s := newStage(t, 2)
			cfg := testConfig()
			cfg.Options.ExcludeBought = c.exclude
			procs, stop := s.start(t, 1, cfg)
			defer stop()
			s.seedShoppers(t, procs)
			at := day0.Add(72 * time.Hour)
			s.write(t, s.encode(t, []schemas.ResolvedEvent{orderEvent("buyer", "buy-1", at, 5, "B"), viewEvent("viewer", "view-1", at, "B")}))
			rd := s.reader(t, 2)
			ctx := testkit.Context(t)
			for _, w := range []struct {
				profile, trigger string
				want             []string
			}{{"buyer", "buy-1", c.buyer}, {"viewer", "view-1", c.view}} {
				var l *List
				for deadline := time.Now().Add(30 * time.Second); l == nil || l.Version < 1; time.Sleep(10 * time.Millisecond) {
					var err error
					if l, err = rd.Recommendations(ctx, w.profile); err != nil {
						t.Fatal(err)
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s has no list after 30s", w.profile)
					}
				}
				if l.Version != 1 || l.TriggerMessageID != w.trigger || !slices.Equal(ids(l.Items), w.want) {
					t.Errorf("%s: v%d after %q: %v, want v1 after %q: %v", w.profile, l.Version, l.TriggerMessageID, ids(l.Items), w.trigger, w.want)
				}
			}
		})
	}
}

// TestRefreshWithinTwoSeconds measures, for 30 profiles, the time from
// producing a product view to its list being readable through the read
// API (the refreshed list names the view as its trigger). The target is 2
// s; the assertion is a generous 30 s, so that a loaded machine fails only
// when a refresh is really lost; the measured latencies are logged.
func TestRefreshWithinTwoSeconds(t *testing.T) {
	s := newStage(t, 2)
	procs, stop := s.start(t, 1, testConfig())
	defer stop()
	s.seedShoppers(t, procs)
	rd := s.reader(t, 2)
	ctx := testkit.Context(t)
	cl := s.env.Kafka(t)
	var lat []time.Duration
	for i := range 30 {
		p, msg := fmt.Sprintf("visitor-%d", i), fmt.Sprintf("visit-%d", i)
		rec := s.encode(t, []schemas.ResolvedEvent{viewEvent(p, msg, day0.Add(72*time.Hour), []string{"A", "B", "C"}[i%3])})
		start := time.Now()
		if err := s.writeWith(ctx, cl, rec); err != nil {
			t.Fatal(err)
		}
		for {
			l, err := rd.Recommendations(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if l != nil && l.TriggerMessageID == msg {
				lat = append(lat, time.Since(start))
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s: no list 30s after its view", p)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("view produced -> list readable, 30 profiles: min %s, median %s, p90 %s, max %s (target 2s)",
		lat[0].Round(time.Millisecond), lat[15].Round(time.Millisecond), lat[26].Round(time.Millisecond), lat[29].Round(time.Millisecond))
}
