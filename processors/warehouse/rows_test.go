package warehouse

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/schemas"
)

func ptr[T any](v T) *T { return &v }

func TestAddOrder(t *testing.T) {
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	order := func(rev, total *float64, products ...schemas.Product) schemas.ResolvedEvent {
		return schemas.ResolvedEvent{ProfileID: "p1", Timestamp: at, Event: schemas.Event{MessageID: "m1", Type: schemas.Track, Event: OrderCompleted,
			Commerce: &schemas.Commerce{OrderID: "o1", Currency: "GBP", Revenue: rev, Total: total, Products: products}}}
	}
	mug := schemas.Product{ProductID: "mug", Category: "Kitchen", Price: ptr(4.5), Quantity: ptr(int64(2))}
	pen := schemas.Product{ProductID: "pen", Price: ptr(1.25)} // no quantity: 1
	for _, tc := range []struct {
		name                 string
		ev                   schemas.ResolvedEvent
		skipOrder, skipLines bool
		orders, lines        int
		revenue              float64
		qty                  uint32
		amounts              []float64
		wantLineQty          []uint32
	}{
		{name: "revenue and lines", ev: order(ptr(10.25), nil, mug, pen), orders: 1, lines: 2, revenue: 10.25, qty: 3,
			amounts: []float64{9, 1.25}, wantLineQty: []uint32{2, 1}},
		{name: "total when no revenue", ev: order(nil, ptr(7.0), pen), orders: 1, lines: 1, revenue: 7, qty: 1,
			amounts: []float64{1.25}, wantLineQty: []uint32{1}},
		{name: "no products", ev: order(ptr(3.0), nil), orders: 1, revenue: 3},
		{name: "lines already in ClickHouse", ev: order(ptr(10.25), nil, mug, pen), skipLines: true, orders: 1, revenue: 10.25, qty: 3},
		{name: "order already in ClickHouse", ev: order(ptr(10.25), nil, mug, pen), skipOrder: true, lines: 2,
			amounts: []float64{9, 1.25}, wantLineQty: []uint32{2, 1}},
		{name: "not an order", ev: func() schemas.ResolvedEvent {
			e := order(ptr(1.0), nil, mug)
			e.Event.Event = "Checkout Started"
			return e
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, l := newOrdersBuffer(), newLinesBuffer()
			addOrder(o, l, &tc.ev, position{"t", 1, 42}, tc.skipOrder, tc.skipLines)
			if o.rows() != tc.orders || l.rows() != tc.lines {
				t.Fatalf("%d orders and %d lines, want %d and %d", o.rows(), l.rows(), tc.orders, tc.lines)
			}
			for _, c := range append(o.cols, l.cols...) {
				if n := c.length(); n != o.rows() && n != l.rows() {
					t.Errorf("column %s has %d values: rows are ragged", c.name(), n)
				}
			}
			if tc.orders > 0 && (o.revenue.v[0] != tc.revenue || o.quantity.v[0] != tc.qty || o.offset.v[0] != 42 || o.lines.v[0] != uint16(len(tc.ev.Event.Commerce.Products))) {
				t.Errorf("order revenue %v qty %v offset %v lines %v", o.revenue.v, o.quantity.v, o.offset.v, o.lines.v)
			}
			if !slices.Equal(l.amount.v, tc.amounts) || !slices.Equal(l.quantity.v, tc.wantLineQty) {
				t.Errorf("line amounts %v quantities %v, want %v %v", l.amount.v, l.quantity.v, tc.amounts, tc.wantLineQty)
			}
		})
	}
}

