package segments

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// TestCrashRestartEqualsUninterrupted runs the features processor once, and
// two segments processors on its changes: one uninterrupted in this
// process, one `cdp run segments` process SIGKILLed at random moments at
// least five times during the load and restarted. The crashed one's
// membership changes must be exactly once per version, consistent (a
// profile enters a segment only when out of it, exits only when in it, and
// ends where its memberships are), and its final memberships and sizes
// equal the uninterrupted one's.
func TestCrashRestartEqualsUninterrupted(t *testing.T) {
	testkit.CDPBinary(t) // now, not after the uninterrupted run: fails at once without the binary
	fspec, sspec := defaultSpecs(t)
	pl := newPipelineN(t, fspec, sspec, nil, 6) // the topology's partitions: the child checks them
	ref := pl.segmentsConfig()
	ref.MembershipTopic = pl.env.Topic(t, "ref.membership", 3)
	ref.AudiencesTopic = pl.env.Topic(t, "ref.audiences", 3)
	ref.Prefix = pl.env.RedisPrefix() + "ref:"
	refGroup := pl.env.Services.TopicPrefix + "-segments-ref"
	stopRef := pl.startSegmentsWith(t, ref, refGroup)
	defer stopRef()
	stopF := pl.startFeatures(t)
	defer stopF()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	now := time.Now()
	var recs []*kgo.Record
	for i := range 600 {
		id := fmt.Sprintf("%s-c%d", pl.env.ID, i)
		for range 3 + r.IntN(15) {
			at := now.Add(-time.Duration(r.Int64N(int64(40 * 24 * time.Hour)))).Truncate(time.Millisecond)
			recs = append(recs, pl.eventRecord(t, id, segEvent(r, i, at), at))
		}
	}
	r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })

	const chunks = 8
	chunk := (len(recs) + chunks - 1) / chunks
	fed := 0
	feed := func() {
		if fed < len(recs) {
			end := min(len(recs), fed+chunk)
			pl.produce(t, recs[fed:end])
			fed = end
		}
	}
	adm := pl.env.Admin(t)
	group := pl.env.Services.TopicPrefix + "-segments"
	committed := func() int64 {
		offs, err := adm.FetchOffsets(testkit.Context(t), group)
		if err != nil {
			return 0
		}
		var n int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.At > 0 {
				n += o.At
			}
		})
		return n
	}
	kills := testkit.CrashLoop{
		Args: []string{"run", "segments"}, Env: pl.env.ProcessEnv(),
		Progress: committed,
		Feed:     feed,
		Pause:    func(int) time.Duration { return time.Duration(r.IntN(60)) * time.Millisecond },
		Finish: func() {
			for fed < len(recs) {
				feed()
			}
			pl.env.WaitConsumed(t, 4*time.Minute, 500*time.Millisecond,
				testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-features", Topics: []string{pl.resolved, pl.merges, pl.fold}},
				testkit.Consumed{Group: refGroup, Topics: []string{pl.changes}},
				testkit.Consumed{Group: group, Topics: []string{pl.changes}})
		},
	}.Run(t)
	if kills < 5 {
		t.Fatalf("only %d kills", kills)
	}

	crashed := pl.memberships(t) // versions checked: once each, in order
	uninterrupted := pl.membershipsOf(t, ref.MembershipTopic)
	rdb, err := config.NewRedis(pl.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	rc, rr := NewReader(rdb, pl.segmentsConfig(), pl.rules, nil), NewReader(rdb, ref, pl.rules, nil)
	ctx := testkit.Context(t)
	total := 0
	for i := range 600 {
		id := fmt.Sprintf("%s-c%d", pl.env.ID, i)
		a, _, errA := rr.Members(ctx, id)
		b, _, errB := rc.Members(ctx, id)
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v / %v", id, errA, errB)
		}
		if names(a) != names(b) {
			t.Fatalf("%s: members %s uninterrupted, %s after crashes", id, names(a), names(b))
		}
		for run, cs := range map[string][]change{"uninterrupted": uninterrupted[id], "crashed": crashed[id]} {
			in := map[string]bool{}
			for _, c := range cs {
				if (c.Status == "entered") == in[c.Segment] {
					t.Fatalf("%s (%s): %s %s twice in a row: %v", id, run, c.Status, c.Segment, cs)
				}
				in[c.Segment] = c.Status == "entered"
			}
			var end []string
			for s, ok := range in {
				if ok {
					end = append(end, s)
				}
			}
			slices.Sort(end)
			if strings.Join(end, ",") != names(b) {
				t.Fatalf("%s (%s): the changes end in %v, the profile is in %s", id, run, end, names(b))
			}
		}
		total += len(crashed[id])
	}
	sa, err := rr.Sizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := rc.Sizes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, seg := range pl.rules.Segments {
		if sa[seg.Name] != sb[seg.Name] {
			t.Errorf("size of %s: %d uninterrupted, %d after crashes", seg.Name, sa[seg.Name], sb[seg.Name])
		}
	}
	t.Logf("%d runs, %d SIGKILLs over %d events: 600 profiles' memberships equal to the uninterrupted run's, %d membership changes each once and consistent; sizes %v",
		kills+1, kills, len(recs), total, sb)
}

func names(ms []Membership) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Segment
	}
	return strings.Join(out, ",")
}
