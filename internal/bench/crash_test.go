package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/segments"
	"github.com/streamcdp/streamcdp/schemas"
)

var pipelineNames = []string{"identity", "features", "segments", "warehouse"}

// crashInput is small generated traffic far enough in the past that
// every window has fallen by the time the test runs (the longest is
// 365 days): the expiry timers then fire at once in both runs, and no
// window boundary can fall between the clean run and the crashed one.
func crashInput() generate.Config {
	cfg := generate.DefaultConfig()
	cfg.Seed, cfg.Persons, cfg.Events = 11, 300, 6000
	cfg.Start, cfg.Duration = time.Date(2024, 6, 3, 0, 0, 0, 0, time.UTC), 72*time.Hour
	cfg.DupShare = 0.02
	return cfg
}

// TestEndToEndCrash runs the whole pipeline (identity, features, segments,
// warehouse, each a `cdp run` child process) twice over the same generated
// traffic in separate namespaces: once cleanly, once while the processors
// are SIGKILLed at random moments at least six times (each at least once)
// and restarted. Every raw event goes to one partition, so identity sees
// the same order in both runs and names the same profiles. The final
// states must be equal: the events in ClickHouse per surviving profile
// (each exactly once), the merges, every profile's features and traits in
// Redis, its memberships, and its membership changes by version (exactly
// once each, in order, consistent); for profiles a merge touched, whose
// intermediate changes depend on when the merge reached each partition,
// the final memberships and the consistency of the changes. The local
// ClickHouse engine may exit when the warehouse is killed mid-insert; it is
// started again on its data (see engine) and the comparison still holds.
func TestEndToEndCrash(t *testing.T) {
	env := testkit.New(t)
	bin := testkit.CDPBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := zap.NewNop()
	if testing.Verbose() {
		log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	// ClickHouse of the test's own: the local engine has been seen to exit
	// when a client is SIGKILLed mid-insert, which must not take the
	// shared stack's ClickHouse (and other tests) with it.
	ch := testkit.StartClickHouse(t)
	eng := &engine{ch: ch}
	svc := env.Services
	svc.ClickHouseDSN = ch.DSN()
	open := func(suffix string) (*Pipeline, []*kgo.Record, []string) {
		p, err := NewPipeline(ctx, svc, svc.TopicPrefix+suffix, bin, t.TempDir(), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := p.Drop(ctx); err != nil {
				t.Logf("cleaning up %s: %v", p.Svc.TopicPrefix, err)
			}
			p.Close()
		})
		p.RawPartition = 0
		recs, ids, err := p.Encode(ctx, crashInput(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return p, recs, ids
	}
	clean, cleanRecs, ids := open("c")
	crashed, crashedRecs, _ := open("k")
	unique := map[string]bool{}
	for _, id := range ids {
		unique[id] = true
	}

	// The clean run.
	start := time.Now()
	children := startAll(ctx, t, clean)
	produce(ctx, t, clean, cleanRecs)
	waitSettled(ctx, t, eng, clean, children, int64(len(cleanRecs)))
	stopAll(t, children)
	t.Logf("clean run: %d events in %s", len(cleanRecs), time.Since(start).Round(time.Millisecond))

	// The crashed run: the input in chunks, a kill after each while the
	// victim is committing.
	start = time.Now()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	victims := slices.Clone(pipelineNames)
	rng.Shuffle(len(victims), func(i, j int) { victims[i], victims[j] = victims[j], victims[i] })
	victims = append(victims, pipelineNames[rng.IntN(4)], pipelineNames[rng.IntN(4)])
	children = startAll(ctx, t, crashed)
	chunk := (len(crashedRecs) + len(victims) - 1) / len(victims)
	for k, v := range victims {
		before := look(ctx, t, crashed).Committed[v]
		// The chunk flows in over about half a second, so the victim is
		// busy when it dies and records keep arriving while it is down.
		fed := make(chan error, 1)
		go func() {
			fed <- produceAt(ctx, crashed, crashedRecs[min(len(crashedRecs), k*chunk):min(len(crashedRecs), (k+1)*chunk)], float64(2*chunk))
		}()
		deadline := time.Now().Add(3 * time.Minute)
		for look(ctx, t, crashed).Committed[v] == before {
			eng.checkAlive(ctx, t, crashed, children)
			if time.Now().After(deadline) {
				t.Fatalf("%s committed nothing of chunk %d within 3 minutes; its log ends:\n%s", v, k, children[v].LogTail(30))
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		eng.checkAlive(ctx, t, crashed, children)
		children[v].Kill()
		t.Logf("kill %d: %s after %d records committed", k+1, v, look(ctx, t, crashed).Committed[v])
		children[v] = eng.start(ctx, t, crashed, v)
		if err := <-fed; err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(ctx, t, eng, crashed, children, int64(len(crashedRecs)))
	stopAll(t, children)
	t.Logf("crashed run: %d SIGKILLs (%v) in %s", len(victims), victims, time.Since(start).Round(time.Millisecond))

	// ClickHouse: every event once, in the same profiles.
	a, b := warehouseEvents(ctx, t, clean), warehouseEvents(ctx, t, crashed)
	for run, ev := range map[string]map[string][]string{"clean": a, "crashed": b} {
		n := 0
		for _, ms := range ev {
			n += len(ms)
		}
		if n != len(unique) {
			t.Errorf("%s run: %d event rows in ClickHouse, want %d (one per message id)", run, n, len(unique))
		}
	}
	if diff := diffKeys(a, b); diff != "" {
		t.Errorf("events per profile differ: %s", diff)
	}

	// Merges: the same, so the same profiles survive.
	ma, mb := merges(ctx, t, env, clean), merges(ctx, t, env, crashed)
	if !reflect.DeepEqual(ma, mb) {
		t.Errorf("merges differ: clean %v, crashed %v", ma, mb)
	}
	touched := map[string]bool{}
	for _, m := range ma {
		touched[m[0]], touched[m[1]] = true, true
	}

	// Redis: features, traits and memberships of every profile.
	fa, sa := readers(t, clean)
	fb, sb := readers(t, crashed)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, cb := membershipChanges(ctx, t, env, clean), membershipChanges(ctx, t, env, crashed)
	compared, byVersion := 0, 0
	for profile := range a {
		pa, errA := fa.Profile(ctx, profile, at)
		pb, errB := fb.Profile(ctx, profile, at)
		if errA != nil || errB != nil {
			t.Fatalf("features of %s: %v / %v", profile, errA, errB)
		}
		// The profile's clock is not compared: the expiry timers of this
		// old traffic move it to the wall clock at which they fire.
		if !reflect.DeepEqual(pa.Features, pb.Features) || !sameTraits(pa.Traits, pb.Traits) {
			t.Errorf("profile %s: features %v traits %s clean, features %v traits %s crashed",
				profile, pa.Features, traitsText(pa.Traits), pb.Features, traitsText(pb.Traits))
		}
		memA, _, errA := sa.Members(ctx, profile)
		memB, _, errB := sb.Members(ctx, profile)
		if errA != nil && !errors.Is(errA, segments.ErrNotFound) || errB != nil && !errors.Is(errB, segments.ErrNotFound) {
			t.Fatalf("memberships of %s: %v / %v", profile, errA, errB)
		}
		if !slices.Equal(segmentNames(memA), segmentNames(memB)) {
			t.Errorf("profile %s: members %v clean, %v crashed", profile, memA, memB)
		}
		for run, cs := range map[string][]memberChange{"clean": ca[profile], "crashed": cb[profile]} {
			checkChanges(t, run, profile, cs, memA)
		}
		if !touched[profile] {
			if !reflect.DeepEqual(ca[profile], cb[profile]) {
				t.Errorf("profile %s: membership changes by version differ:\nclean   %v\ncrashed %v", profile, ca[profile], cb[profile])
			}
			if pa.Version != pb.Version {
				t.Errorf("profile %s: %d feature changes clean, %d crashed", profile, pa.Version, pb.Version)
			}
			byVersion++
		}
		compared++
	}
	// Merged-away profiles exited everything; their changes must be
	// consistent too, ending out of every segment.
	for run, cs := range map[string]map[string][]memberChange{"clean": ca, "crashed": cb} {
		for profile, list := range cs {
			if _, ok := a[profile]; !ok {
				checkChanges(t, run, profile, list, nil)
			}
		}
	}
	total := 0
	for _, cs := range cb {
		total += len(cs)
	}
	if compared < 50 || total == 0 {
		t.Fatalf("only %d profiles and %d membership changes: the input does not exercise the pipeline", compared, total)
	}
	t.Logf("%d events, %d profiles (%d untouched by %d merges, compared change by change), %d membership changes: equal after %d SIGKILLs",
		len(unique), compared, byVersion, len(ma), total, len(victims))
}

// smallBatches: small warehouse batches, so that kills land among several.
var smallBatches = []string{"CDP_WAREHOUSE_BATCH_ROWS=300", "CDP_WAREHOUSE_BATCH_AGE=200ms"}

func startAll(ctx context.Context, t *testing.T, p *Pipeline) map[string]*Child {
	t.Helper()
	children := map[string]*Child{}
	t.Cleanup(func() {
		for _, c := range children {
			if !c.Exited() {
				c.Kill()
			}
		}
	})
	for _, n := range pipelineNames {
		c, err := p.Start(ctx, n, smallBatches...)
		if err != nil {
			t.Fatal(err)
		}
		children[n] = c
	}
	return children
}

func stopAll(t *testing.T, children map[string]*Child) {
	t.Helper()
	for _, c := range children {
		if err := c.Stop(time.Minute); err != nil {
			t.Fatalf("cdp run %s after SIGTERM: %v; its log ends:\n%s", c.Name, err, c.LogTail(30))
		}
	}
}

// engine is the test's ClickHouse. The local engine (chDB serving
// clickhouse-local) has been seen to exit when a client is SIGKILLed
// mid-insert; a real server does not. The test then starts it again on its
// data, and the warehouse again if it exited because the engine was gone:
// exactly-once must hold across that too.
type engine struct {
	ch       *testkit.ClickHouseServer
	restarts int
}

// revive starts the engine again if it exited, and reports whether it
// ever did.
func (e *engine) revive(t *testing.T) bool {
	t.Helper()
	if e.ch.Exited() {
		e.restarts++
		b, _ := os.ReadFile(e.ch.Log)
		t.Logf("the ClickHouse engine exited (%d); starting it again on its data. Its log ends:\n%s", e.restarts, testkit.Tail(string(b), 5))
		e.ch.Start()
	}
	return e.restarts > 0
}

// start starts processor name, again after the engine is back if it
// failed because the engine exited.
func (e *engine) start(ctx context.Context, t *testing.T, p *Pipeline, name string) *Child {
	t.Helper()
	for try := 1; ; try++ {
		e.revive(t)
		c, err := p.Start(ctx, name, smallBatches...)
		if err == nil {
			return c
		}
		if name != "warehouse" || !e.ch.Exited() || try == 3 {
			t.Fatal(err)
		}
	}
}

// checkAlive fails the test if a processor ended by itself, except a
// warehouse that ended because the engine did (started again).
func (e *engine) checkAlive(ctx context.Context, t *testing.T, p *Pipeline, children map[string]*Child) {
	t.Helper()
	revived := e.revive(t)
	for name, c := range children {
		if !c.Exited() {
			continue
		}
		if name == "warehouse" && revived {
			t.Logf("cdp run warehouse ended after the engine exited (%v); starting it again", c.Err())
			children[name] = e.start(ctx, t, p, name)
			continue
		}
		t.Fatalf("cdp run %s ended by itself (%v); its log ends:\n%s", c.Name, c.Err(), c.LogTail(40))
	}
}

func produce(ctx context.Context, t *testing.T, p *Pipeline, recs []*kgo.Record) {
	t.Helper()
	if err := produceAt(ctx, p, recs, 0); err != nil {
		t.Fatal(err)
	}
}

// produceAt produces recs at rate per second (0: at once).
func produceAt(ctx context.Context, p *Pipeline, recs []*kgo.Record, rate float64) error {
	cl, err := p.Producer()
	if err != nil {
		return err
	}
	defer cl.Close()
	return p.Produce(ctx, cl, recs, rate, nil)
}

func look(ctx context.Context, t *testing.T, p *Pipeline) Progress {
	t.Helper()
	pr, err := p.Look(ctx, pipelineNames)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// waitSettled waits until identity has committed every raw event and
// every processor all its inputs, at two looks a second apart (timers and
// the fold topic feed the processors after their input ran dry).
func waitSettled(ctx context.Context, t *testing.T, e *engine, p *Pipeline, children map[string]*Child, raw int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for streak := 0; streak < 2; {
		e.checkAlive(ctx, t, p, children)
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline did not settle within 5 minutes: %+v", look(ctx, t, p))
		}
		time.Sleep(time.Second)
		pr := look(ctx, t, p)
		settled := pr.First["identity"] >= raw
		for _, n := range pipelineNames {
			settled = settled && pr.CaughtUp[n]
		}
		if settled {
			streak++
		} else {
			streak = 0
		}
	}
}

// warehouseEvents are the message ids in ClickHouse by surviving profile.
func warehouseEvents(ctx context.Context, t *testing.T, p *Pipeline) map[string][]string {
	t.Helper()
	conn, err := p.ClickHouse()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, `SELECT if(c.profile_id != '', c.profile_id, e.profile_id) AS profile, e.message_id
		FROM events AS e LEFT JOIN profile_canonical AS c ON c.alias_id = e.profile_id`)
	if err != nil {
		t.Fatalf("reading events from ClickHouse: %v", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var profile, id string
		if err := rows.Scan(&profile, &id); err != nil {
			t.Fatal(err)
		}
		out[profile] = append(out[profile], id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// diffKeys describes the first profiles whose message ids differ.
func diffKeys(a, b map[string][]string) string {
	var out []string
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			out = append(out, fmt.Sprintf("%s: %d clean, %d crashed", k, len(v), len(b[k])))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: only crashed (%d)", k, len(v)))
		}
	}
	slices.Sort(out)
	return strings.Join(out[:min(5, len(out))], "; ")
}

// merges are the identity merges as (from, into) pairs, sorted.
func merges(ctx context.Context, t *testing.T, env *testkit.Env, p *Pipeline) [][2]string {
	t.Helper()
	serde := schemas.NewSerde(env.Registry(t))
	var out [][2]string
	for _, r := range env.ReadAll(t, p.Svc.Topic("identity.merges")) {
		native, err := serde.DecodeNative(ctx, r.Value, schemas.IdentityMergeSchema)
		if err != nil {
			t.Fatal(err)
		}
		m := native.(map[string]any)
		out = append(out, [2]string{m["from_profile"].(string), m["into_profile"].(string)})
	}
	slices.SortFunc(out, func(x, y [2]string) int { return strings.Compare(x[0]+"/"+x[1], y[0]+"/"+y[1]) })
	return out
}

// memberChange is a membership record without its times, which the
// expiry timers of old traffic take from the wall clock.
type memberChange struct {
	Segment, Status, Trigger string
	Version                  int64
}

// membershipChanges reads the membership topic (read_committed) by
// profile, in topic order.
func membershipChanges(ctx context.Context, t *testing.T, env *testkit.Env, p *Pipeline) map[string][]memberChange {
	t.Helper()
	serde := schemas.NewSerde(env.Registry(t))
	out := map[string][]memberChange{}
	for _, r := range env.ReadAll(t, p.Svc.Topic("segments.membership")) {
		native, err := serde.DecodeNative(ctx, r.Value, schemas.SegmentMembershipSchema)
		if err != nil {
			t.Fatal(err)
		}
		m := native.(map[string]any)
		c := memberChange{Segment: m["segment"].(string), Status: m["status"].(string), Version: m["version"].(int64)}
		if tr, ok := m["trigger_message_id"].(map[string]any); ok {
			c.Trigger, _ = tr["string"].(string)
		}
		id := m["profile_id"].(string)
		out[id] = append(out[id], c)
	}
	return out
}

// checkChanges checks a profile's changes are versions 1..n in order, enter
// a segment only when out of it and exit only when in it, and end in the
// memberships the store holds.
func checkChanges(t *testing.T, run, profile string, cs []memberChange, members []segments.Membership) {
	t.Helper()
	in := map[string]bool{}
	for i, c := range cs {
		if c.Version != int64(i+1) {
			t.Errorf("%s run, profile %s: change %d has version %d (a change lost or repeated): %v", run, profile, i, c.Version, cs)
			return
		}
		if (c.Status == "entered") == in[c.Segment] {
			t.Errorf("%s run, profile %s: %s %s twice in a row: %v", run, profile, c.Status, c.Segment, cs)
			return
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
	if want := segmentNames(members); !slices.Equal(end, want) {
		t.Errorf("%s run, profile %s: the changes end in %v, the store holds %v", run, profile, end, want)
	}
}

func segmentNames(ms []segments.Membership) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Segment
	}
	slices.Sort(out)
	return out
}

func readers(t *testing.T, p *Pipeline) (*features.Reader, *segments.Reader) {
	t.Helper()
	fcfg, fset, err := features.ConfigFrom(p.Topo, p.Svc)
	if err != nil {
		t.Fatal(err)
	}
	scfg, sset, _, err := segments.ConfigFrom(p.Topo, p.Svc)
	if err != nil {
		t.Fatal(err)
	}
	return features.NewReader(p.Redis(), fcfg, fset), segments.NewReader(p.Redis(), scfg, sset, nil)
}

func sameTraits(a, b map[string]json.RawMessage) bool { return traitsText(a) == traitsText(b) }

func traitsText(m map[string]json.RawMessage) string {
	b, _ := json.Marshal(m) // sorted keys
	return string(b)
}