func TestChangesBuffer(t *testing.T) {
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	b := newChangesBuffer()
	n := native{"profile_id": "p1", "version": int64(7), "time": at, "cause": "merge",
		"trigger_message_id": map[string]any{"string": "m1"}, "merged_from": map[string]any{"string": "p0"},
		"features": map[string]any{
			"orders": map[string]any{"old": nil, "new": map[string]any{"double": 3.0}},
			"cat":    map[string]any{"old": nil, "new": map[string]any{"string": "Mugs"}},
			"gone":   map[string]any{"old": map[string]any{"double": 1.0}, "new": nil},
		},
		"traits": map[string]any{
			"plan":    map[string]any{"old": nil, "new": map[string]any{"string": `"gold"`}},
			"removed": map[string]any{"old": map[string]any{"string": "1"}, "new": nil},
		},
	}
	if err := b.add(n, position{"t", 0, 5}); err != nil {
		t.Fatal(err)
	}
	if b.version.v[0] != 7 || b.cause.v[0] != "merge" || b.triggerMessageID.v[0] != "m1" || b.mergedFrom.v[0] != "p0" {
		t.Errorf("version %v cause %v trigger %v merged_from %v", b.version.v, b.cause.v, b.triggerMessageID.v, b.mergedFrom.v)
	}
	if f := b.features.v[0]; len(f) != 1 || f["orders"] != 3 {
		t.Errorf("numeric features %v", f)
	}
	if f := b.featureLabels.v[0]; len(f) != 1 || f["cat"] != "Mugs" {
		t.Errorf("string features %v", f)
	}
	if c := b.featuresCleared.v[0]; !slices.Equal(c, []string{"gone"}) {
		t.Errorf("cleared features %v", c)
	}
	if tr := b.traits.v[0]; len(tr) != 1 || tr["plan"] != `"gold"` || !slices.Equal(b.traitsCleared.v[0], []string{"removed"}) {
		t.Errorf("traits %v cleared %v", tr, b.traitsCleared.v[0])
	}
	if err := b.add(native{"profile_id": "p1"}, position{"t", 0, 6}); err == nil || b.rows() != 1 {
		t.Errorf("a change without a time: err %v, %d rows", err, b.rows())
	}
}

func TestNativeGet(t *testing.T) {
	at := time.Unix(10, 0)
	for _, tc := range []struct {
		name string
		v    any
		want any
	}{
		{"plain", "x", "x"},
		{"union string", map[string]any{"string": "x"}, "x"},
		{"union long", map[string]any{"long": int64(3)}, int64(3)},
		{"union timestamp", map[string]any{"long.timestamp-millis": at}, at},
		{"null", nil, nil},
		{"record stays a record", map[string]any{"type": map[string]any{}}, map[string]any{"type": map[string]any{}}},
	} {
		got := native{"f": tc.v}.get("f")
		if gotJSON, wantJSON := jsonOf(got), jsonOf(tc.want); gotJSON != wantJSON {
			t.Errorf("%s: get = %s, want %s", tc.name, gotJSON, wantJSON)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestToken(t *testing.T) {
	b := newMembershipBuffer()
	add := func(offs ...int64) {
		b.reset()
		for _, o := range offs {
			if err := b.add(native{"time": time.Unix(0, 0), "profile_id": "p"}, position{"tp", 2, o}); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(10, 11, 12)
	a := b.token()
	add(10, 11, 12)
	if b.token() != a {
		t.Errorf("the same batch got two tokens")
	}
	add(10, 12)
	if tok := b.token(); tok == a {
		t.Errorf("a batch over the same range with other rows got the same token %s", tok)
	}
	if !strings.HasPrefix(a, "segment_membership_changes/tp/2/10-12/3/") {
		t.Errorf("token %s does not name the table, partition and range", a)
	}
}

func TestOffsets(t *testing.T) {
	o := offsets{set: map[int64]struct{}{4: {}, 6: {}}, max: 6}
	for off, want := range map[int64]bool{3: false, 4: true, 5: false, 6: true, 7: false} {
		if o.has(off) != want {
			t.Errorf("has(%d) = %v", off, !want)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Config
		err  string
		rows int
		poll int
	}{
		{name: "defaults", rows: 50_000, poll: 5000},
		{name: "small batches cut polls", in: Config{BatchRows: 500}, rows: 500, poll: 500},
		{name: "age above the transaction limit", in: Config{BatchAge: 6 * time.Second}, err: "above the 5s"},
		{name: "negative", in: Config{BatchRows: -1}, err: "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.in
			err := c.defaults()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var rc processing.Config
			c.Tune(&rc)
			if rc.MaxTxnRecords != tc.rows || rc.MaxPollRecords != tc.poll || !rc.HoldWhenCaughtUp || rc.CommitInterval != 2*time.Second || rc.MaxTxnBytes != 32<<20 {
				t.Errorf("tuned %+v", rc)
			}
		})
	}
}
