package warehouse_test

import (
	"math"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/warehouse"
	"github.com/streamcdp/streamcdp/schemas"
)

// TestEveryInputLandsOnce writes every kind of input (resolved events,
// merges, membership changes, profile changes, dead letters and a record
// that cannot be decoded) and checks every table, the current-state tables
// and a rollup against the input.
func TestEveryInputLandsOnce(t *testing.T) {
	s := newStage(t, 2)
	in := generateInput(t, 3000, 3)
	recs := s.records(t, in.resolved)
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	str := func(v string) map[string]any { return map[string]any{"string": v} }
	recs = append(recs,
		s.native(t, s.topics.Merges, schemas.IdentityMergeSchema, "b", map[string]any{"merge_id": "m1", "from_profile": "a", "into_profile": "b",
			"identifiers": []any{map[string]any{"type": "email", "value": "x@y.z"}}, "trigger_message_id": str("msg-1"), "rule": "email", "time": t0}),
		s.native(t, s.topics.Merges, schemas.IdentityMergeSchema, "c", map[string]any{"merge_id": "m2", "from_profile": "b", "into_profile": "c",
			"identifiers": []any{}, "trigger_message_id": nil, "rule": "user_id", "time": t0.Add(time.Minute)}),
		s.native(t, s.topics.Membership, schemas.SegmentMembershipSchema, "c", map[string]any{"profile_id": "c", "segment": "vip",
			"status": "entered", "time": t0, "reason": str("orders_30d >= 3"), "trigger_message_id": nil}),
		s.native(t, s.topics.Membership, schemas.SegmentMembershipSchema, "c", map[string]any{"profile_id": "c", "segment": "vip",
			"status": "exited", "time": t0.Add(time.Hour), "reason": nil, "trigger_message_id": nil}),
		s.native(t, s.topics.Membership, schemas.SegmentMembershipSchema, "d", map[string]any{"profile_id": "d", "segment": "vip",
			"status": "entered", "time": t0.Add(2 * time.Hour), "reason": nil, "trigger_message_id": nil}),
		s.native(t, s.topics.Changes, schemas.ProfileChangeSchema, "c", map[string]any{"profile_id": "c", "version": int64(1), "time": t0,
			"cause": "event", "trigger_message_id": str("msg-1"), "merged_from": nil,
			"features": map[string]any{
				"orders_30d": map[string]any{"old": nil, "new": map[string]any{"double": 3.0}},
				"last_cat":   map[string]any{"old": nil, "new": map[string]any{"string": "Mugs"}},
			},
			"traits": map[string]any{"plan": map[string]any{"old": nil, "new": str(`"gold"`)}}}),
		s.native(t, s.topics.Changes, schemas.ProfileChangeSchema, "c", map[string]any{"profile_id": "c", "version": int64(2), "time": t0.Add(time.Minute),
			"cause": "expiry", "trigger_message_id": nil, "merged_from": nil,
			"features": map[string]any{"orders_30d": map[string]any{"old": map[string]any{"double": 3.0}, "new": nil}},
			"traits":   map[string]any{}}),
		dlq.New(&kgo.Record{Topic: s.env.Services.Topic("events.raw"), Partition: 1, Offset: 7, Value: []byte("x")}, s.topics.DeadLetters,
			dlq.Failure{Code: "bad_json", Stage: "decode", Reason: "not JSON"}, t0),
		&kgo.Record{Topic: s.topics.Merges, Key: []byte("z"), Value: []byte("not avro")},
	)
	s.produce(t, recs)
	_, stop := s.start(t, warehouse.Config{BatchAge: 300 * time.Millisecond})
	s.waitConsumed(t, 2*time.Minute)
	stop()

	c := s.conn
	n := len(in.resolved)
	if got := count(t, c, "SELECT count() FROM events"); got != uint64(n) {
		t.Errorf("events: %d rows, want %d", got, n)
	}
	if got := count(t, c, "SELECT uniqExact(message_id) FROM events"); got != uint64(n) {
		t.Errorf("events: %d distinct messages, want %d", got, n)
	}
	if d := diffCounts(in.perProf, perProfile(t, c)); len(d) > 0 {
		t.Errorf("events per profile differ: %v", d[:min(5, len(d))])
	}
	if got := count(t, c, "SELECT count() FROM orders"); got != uint64(in.orders) || in.orders == 0 {
		t.Errorf("orders: %d, want %d", got, in.orders)
	}
	if got := count(t, c, "SELECT count() FROM order_lines"); got != uint64(in.lines) {
		t.Errorf("order lines: %d, want %d", got, in.lines)
	}
	var revenue, lineAmount float64
	if err := c.QueryRow(testkit.Context(t), "SELECT (SELECT sum(revenue) FROM orders), (SELECT sum(amount) FROM order_lines)").Scan(&revenue, &lineAmount); err != nil {
		t.Fatal(err)
	}
	if math.Abs(revenue-in.revenue) > 0.01 || math.Abs(lineAmount-in.revenue) > 0.01 {
		t.Errorf("revenue %.2f, lines %.2f, want %.2f", revenue, lineAmount, in.revenue)
	}
	if got := count(t, c, "SELECT sum(events) FROM events_per_minute"); got != uint64(n) {
		t.Errorf("events_per_minute sums to %d, want %d", got, n)
	}
	// Merges: a into b, then b into c: both end in c.
	canon := map[string]string{}
	query(t, c, "SELECT alias_id, profile_id FROM profile_canonical", func(rows driver.Rows) error {
		var a, p string
		err := rows.Scan(&a, &p)
		canon[a] = p
		return err
	})
	if canon["a"] != "c" || canon["b"] != "c" || len(canon) != 2 {
		t.Errorf("profile_canonical = %v, want a and b -> c", canon)
	}
	if got := count(t, c, "SELECT count() FROM segment_members FINAL WHERE segment = 'vip' AND is_member"); got != 1 {
		t.Errorf("vip has %d members, want 1 (c exited, d entered)", got)
	}
	var num *float64
	var label *string
	if err := c.QueryRow(testkit.Context(t), "SELECT argMax(number, version) FROM profile_features WHERE profile_id = 'c' AND name = 'orders_30d'").Scan(&num); err != nil {
		t.Fatal(err)
	}
	if num != nil {
		t.Errorf("orders_30d of c = %v after it was cleared, want NULL", *num)
	}
	if err := c.QueryRow(testkit.Context(t), "SELECT argMax(label, version) FROM profile_features WHERE profile_id = 'c' AND name = 'last_cat'").Scan(&label); err != nil {
		t.Fatal(err)
	}
	if label == nil || *label != "Mugs" {
		t.Errorf("last_cat of c = %v, want Mugs", label)
	}
	if got := count(t, c, "SELECT count() FROM profile_traits FINAL WHERE profile_id = 'c' AND name = 'plan' AND value = '\"gold\"'"); got != 1 {
		t.Errorf("trait plan of c: %d rows with \"gold\", want 1", got)
	}
	if got := count(t, c, "SELECT count() FROM dead_letters WHERE code = 'bad_json' AND source_offset = 7"); got != 1 {
		t.Errorf("dead_letters: %d rows of the bad_json letter, want 1", got)
	}
	// The undecodable merge record was dead-lettered by the warehouse and
	// stored from there.
	if got := count(t, c, "SELECT count() FROM dead_letters WHERE stage = 'warehouse' AND source_topic = ?", s.topics.Merges); got != 1 {
		t.Errorf("dead_letters: %d rows from the warehouse for the bad merge, want 1", got)
	}
}
