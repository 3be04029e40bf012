package segments

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// syntheticChanges is n profile changes of profiles, each profile's in
// version order, shaped like the features processor's: most change only
// features no segment reads (page and product views, last seen); the
// others count a feature the segments read one up, so memberships flip a
// few times per profile, as they do.
func (pl *pipeline) syntheticChanges(t testing.TB, profiles, n int) []*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t)
	r := rand.New(rand.NewPCG(1, 2))
	version := make([]int64, profiles)
	values := make([]map[string]float64, profiles)
	var read, unread []string
	for _, f := range pl.fset.Features {
		if slices.Contains(pl.rules.Features, f.Name) {
			read = append(read, f.Name)
		} else {
			unread = append(unread, f.Name)
		}
	}
	now := time.Now().UnixMilli()
	out := make([]*kgo.Record, 0, n)
	for range n {
		p := r.IntN(profiles)
		if values[p] == nil {
			values[p] = map[string]float64{}
		}
		version[p]++
		id := fmt.Sprintf("%s-s%d", pl.env.ID, p)
		c := schemas.ProfileChange{ProfileID: id, Version: version[p], Time: now, Cause: schemas.CauseEvent,
			TriggerMessageID: fmt.Sprintf("m%d", r.Int64()), Features: map[string]schemas.FeatureChange{}}
		names := unread
		if r.IntN(10) < 3 {
			names = read
		}
		for range 1 + r.IntN(3) {
			name := names[r.IntN(len(names))]
			old := values[p][name]
			values[p][name] = old + 1 + float64(r.IntN(2))*50*float64(strings.Count(name, "revenue"))
			c.Features[name] = schemas.FeatureChange{Old: schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: old},
				New: schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: values[p][name]}}
		}
		v, err := pl.serde.AppendProfileChange(ctx, nil, pl.changes, &c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &kgo.Record{Topic: pl.changes, Key: []byte(id), Value: v})
	}
	return out
}

// BenchmarkSegmentsThroughput measures the segments processor alone with
// the default segments: profile changes are produced first (not timed),
// then one processor applies them, evaluates every segment, writes Redis
// and emits membership changes, until the group committed the whole
// topic. Reports changes/s and membership changes/s.
//
//	go test -run ^$ -bench SegmentsThroughput -benchtime 1x ./processors/segments/
func BenchmarkSegmentsThroughput(b *testing.B) {
	for range b.N {
		b.StopTimer()
		fspec, sspec := defaultSpecs(b)
		sspec.AudienceEvents = false
		pl := newPipelineN(b, fspec, sspec, nil, 6)
		recs := pl.syntheticChanges(b, 20_000, 200_000)
		pl.produce(b, recs)
		b.StartTimer()
		start := time.Now()
		stop := pl.startSegments(b)
		pl.env.WaitConsumed(b, 10*time.Minute, 20*time.Millisecond, testkit.Consumed{Group: pl.env.Services.TopicPrefix + "-segments", Topics: []string{pl.changes}})
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		members := len(pl.env.ReadAll(b, pl.membership))
		b.ReportMetric(float64(len(recs))/elapsed.Seconds(), "changes/s")
		b.ReportMetric(float64(members)/elapsed.Seconds(), "memberships/s")
		b.Logf("%d changes of 20000 profiles in %s, %d membership changes", len(recs), elapsed.Round(time.Millisecond), members)
	}
}
