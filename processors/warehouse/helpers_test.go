package warehouse_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/warehouse"
	"github.com/streamcdp/streamcdp/schemas"
)

// stage is one test's warehouse: its topics, its own ClickHouse database
// with the migrations applied, and a serde to write inputs with.
type stage struct {
	env    *testkit.Env
	conn   driver.Conn // default database: the test's
	dsn    string      // CDP_CLICKHOUSE_DSN naming the test's database
	topics warehouse.Topics
	serde  *schemas.Serde
	group  string
}

func newStage(t testing.TB, partitions int32) *stage { return newStageOn(t, partitions, "") }

// newStageOn is newStage on the ClickHouse dsn names (empty: the stack's).
func newStageOn(t testing.TB, partitions int32, dsn string) *stage {
	t.Helper()
	env := testkit.New(t)
	if dsn != "" {
		env.Services.ClickHouseDSN = dsn
	}
	s := &stage{env: env, conn: env.ClickHouse(t), dsn: dsnWithDatabase(t, env.Services.ClickHouseDSN, env.ClickHouseDatabase()),
		topics: warehouse.TopicsOf(env.Services), serde: schemas.NewSerde(env.Registry(t)),
		group: env.Services.TopicPrefix + "-warehouse"}
	for _, tp := range []string{"events.resolved", "identity.merges", "segments.membership", "profiles.changes", "events.dlq"} {
		env.Topic(t, tp, partitions)
	}
	env.Services.ClickHouseDSN = s.dsn
	conn, db, err := warehouse.Connect(testkit.Context(t), s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer db.Close()
	if err := migrations.Up(testkit.Context(t), db, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// dsnWithDatabase is dsn with its database replaced.
func dsnWithDatabase(t testing.TB, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("CDP_CLICKHOUSE_DSN: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

func testLogger(t testing.TB) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	return zap.NewNop()
}

// start runs a warehouse in this process, tuned as `cdp run warehouse`
// tunes it, until the returned stop is called.
func (s *stage) start(t testing.TB, cfg warehouse.Config) (*processing.Runner, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, closeFn, err := warehouse.Open(ctx, s.env.Services, cfg, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rc := processing.Config{Name: "warehouse", Brokers: s.env.Services.KafkaBrokers, Group: s.group,
		Inputs:     []string{s.topics.Resolved, s.topics.Merges, s.topics.Membership, s.topics.Changes, s.topics.DeadLetters},
		InstanceID: s.env.ID, MaxBackoff: 500 * time.Millisecond, DeadLetterTopic: s.topics.DeadLetters, Logger: testLogger(t)}
	p.Config().Tune(&rc)
	r, err := processing.New(rc, p)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("warehouse runner: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait(); closeFn() }) }
	t.Cleanup(stop)
	return r, stop
}

// produce writes records and waits for them.
func (s *stage) produce(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	ctx := testkit.Context(t)
	cl := s.env.Kafka(t)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", len(recs), err)
	}
}

// waitConsumed waits until the warehouse group has committed the end of
// every input topic.
func (s *stage) waitConsumed(t testing.TB, timeout time.Duration) {
	t.Helper()
	adm := s.env.Admin(t)
	deadline := time.Now().Add(timeout)
	for !s.consumed(adm) {
		if time.Now().After(deadline) {
			t.Fatalf("the warehouse group did not consume its inputs within %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// consumed reports whether the warehouse group has committed the end of
// every input topic.
func (s *stage) consumed(adm *kadm.Client) bool {
	inputs := []string{s.topics.Resolved, s.topics.Merges, s.topics.Membership, s.topics.Changes, s.topics.DeadLetters}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, inputs...)
	committed, cerr := adm.FetchOffsets(ctx, s.group)
	done := err == nil && cerr == nil
	if done {
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := committed.Lookup(o.Topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
				done = false
			}
		})
	}
	return done
}

// committed is how many input records of the resolved topic the group
// has committed.
func (s *stage) committed(t testing.TB, adm *kadm.Client) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, s.group)
	if err != nil {
		return 0
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == s.topics.Resolved && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// query runs a query whose rows are scanned into dst by scan.
func query(t testing.TB, conn driver.Conn, q string, scan func(rows driver.Rows) error, args ...any) {
	t.Helper()
	rows, err := conn.Query(testkit.Context(t), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func count(t testing.TB, conn driver.Conn, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(testkit.Context(t), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// input is generated traffic made into resolved events directly (no
// identity stage): each valid, distinct event once, its profile a digest of
// the person's first identifier, which is enough for the warehouse.
type input struct {
	resolved  []schemas.ResolvedEvent
	perProf   map[string]int
	orders    int
	lines     int
	revenue   float64
	byMessage map[string]bool
}

func generateInput(t testing.TB, events int, seed uint64) *input {
	t.Helper()
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = max(50, events/40), events, seed
	in := &input{perProf: map[string]int{}, byMessage: map[string]bool{}}
	_, err := generate.Generate(testkit.Context(t), cfg, generate.SinkFunc(func(_ context.Context, line []byte) error {
		ev, err := schemas.ParseJSON(line)
		if err != nil || ev.MessageID == "" || in.byMessage[ev.MessageID] || (ev.UserID == "" && ev.AnonymousID == "") {
			return nil // invalid or a duplicate: identity would not pass it on
		}
		in.byMessage[ev.MessageID] = true
		id := ev.AnonymousID
		if ev.UserID != "" {
			id = ev.UserID
		}
		h := fnv.New64a()
		h.Write([]byte(id))
		r := schemas.ResolvedEvent{ProfileID: fmt.Sprintf("p-%016x", h.Sum64()), Timestamp: ev.EventTime(time.Time{}).UTC(), Event: ev}
		if r.Timestamp.Year() < 2000 || r.Timestamp.Year() > 2100 {
			return nil
		}
		in.resolved = append(in.resolved, r)
		in.perProf[r.ProfileID]++
		if ev.Event == warehouse.OrderCompleted && ev.Commerce != nil {
			in.orders++
			in.lines += len(ev.Commerce.Products)
			in.revenue += *ev.Commerce.Revenue
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// records encodes resolved events for the resolved topic, keyed by profile.
func (s *stage) records(t testing.TB, rs []schemas.ResolvedEvent) []*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t)
	out := make([]*kgo.Record, len(rs))
	for i := range rs {
		v, err := s.serde.EncodeResolved(ctx, s.topics.Resolved, &rs[i])
		if err != nil {
			t.Fatal(err)
		}
		out[i] = &kgo.Record{Topic: s.topics.Resolved, Key: []byte(rs[i].ProfileID), Value: v, Timestamp: rs[i].Timestamp}
	}
	return out
}

// native encodes a record of another topic from its goavro native form.
func (s *stage) native(t testing.TB, topic, schema, key string, v map[string]any) *kgo.Record {
	t.Helper()
	b, err := s.serde.EncodeNative(testkit.Context(t), topic, schema, v)
	if err != nil {
		t.Fatalf("encoding for %s: %v", topic, err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}

// perProfile reads event counts per profile from ClickHouse.
func perProfile(t testing.TB, conn driver.Conn) map[string]int {
	t.Helper()
	got := map[string]int{}
	query(t, conn, "SELECT profile_id, count() FROM events GROUP BY profile_id", func(rows driver.Rows) error {
		var p string
		var n uint64
		err := rows.Scan(&p, &n)
		got[p] = int(n)
		return err
	})
	return got
}

func diffCounts(want, got map[string]int) []string {
	var out []string
	for k, w := range want {
		if got[k] != w {
			out = append(out, fmt.Sprintf("%s: %d, want %d", k, got[k], w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s: %d, want none", k, g))
		}
	}
	slices.Sort(out)
	return out
}
