package warehouse_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/deploy/grafana"
	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/warehouse"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// runIdentity runs the identity stage of the stage's prefix in this
// process (raw -> resolved, merges, dead letters) until stop.
func (s *stage) runIdentity(t *testing.T) (stop func()) {
	t.Helper()
	s.env.Redis(t) // the graph's keys are under the test's prefix; removed at the end
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, closeFn, err := identity.Open(ctx, s.env.Services, topo.Identity, processing.NewMetrics(nil), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := processing.New(processing.Config{Name: "identity", Brokers: s.env.Services.KafkaBrokers, Group: s.env.Services.TopicPrefix + "-identity",
		Inputs: []string{s.env.Services.Topic("events.raw")}, InstanceID: s.env.ID + "-identity", Journal: p.Journal(),
		DeadLetterTopic: s.topics.DeadLetters, MaxBackoff: 500 * time.Millisecond, Logger: testLogger(t)}, p)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("identity runner: %v", err)
		}
	}()
	return func() { cancel(); <-done; closeFn() }
}

// readAll reads a topic with read_committed to its end (everything is
// written when it is called).
func (s *stage) readAll(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t)
	cl := s.env.Kafka(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	var out []*kgo.Record
	for idle := 0; idle < 3; {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		idle = map[bool]int{true: idle + 1, false: 0}[n == 0]
	}
	return out
}

// world is what the panels should show, computed in Go from the generated
// traffic and its truth, and from the records the pipeline wrote to Kafka
// (resolved events, merges, dead letters) and the synthetic segment and
// profile changes: never from ClickHouse.
type world struct {
	truth     *generate.Truth
	events    []schemas.ResolvedEvent
	canonical map[string]string // merged-away profile -> surviving
	merges    []time.Time
	dead      []dlq.Entry
	changes   []memberChange
	profile   string // the Profile dashboard's profile (surviving id)
	email     string // typed into its variable
}

type memberChange struct {
	profile, segment, status string
	time                     time.Time
}

func (w *world) surviving(p string) string {
	for i := 0; i < 64; i++ {
		next, ok := w.canonical[p]
		if !ok {
			return p
		}
		p = next
	}
	return p
}

