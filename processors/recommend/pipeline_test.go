package recommend

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/ml/rfm"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// truthOf derives what the processor must have done from the input: per
// profile its orders in input order, and whether it viewed or ordered.
type truthOf struct {
	orders  map[string][]schemas.ResolvedEvent
	touched map[string]bool
	total   int
}

func newTruth(evs []schemas.ResolvedEvent) truthOf {
	tr := truthOf{orders: map[string][]schemas.ResolvedEvent{}, touched: map[string]bool{}}
	for _, ev := range evs {
		switch classify(&ev.Event).kind {
		case ordered:
			tr.orders[ev.ProfileID] = append(tr.orders[ev.ProfileID], ev)
			tr.total++
			tr.touched[ev.ProfileID] = true
		case viewed:
			tr.touched[ev.ProfileID] = true
		}
	}
	return tr
}

// waitSettled waits until every profile that viewed or bought has a full
// list and every buyer scores exactly its orders: scores need a fit and a
// sweep, and lists computed while the associations were still learning
// (a backlog processed from scratch) are completed by a sweep too.
func (s *stage) waitSettled(t testing.TB, tr truthOf, rd *Reader, timeout time.Duration) {
	t.Helper()
	ctx := testkit.Context(t)
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for p := range tr.touched {
			l, err := rd.Recommendations(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := rd.Scores(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if l == nil || len(l.Items) < 10 || len(tr.orders[p]) > 0 && (sc == nil || sc.Orders != int64(len(tr.orders[p]))) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d profiles have no full list or no up-to-date scores %s after the input was consumed", missing, len(tr.touched), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPipeline runs generated traffic through Kafka, two concurrent
// processors and Redis, and checks every output against the input: the
// orders changelog holds each order once with the profile's previous
// basket and summary, every profile that viewed or bought has a list whose
// versions on the topic run 1..n and whose last record is what the read
// API returns, repeat items are bought items, every buyer is scored with
// its exact orders and revenue once the models are fitted, both instances'
// global models learned every order, and undecodable input is
// dead-lettered.
func TestPipeline(t *testing.T) { pipeline(t, "") }

// TestPipelineOnRedisCluster is the same on a Redis Cluster of three
// redis-server processes: every step's keys share its partition's slot.
func TestPipelineOnRedisCluster(t *testing.T) {
	t.Parallel() // its own Redis; overlaps the crash test's waits
	pipeline(t, testkit.StartRedisCluster(t, 3).URL())
}

func pipeline(t *testing.T, redisURL string) {
	const partitions = 4
	s := newStageOn(t, partitions, redisURL)
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 300, 20000, 5
	recs, evs := s.resolvedRecords(t, cfg)
	garbage := []*kgo.Record{
		{Topic: s.topics.Input, Key: []byte("bad-1"), Value: []byte(`{"not":"avro"}`)},
		{Topic: s.topics.Input, Key: []byte("bad-2"), Value: []byte{0, 0, 0, 0x7f, 0x7f, 1}},
	}
	s.write(t, append(append(recs[:len(recs)/2:len(recs)/2], garbage...), recs[len(recs)/2:]...))
	tr := newTruth(evs)
	t.Logf("%d events: %d orders of %d profiles, %d profiles viewed or bought", len(evs), tr.total, len(tr.orders), len(tr.touched))
	if tr.total < 100 || len(tr.orders) < 30 {
		t.Fatalf("the generated traffic has too few orders (%d of %d profiles) to test with", tr.total, len(tr.orders))
	}

	procs, stop := s.start(t, 2, testConfig())
	s.waitConsumed(t, 2*time.Minute)
	rd := s.reader(t, partitions)
	ctx := testkit.Context(t)
	s.waitSettled(t, tr, rd, time.Minute)
	for _, p := range procs {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, n := p.Shared().Stats(); n == int64(tr.total) {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("an instance's model learned %d orders, want all %d", n, tr.total)
			}
		}
	}
	stop()

	// The pipelined reads, every profile in one pipeline (on a cluster,
	// one per node), answer what the single reads answer.
	pipe := rd.rdb.Pipeline()
	type queued struct {
		list   func() (*List, error)
		scores func() (*Scores, error)
	}
	qs := map[string]queued{}
	for p := range tr.touched {
		qs[p] = queued{rd.QueueRecommendations(ctx, pipe, p), rd.QueueScores(ctx, pipe, p)}
	}
	qs["nobody"] = queued{rd.QueueRecommendations(ctx, pipe, "nobody"), rd.QueueScores(ctx, pipe, "nobody")}
	_, _ = pipe.Exec(ctx) // nobody's reads are redis.Nil
	for p, q := range qs {
		l, err := q.list()
		wl, werr := rd.Recommendations(ctx, p)
		sc, serr := q.scores()
		wsc, wserr := rd.Scores(ctx, p)
		if err != nil || werr != nil || serr != nil || wserr != nil || !reflect.DeepEqual(l, wl) || !reflect.DeepEqual(sc, wsc) {
			t.Errorf("%s: queued reads %+v %+v (%v %v), single reads %+v %+v (%v %v)", p, l, sc, err, serr, wl, wsc, werr, wserr)
		}
		if (l == nil) != (p == "nobody") {
			t.Errorf("%s: list %+v", p, l)
		}
	}

	// The orders changelog: each order once, in the profile's order, with
	// its previous basket and running summary.
	logged := s.orderRecords(t)
	if len(logged) != len(tr.orders) {
		t.Errorf("changelog has orders of %d profiles, want %d", len(logged), len(tr.orders))
	}
	for p, want := range tr.orders {
		got := logged[p]
		if len(got) != len(want) {
			t.Errorf("profile %s: %d orders in the changelog, want %d", p, len(got), len(want))
			continue
		}
		var revenue float64
		var prev []string
		for i, ev := range want {
			a := classify(&ev.Event)
			revenue += a.revenue
			o := got[i]
			if o.Message != ev.Event.MessageID || !slices.Equal(o.Items, a.items) || o.Summary.Orders != int64(i+1) ||
				math.Abs(o.Summary.Revenue-revenue) > 1e-6 || !slices.Equal(o.Prev, prev) || o.Time != ev.Timestamp.UnixMilli() {
				t.Errorf("profile %s order %d: changelog %+v, want message %s items %v prev %v, %d orders worth %.2f", p, i, o, ev.Event.MessageID, a.items, prev, i+1, revenue)
			}
			if len(a.items) > 0 {
				prev = a.items
			}
		}
	}

	// Lists: versions 1..n on the topic, the last one stored, repeat items
	// bought.
	lists := s.lists(t)
	checkVersions(t, "recommendations", lists, func(l List) int64 { return l.Version })
	histories := s.hashes(t, keyHistory, partitions)
	for p := range tr.touched {
		ls := lists[p]
		stored, err := rd.Recommendations(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if stored == nil || len(ls) == 0 {
			t.Errorf("profile %s viewed or bought but has no list (stored %v, %d records)", p, stored, len(ls))
			continue
		}
		last := ls[len(ls)-1]
		if stored.Version != last.Version || !sameItems(stored.Items, last.Items) || stored.Model != last.Model {
			t.Errorf("profile %s: stored list v%d %v, last emitted v%d %v", p, stored.Version, stored.Items, last.Version, last.Items)
		}
		if len(stored.Items) != 10 {
			t.Errorf("profile %s: %d items, want K=10", p, len(stored.Items))
		}
		bought := map[string]bool{}
		if h, ok := histories[p]; ok {
			var ps profileState
			if err := json.Unmarshal([]byte(h), &ps); err != nil {
				t.Fatal(err)
			}
			for _, it := range ps.History.Items {
				bought[it.Item] = true
			}
			if ps.Summary.Orders != int64(len(tr.orders[p])) {
				t.Errorf("profile %s: stored summary has %d orders, want %d", p, ps.Summary.Orders, len(tr.orders[p]))
			}
		}
		seen := map[string]bool{}
		for _, it := range stored.Items {
			if seen[it.ProductID] {
				t.Errorf("profile %s: %s twice in one list", p, it.ProductID)
			}
			seen[it.ProductID] = true
			if (it.Reason == ReasonRepeat) != bought[it.ProductID] {
				t.Errorf("profile %s: %s has reason %s, bought before: %v", p, it.ProductID, it.Reason, bought[it.ProductID])
			}
		}
	}
	if len(histories) != len(tr.orders) {
		t.Errorf("%d stored histories, want one per buyer (%d)", len(histories), len(tr.orders))
	}

	// Scores: versions 1..n, the last one stored, exact orders and revenue.
	scores := s.scoreRecords(t)
	checkVersions(t, "scores", scores, func(s Scores) int64 { return s.Version })
	segments := map[string]int{}
	for p, os := range tr.orders {
		stored, err := rd.Scores(ctx, p)
		if err != nil || stored == nil {
			t.Fatalf("scores of %s: %v, %v", p, stored, err)
		}
		ss := scores[p]
		if len(ss) == 0 || ss[len(ss)-1].Version != stored.Version || ss[len(ss)-1].RFMSegment != stored.RFMSegment {
			t.Errorf("profile %s: stored scores v%d, emitted %d records", p, stored.Version, len(ss))
		}
		var revenue float64
		for _, ev := range os {
			revenue += classify(&ev.Event).revenue
		}
		if math.Abs(stored.Revenue-revenue) > 1e-6 || !stored.LastOrder.Equal(os[len(os)-1].Timestamp.UTC().Truncate(time.Millisecond)) && len(os) == 1 {
			t.Errorf("profile %s: scores say %d orders worth %.2f last %s, want %d worth %.2f", p, stored.Orders, stored.Revenue, stored.LastOrder, len(os), revenue)
		}
		if _, err := rfm.ParseSegment(stored.RFMSegment); err != nil || stored.R < 1 || stored.R > 5 || stored.F < 1 || stored.M > 5 {
			t.Errorf("profile %s: RFM %d%d%d %q", p, stored.R, stored.F, stored.M, stored.RFMSegment)
		}
		segments[stored.RFMSegment]++
	}
	t.Logf("RFM segments of the %d buyers: %v", len(tr.orders), segments)

	checkMemory(t, s, partitions)

	// Undecodable input is dead-lettered with its bytes, nothing else is.
	var dead []string
	for _, rec := range s.env.ReadAll(t, s.topics.DLQ) {
		e, err := dlq.Parse(rec)
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, fmt.Sprintf("%s:%s", e.Key, e.Code))
	}
	slices.Sort(dead)
	if len(dead) != 2 || dead[0][:6] != "bad-1:" || dead[1][:6] != "bad-2:" {
		t.Errorf("dead letters %v, want bad-1 and bad-2", dead)
	}
}