// TestEveryPanelQuery loads generated traffic through the real pipeline
// (producer, identity, warehouse) plus synthetic segment and profile
// changes, then runs every panel's query of every dashboard, expanded as
// the ClickHouse datasource plugin expands it, and checks its columns and
// its values against counts computed independently.
func TestEveryPanelQuery(t *testing.T) {
	s := newStage(t, 3)
	raw := s.env.Topic(t, "events.raw", 3)
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 250, 5000, 17
	cfg.DupShare, cfg.InvalidShare = 0.02, 0.01
	var lines [][]byte
	truth, err := generate.Generate(testkit.Context(t), cfg, generate.SinkFunc(func(_ context.Context, l []byte) error {
		lines = append(lines, slices.Clone(l))
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t)
	p, err := producer.New(ctx, producer.Config{Brokers: s.env.Services.KafkaBrokers, RegistryURL: s.env.Services.SchemaRegistryURL, Topic: raw})
	if err != nil {
		t.Fatal(err)
	}
	lw := p.NewLineWriter(ctx, producer.LinesOptions{SendInvalid: true})
	for _, l := range lines {
		if err := lw.WriteLine(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := lw.Close(ctx); err != nil || res.Sent != int64(len(lines)) {
		t.Fatalf("producing: %+v %v", res, err)
	}
	p.Close(ctx)
	stopIdentity := s.runIdentity(t)
	_, stopWarehouse := s.start(t, warehouse.Config{BatchAge: 500 * time.Millisecond})

	w := &world{truth: truth, canonical: map[string]string{}}
	// Wait for identity's outputs, then read them back.
	s.waitGroup(t, s.env.Services.TopicPrefix+"-identity", []string{raw}, 2*time.Minute)
	stopIdentity()
	for _, rec := range s.readAll(t, s.topics.Resolved) {
		var r schemas.ResolvedEvent
		if err := s.serde.DecodeResolved(ctx, rec.Value, &r); err != nil {
			t.Fatal(err)
		}
		w.events = append(w.events, r)
	}
	for _, rec := range s.readAll(t, s.topics.Merges) {
		v, err := s.serde.DecodeNative(ctx, rec.Value, schemas.IdentityMergeSchema)
		if err != nil {
			t.Fatal(err)
		}
		m := v.(map[string]any)
		w.canonical[m["from_profile"].(string)] = m["into_profile"].(string)
		w.merges = append(w.merges, m["time"].(time.Time).UTC())
	}
	for _, rec := range s.readAll(t, s.topics.DeadLetters) {
		e, err := dlq.Parse(rec)
		if err != nil {
			t.Fatal(err)
		}
		w.dead = append(w.dead, e)
	}
	if len(w.events) != truth.Counts.Valid || len(w.dead) != len(truth.InvalidEvents) || len(w.merges) == 0 {
		t.Fatalf("pipeline output: %d resolved (truth %d valid), %d dead letters (truth %d invalid), %d merges",
			len(w.events), truth.Counts.Valid, len(w.dead), len(truth.InvalidEvents), len(w.merges))
	}
	s.addSegmentsAndChanges(t, w)
	s.waitConsumed(t, 2*time.Minute)
	stopWarehouse()

	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := time.Now().UTC().Add(time.Hour).Truncate(time.Minute)
	q := grafana.Query{From: from, To: to, Interval: time.Hour, Vars: map[string]string{"profile": w.email}}
	// The Profile dashboard's hidden variable resolves what was typed.
	for _, v := range grafana.Dashboards[3].Variables {
		if v.Query == "" {
			continue
		}
		_, rows := runPanel(t, s.conn, v.Query, q)
		if len(rows) != 1 || rows[0][0] != w.profile {
			t.Fatalf("variable %s for %q = %v, want %s", v.Name, w.email, rows, w.profile)
		}
		q.Vars[v.Name] = rows[0][0].(string)
	}
	// The Customers dashboard's segment picker lists the segments and
	// starts at "All": the plugin then sends every option.
	segVar := grafana.Dashboards[1].Variables[0]
	if _, rows := runPanel(t, s.conn, segVar.Query, q); !reflect.DeepEqual(rows, [][]any{{"engaged"}, {"vip"}}) {
		t.Fatalf("variable %s lists %v, want engaged and vip", segVar.Name, rows)
	}
	q.Multi = map[string][]string{segVar.Name: {"engaged", "vip"}}
	q.All = map[string]bool{segVar.Name: true}
	checks := panelChecks(w, q)
	ran := 0
	for _, d := range grafana.Dashboards {
		for _, p := range d.Panels {
			t.Run(d.File+"/"+p.Key, func(t *testing.T) {
				cols, rows := runPanel(t, s.conn, p.SQL, q)
				if !slices.Equal(cols, p.Columns) {
					t.Fatalf("columns %v, the registry says %v", cols, p.Columns)
				}
				check, ok := checks[p.Key]
				if !ok {
					t.Fatalf("no check for panel %s", p.Key)
				}
				want := check()
				if len(rows) == 0 {
					t.Fatalf("no rows")
				}
				if d := diffRows(rows, want); d != "" {
					t.Errorf("%s\nquery:\n%s", d, mustExpand(t, p.SQL, q))
				}
			})
			ran++
		}
	}
	if ran != len(checks) {
		t.Errorf("%d panels ran, %d checks written: a check names no panel", ran, len(checks))
	}
	// The panels that read the segment picker, with one segment picked:
	// still an array for the plugin, and no longer "All".
	one := q
	one.Multi = map[string][]string{segVar.Name: {"vip"}}
	one.All = nil
	checks = panelChecks(w, one)
	filtered := 0
	for _, p := range grafana.Dashboards[1].Panels {
		if !strings.Contains(p.SQL, "$"+segVar.Name) {
			continue
		}
		filtered++
		t.Run("customers.json/"+p.Key+"/vip", func(t *testing.T) {
			_, rows := runPanel(t, s.conn, p.SQL, one)
			want := checks[p.Key]()
			if len(rows) == 0 || len(want) == len(panelChecks(w, q)[p.Key]()) {
				t.Fatalf("%d rows, %d expected: the selection must filter", len(rows), len(want))
			}
			if d := diffRows(rows, want); d != "" {
				t.Errorf("%s\nquery:\n%s", d, mustExpand(t, p.SQL, one))
			}
		})
	}
	if filtered != 3 {
		t.Errorf("%d Customers panels read $%s, want 3", filtered, segVar.Name)
	}
	aliases := 0
	for a := range w.canonical {
		if w.surviving(a) == w.profile {
			aliases++
		}
	}
	t.Logf("%d panels checked over %d events, %d merges, %d dead letters, %d segment changes; the Profile dashboard shows %s (%q) over %d merged-in profile(s)",
		ran, len(w.events), len(w.merges), len(w.dead), len(w.changes), w.profile, w.email, aliases)
}

// waitGroup waits until group has committed the end of topics.
func (s *stage) waitGroup(t *testing.T, group string, topics []string, timeout time.Duration) {
	t.Helper()
	adm := s.env.Admin(t)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err := adm.ListEndOffsets(ctx, topics...)
		committed, cerr := adm.FetchOffsets(ctx, group)
		cancel()
		done := err == nil && cerr == nil
		if done {
			ends.Each(func(o kadm.ListedOffset) {
				if c, ok := committed.Lookup(o.Topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
					done = false
				}
			})
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not consume %v within %s", group, topics, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// addSegmentsAndChanges writes synthetic segment membership changes and
// profile changes (no segments or features processor exists yet) for the
// busiest profiles, and picks the Profile dashboard's profile.
func (s *stage) addSegmentsAndChanges(t *testing.T, w *world) {
	t.Helper()
	perProfile := map[string]int{}
	emails := map[string]string{}
	for _, e := range w.events {
		sp := w.surviving(e.ProfileID)
		perProfile[sp]++
		if m := email(&e.Event); m != "" && emails[sp] == "" {
			emails[sp] = m
		}
	}
	var busy []string
	for p := range perProfile {
		busy = append(busy, p)
	}
	slices.SortFunc(busy, func(a, b string) int { return cmp.Or(perProfile[b]-perProfile[a], strings.Compare(a, b)) })
	// The busiest profile with an email that others were merged into, so
	// that its panels read over aliases; else the busiest with an email.
	merged := map[string]bool{}
	for a := range w.canonical {
		merged[w.surviving(a)] = true
	}
	for _, p := range busy {
		if emails[p] != "" && merged[p] {
			w.profile, w.email = p, emails[p]
			break
		}
	}
	for _, p := range busy {
		if w.profile == "" && emails[p] != "" {
			w.profile, w.email = p, emails[p]
		}
	}
	if w.profile == "" {
		t.Fatal("no profile with an email")
	}
	day := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	// Profile k of the busiest 40 enters "engaged" on day k%5 and, if k%3
	// == 0, leaves it two days later; every fourth also enters "vip".
	for k, p := range busy[:min(40, len(busy))] {
		at := day.Add(time.Duration(k%5) * 24 * time.Hour).Add(time.Duration(k) * time.Minute)
		w.changes = append(w.changes, memberChange{p, "engaged", "entered", at})
		if k%3 == 0 {
			w.changes = append(w.changes, memberChange{p, "engaged", "exited", at.Add(48 * time.Hour)})
		}
		if k%4 == 0 {
			w.changes = append(w.changes, memberChange{p, "vip", "entered", at.Add(time.Hour)})
		}
	}
	var recs []*kgo.Record
	for _, c := range w.changes {
		recs = append(recs, s.native(t, s.topics.Membership, schemas.SegmentMembershipSchema, c.segment+"/"+c.profile, map[string]any{
			"profile_id": c.profile, "segment": c.segment, "status": c.status, "time": c.time,
			"reason": map[string]any{"string": "rule"}, "trigger_message_id": nil}))
	}
	str := func(v string) map[string]any { return map[string]any{"string": v} }
	num := func(v float64) map[string]any { return map[string]any{"double": v} }
	recs = append(recs,
		s.native(t, s.topics.Changes, schemas.ProfileChangeSchema, w.profile, map[string]any{"profile_id": w.profile, "version": int64(1),
			"time": day, "cause": "event", "trigger_message_id": nil, "merged_from": nil,
			"features": map[string]any{"orders_30d": map[string]any{"old": nil, "new": num(3)}, "top_category": map[string]any{"old": nil, "new": str("Mugs")}},
			"traits":   map[string]any{"plan": map[string]any{"old": nil, "new": str(`"gold"`)}, "tmp": map[string]any{"old": nil, "new": str("1")}}}),
		s.native(t, s.topics.Changes, schemas.ProfileChangeSchema, w.profile, map[string]any{"profile_id": w.profile, "version": int64(2),
			"time": day.Add(time.Hour), "cause": "event", "trigger_message_id": nil, "merged_from": nil,
			"features": map[string]any{"orders_30d": map[string]any{"old": num(3), "new": num(4)}},
			"traits":   map[string]any{"tmp": map[string]any{"old": str("1"), "new": nil}}}),
	)
	s.produce(t, recs)
}

// email is the event's email as the warehouse reads it.
func email(ev *schemas.Event) string {
	if v, ok := schemas.StringValue(ev.Traits["email"]); ok {
		return v
	}
	v, _ := schemas.StringValue(ev.Context.Traits["email"])
	return v
}

func mustExpand(t *testing.T, sql string, q grafana.Query) string {
	t.Helper()
	s, err := grafana.Expand(sql, q)
	if err != nil {
		t.Fatalf("expanding: %v\n%s", err, sql)
	}
	return s
}

// runPanel expands and runs a query and returns its column names and rows,
// values normalised: integers as int64, floats as float64, times in UTC,
// NULL as nil.
func runPanel(t *testing.T, conn driver.Conn, sql string, q grafana.Query) ([]string, [][]any) {
	t.Helper()
	expanded := mustExpand(t, sql, q)
	rows, err := conn.Query(testkit.Context(t), expanded)
	if err != nil {
		t.Fatalf("%v\n%s", err, expanded)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	cols := rows.Columns()
	var out [][]any
	for rows.Next() {
		dst := make([]any, len(types))
		for i, ct := range types {
			dst[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dst...); err != nil {
			t.Fatalf("scanning: %v\n%s", err, expanded)
		}
		row := make([]any, len(dst))
		for i, d := range dst {
			row[i] = normalize(reflect.ValueOf(d).Elem())
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%v\n%s", err, expanded)
	}
	return cols, out
}

func normalize(v reflect.Value) any {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return x.UTC()
	case string:
		return x
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(v.Uint())
	case reflect.Float32, reflect.Float64:
		return v.Float()
	}
	return fmt.Sprint(v.Interface())
}

// diffRows compares rows with the expected ones: the same order, numbers
// within a cent, times to the millisecond.
func diffRows(got, want [][]any) string {
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			fmt.Fprintf(&b, "row %d missing: want %v\n", i, want[i])
		case i >= len(want):
			fmt.Fprintf(&b, "row %d extra: %v\n", i, got[i])
		case !rowEqual(got[i], want[i]):
			fmt.Fprintf(&b, "row %d: got %v, want %v\n", i, got[i], want[i])
		}
		if b.Len() > 3000 {
			b.WriteString("...\n")
			break
		}
	}
	return b.String()
}

func rowEqual(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch x := b[i].(type) {
		case float64:
			y, ok := asFloat(a[i])
			if !ok || math.Abs(x-y) > 0.01 {
				return false
			}
		case int:
			if y, ok := a[i].(int64); !ok || y != int64(x) {
				return false
			}
		case time.Time:
			y, ok := a[i].(time.Time)
			if !ok || !y.Truncate(time.Millisecond).Equal(x.Truncate(time.Millisecond)) {
				return false
			}
		case anyValue:
		default:
			if a[i] != b[i] {
				return false
			}
		}
	}
	return true
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// anyValue in an expected row accepts whatever the query returned (a
// value checked separately, like a latency).
type anyValue struct{}

type key2 struct {
	a time.Time
	b string
}

// sortedRows turns a map into rows ordered by time, then label.
func sortedRows[V any](m map[key2]V, row func(k key2, v V) []any) [][]any {
	keys := make([]key2, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y key2) int { return cmp.Or(x.a.Compare(y.a), strings.Compare(x.b, y.b)) })
	out := make([][]any, len(keys))
	for i, k := range keys {
		out[i] = row(k, m[k])
	}
	return out
}

func inRange(tm time.Time, q grafana.Query) bool {
	// The macros compare with whole seconds, inclusive.
	s := tm.Truncate(time.Second)
	return !s.Before(q.From.Truncate(time.Second)) && !tm.After(q.To.Truncate(time.Second))
}

func dayOf(tm time.Time) time.Time { return tm.UTC().Truncate(24 * time.Hour) }

func orderOf(e *schemas.ResolvedEvent) *schemas.Commerce {
	if e.Event.Type == schemas.Track && e.Event.Event == warehouse.OrderCompleted && e.Event.Commerce != nil {
		return e.Event.Commerce
	}
	return nil
}

// panelChecks returns, per panel key, the rows the panel must show.
func panelChecks(w *world, q grafana.Query) map[string]func() [][]any {
	bucket := func(tm time.Time) time.Time { return tm.UTC().Truncate(q.Interval) }
	type activity struct{ first, last time.Time }
	surviving := map[string]*activity{}
	for _, e := range w.events {
		sp := w.surviving(e.ProfileID)
		a := surviving[sp]
		if a == nil {
			a = &activity{e.Timestamp, e.Timestamp}
			surviving[sp] = a
		}
		if e.Timestamp.Before(a.first) {
			a.first = e.Timestamp
		}
		if e.Timestamp.After(a.last) {
			a.last = e.Timestamp
		}
	}
	aliases := map[string]bool{w.profile: true}
	for a := range w.canonical {
		if w.surviving(a) == w.profile {
			aliases[a] = true
		}
	}
	// The membership changes of the segments picked on the Customers
	// dashboard.
	var changes []memberChange
	for _, c := range w.changes {
		if q.All["segment"] || slices.Contains(q.Multi["segment"], c.segment) {
			changes = append(changes, c)
		}
	}
	// The latest change of each profile in each segment.
	latest := func(changes []memberChange) map[key2]memberChange {
		m := map[key2]memberChange{}
		for _, c := range changes {
			k := key2{b: c.segment + "\x00" + c.profile}
			if old, ok := m[k]; !ok || c.time.After(old.time) {
				m[k] = c
			}
		}
		return m
	}
	return map[string]func() [][]any{
		"events_per_interval": func() [][]any {
			m := map[key2]int{}
			for _, e := range w.events {
				if min := e.Timestamp.Truncate(time.Minute); inRange(min, q) {
					m[key2{bucket(min), string(e.Event.Type)}]++
				}
			}
			return sortedRows(m, func(k key2, n int) []any { return []any{k.a, k.b, n} })
		},
		"events_by_type": func() [][]any {
			// Straight from the generator's truth.
			var rows [][]any
			for typ, n := range w.truth.Counts.ByType {
				rows = append(rows, []any{typ, n})
			}
			sort.Slice(rows, func(i, j int) bool {
				return rows[i][1].(int) > rows[j][1].(int) || rows[i][1] == rows[j][1] && rows[i][0].(string) < rows[j][0].(string)
			})
			return rows
		},
		"active_profiles": func() [][]any {
			days := map[key2]map[string]bool{}
			for _, e := range w.events {
				k := key2{a: dayOf(e.Timestamp)}
				if days[k] == nil {
					days[k] = map[string]bool{}
				}
				days[k][e.ProfileID] = true
			}
			return sortedRows(days, func(k key2, ps map[string]bool) []any { return []any{k.a, len(ps)} })
		},
		"new_profiles": func() [][]any {
			m := map[key2]int{}
			for _, a := range surviving {
				if inRange(a.first, q) {
					m[key2{a: dayOf(a.first)}]++
				}
			}
			return sortedRows(m, func(k key2, n int) []any { return []any{k.a, n} })
		},
		"merges": func() [][]any {
			m := map[key2]int{}
			for _, tm := range w.merges {
				if inRange(tm, q) {
					m[key2{a: bucket(tm)}]++
				}
			}
			return sortedRows(m, func(k key2, n int) []any { return []any{k.a, n} })
		},
		"dead_letters": func() [][]any {
			m := map[key2]int{}
			for _, e := range w.dead {
				if inRange(e.Time, q) {
					m[key2{bucket(e.Time), e.Code}]++
				}
			}
			return sortedRows(m, func(k key2, n int) []any { return []any{k.a, k.b, n} })
		},
		"processing_lag": func() [][]any {
			// Insert times are ClickHouse's: only the event count is known
			// here; the lags must be positive (checked by the row shape).
			return [][]any{{anyValue{}, anyValue{}, anyValue{}, len(w.events)}}
		},
		"segment_sizes": func() [][]any {
			net := map[key2]int{}
			for _, c := range changes {
				d := 1
				if c.status == "exited" {
					d = -1
				}
				net[key2{dayOf(c.time), c.segment}] += d
			}
			running := map[string]int{}
			return sortedRows(net, func(k key2, n int) []any {
				running[k.b] += n
				return []any{k.a, k.b, running[k.b]}
			})
		},
		"segment_members_now": func() [][]any {
			members := map[string]int{}
			for _, c := range latest(changes) {
				members[c.segment] += map[string]int{"entered": 1, "exited": 0}[c.status]
			}
			var rows [][]any
			for s, n := range members {
				rows = append(rows, []any{s, n})
			}
			sort.Slice(rows, func(i, j int) bool {
				return rows[i][1].(int) > rows[j][1].(int) || rows[i][1] == rows[j][1] && rows[i][0].(string) < rows[j][0].(string)
			})
			return rows
		},
		"segment_flows": func() [][]any {
			type io struct{ in, out int }
			m := map[key2]io{}
			for _, c := range changes {
				k := key2{dayOf(c.time), c.segment}
				v := m[k]
				if c.status == "entered" {
					v.in++
				} else {
					v.out++
				}
				m[k] = v
			}
			return sortedRows(m, func(k key2, v io) []any { return []any{k.a, k.b, v.in, v.out} })
		},
		"lifecycle": func() [][]any {
			end := q.To.Truncate(time.Second)
			m := map[key2]int{}
			for _, a := range surviving {
				stage := "churned"
				switch {
				case !a.first.Before(end.Add(-7 * 24 * time.Hour)):
					stage = "new"
				case !a.last.Before(end.Add(-30 * 24 * time.Hour)):
					stage = "active"
				case !a.last.Before(end.Add(-90 * 24 * time.Hour)):
					stage = "lapsing"
				}
				m[key2{b: stage}]++
			}
			return sortedRows(m, func(k key2, n int) []any { return []any{k.b, n} })
		},
		"orders_summary": func() [][]any {
			c := w.truth.Counts
			return [][]any{{c.Orders, c.Revenue, c.Revenue / float64(c.Orders)}}
		},
		"revenue_per_day": func() [][]any {
			type rev struct {
				sum float64
				n   int
			}
			m := map[key2]rev{}
			for i := range w.events {
				if c := orderOf(&w.events[i]); c != nil {
					k := key2{dayOf(w.events[i].Timestamp), c.Currency}
					v := m[k]
					v.sum += *c.Revenue
					v.n++
					m[k] = v
				}
			}
			return sortedRows(m, func(k key2, v rev) []any { return []any{k.a, k.b, v.sum, v.n} })
		},
		"funnel": func() [][]any {
			var rows [][]any
			for _, step := range grafana.FunnelSteps {
				ps := map[string]bool{}
				for _, e := range w.events {
					if e.Event.Event == step {
						ps[e.ProfileID] = true
					}
				}
				rows = append(rows, []any{step, w.truth.Counts.ByEvent[step], len(ps)})
			}
			return rows
		},
		"top_products": func() [][]any {
			type prod struct {
				name, category string
				units          int
				revenue        float64
			}
			m := map[string]*prod{}
			for i := range w.events {
				if c := orderOf(&w.events[i]); c != nil {
					for _, p := range c.Products {
						x := m[p.ProductID]
						if x == nil {
							x = &prod{name: p.Name, category: p.Category}
							m[p.ProductID] = x
						}
						x.units += int(*p.Quantity)
						x.revenue += *p.Price * float64(*p.Quantity)
					}
				}
			}
			ids := make([]string, 0, len(m))
			for id := range m {
				ids = append(ids, id)
			}
			round := func(f float64) float64 { return math.Round(f*100) / 100 }
			slices.SortFunc(ids, func(a, b string) int {
				return cmp.Or(cmp.Compare(round(m[b].revenue), round(m[a].revenue)), strings.Compare(a, b))
			})
			var rows [][]any
			for _, id := range ids[:min(10, len(ids))] {
				rows = append(rows, []any{id, m[id].name, m[id].category, m[id].units, m[id].revenue})
			}
			return rows
		},
		"revenue_by_category": func() [][]any {
			m := map[string]float64{}
			for i := range w.events {
				if c := orderOf(&w.events[i]); c != nil {
					for _, p := range c.Products {
						m[p.Category] += *p.Price * float64(*p.Quantity)
					}
				}
			}
			var rows [][]any
			for c, r := range m {
				rows = append(rows, []any{c, r})
			}
			sort.Slice(rows, func(i, j int) bool {
				a, b := math.Round(rows[i][1].(float64)*100), math.Round(rows[j][1].(float64)*100)
				return a > b || a == b && rows[i][0].(string) < rows[j][0].(string)
			})
			return rows
		},
		"identities": func() [][]any {
			type seen struct{ first, last time.Time }
			m := map[key2]*seen{}
			for _, e := range w.events {
				if !aliases[e.ProfileID] {
					continue
				}
				ev := &e.Event
				for _, id := range [][2]string{{"user_id", ev.UserID}, {"anonymous_id", ev.AnonymousID},
					{"email", strings.ToLower(email(ev))}, {"device_id", ev.Context.Device.ID}} {
					if id[1] == "" {
						continue
					}
					k := key2{b: id[0] + "\x00" + id[1]}
					x := m[k]
					if x == nil {
						x = &seen{e.Timestamp, e.Timestamp}
						m[k] = x
					}
					if e.Timestamp.Before(x.first) {
						x.first = e.Timestamp
					}
					if e.Timestamp.After(x.last) {
						x.last = e.Timestamp
					}
				}
			}
			return sortedRows(m, func(k key2, v *seen) []any {
				typ, val, _ := strings.Cut(k.b, "\x00")
				return []any{typ, val, v.first, v.last}
			})
		},
		"traits": func() [][]any {
			day := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
			return [][]any{
				{"feature", "orders_30d", "4", day.Add(time.Hour)},
				{"feature", "top_category", "Mugs", day},
				{"trait", "plan", `"gold"`, day},
			}
		},
		"segments_now": func() [][]any {
			var rows [][]any
			for _, c := range latest(w.changes) {
				if c.profile == w.profile && c.status == "entered" {
					rows = append(rows, []any{c.segment, c.time})
				}
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i][0].(string) < rows[j][0].(string) })
			return rows
		},
		"segment_history": func() [][]any {
			var rows [][]any
			for _, c := range w.changes {
				if c.profile == w.profile {
					rows = append(rows, []any{c.time, c.segment, c.status, "rule"})
				}
			}
			sort.Slice(rows, func(i, j int) bool {
				a, b := rows[i][0].(time.Time), rows[j][0].(time.Time)
				return a.After(b) || a.Equal(b) && rows[i][1].(string) < rows[j][1].(string)
			})
			return rows
		},
		"timeline": func() [][]any {
			var evs []schemas.ResolvedEvent
			for _, e := range w.events {
				if aliases[e.ProfileID] && inRange(e.Timestamp, q) {
					evs = append(evs, e)
				}
			}
			slices.SortFunc(evs, func(a, b schemas.ResolvedEvent) int {
				return cmp.Or(b.Timestamp.Compare(a.Timestamp), strings.Compare(a.Event.MessageID, b.Event.MessageID))
			})
			var rows [][]any
			for _, e := range evs[:min(500, len(evs))] {
				ev := &e.Event
				var product, order string
				revenue := 0.0
				if c := ev.Commerce; c != nil {
					product, order = c.ProductID, c.OrderID
					if c.Revenue != nil {
						revenue = *c.Revenue
					}
				}
				rows = append(rows, []any{e.Timestamp, string(ev.Type), ev.Event, ev.Name, ev.Context.Page.Path, product, order, revenue})
			}
			return rows
		},
	}
}
