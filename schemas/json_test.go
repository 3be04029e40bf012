package schemas_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/schemas"
)

const fixtures = "../testdata/events/"

func parseLine(t *testing.T, line []byte) schemas.Event {
	t.Helper()
	var ev schemas.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("parsing %s: %v", line, err)
	}
	return ev
}

// Every valid fixture survives JSON -> Event -> JSON -> Event, and
// Event -> Avro -> Event through both the compiled decoder and goavro.
func TestFixturesRoundTrip(t *testing.T) {
	_, cl := fakeRegistry(t)
	s := schemas.NewSerde(cl)
	for i, line := range readJSONL(t, fixtures+"valid.jsonl") {
		ev := parseLine(t, line)
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("line %d: marshal: %v", i+1, err)
		}
		if again := parseLine(t, out); !reflect.DeepEqual(again, ev) {
			t.Errorf("line %d: JSON round trip changed the event:\n%s\n%s", i+1, line, out)
		}
		frame, err := s.Encode(ctx(t), "fixtures.events.raw", ev)
		if err != nil {
			t.Fatalf("line %d: encode: %v", i+1, err)
		}
		got, err := s.Decode(ctx(t), frame)
		if err != nil {
			t.Fatalf("line %d: decode: %v", i+1, err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("line %d: Avro round trip changed the event:\n got %+v\nwant %+v", i+1, got, ev)
		}
		native, err := s.DecodeNative(ctx(t), frame, "")
		if err != nil {
			t.Fatalf("line %d: goavro decode: %v", i+1, err)
		}
		ref, err := schemas.FromNative(native)
		if err != nil {
			t.Fatalf("line %d: FromNative: %v", i+1, err)
		}
		if !reflect.DeepEqual(ref, ev) {
			t.Errorf("line %d: goavro path disagrees:\n got %+v\nwant %+v", i+1, ref, ev)
		}
	}
}

func TestJSONFields(t *testing.T) {
	lines := readJSONL(t, fixtures+"valid.jsonl")
	order := parseLine(t, lines[0])
	if order.Commerce == nil || *order.Commerce.Revenue != 25.5 || order.Commerce.OrderID != "o-9" || order.Commerce.Currency != "GBP" {
		t.Fatalf("Order Completed commerce = %+v", order.Commerce)
	}
	if p := order.Commerce.Products; len(p) != 1 || *p[0].Price != 12.75 || *p[0].Quantity != 2 || p[0].SKU != "85123A" {
		t.Fatalf("products = %+v", p)
	}
	if len(order.Properties) != 0 {
		t.Errorf("commerce keys must move out of properties, left %v", order.Properties)
	}
	if got := order.OriginalTimestamp; !got.Equal(time.Date(2026, 11, 28, 10, 0, 0, 123e6, time.UTC)) {
		t.Errorf("timestamp = %v", got)
	}
	if email, ok := order.Trait("email"); !ok || email != "ann@example.com" {
		t.Errorf("Trait(email) = %q, %v", email, ok)
	}
	if phone, ok := order.Trait("phone"); !ok || phone != "+44 20 7946 0000" {
		t.Errorf("Trait(phone) from context.traits = %q, %v", phone, ok)
	}
	// Skew correction: received 10:00:01.2 - (sent 10:00:01 - original 10:00:00.123).
	if got, want := order.EventTime(time.Time{}), time.Date(2026, 11, 28, 10, 0, 0, 323e6, time.UTC); !got.Equal(want) {
		t.Errorf("EventTime = %v, want %v", got, want)
	}

	identify := parseLine(t, lines[1])
	for k, want := range map[string]string{"logins": `7`, "vip": `true`, "address": `{"city":"London","postcode":"N1"}`, "plan": `"pro"`} {
		if got := string(identify.Traits[k]); got != want {
			t.Errorf("traits.%s = %s, want %s", k, got, want)
		}
	}

	page := parseLine(t, lines[2])
	if page.Context.Page.URL != "https://shop.example/" || string(page.Context.Extra["page.search"]) != `"?q=mug"` ||
		string(page.Context.Extra["os"]) != `{"name":"iOS","version":"17.1"}` || string(page.Context.Extra["timezone"]) != `"Europe/London"` {
		t.Errorf("context = %+v", page.Context)
	}
	out, _ := json.Marshal(page)
	want := `{"type":"page","messageId":"m-3","anonymousId":"a-8","timestamp":"2026-11-28T10:02:00.000Z",` +
		`"context":{"os":{"name":"iOS","version":"17.1"},"page":{"path":"/","search":"?q=mug","url":"https://shop.example/"},"timezone":"Europe/London"},` +
		`"properties":{"path":"/","title":"Shop"},"name":"Home"}`
	if string(out) != want {
		t.Errorf("marshal:\n got %s\nwant %s", out, want)
	}

	video := parseLine(t, lines[10])
	if video.Commerce != nil || string(video.Properties["price"]) != `"free"` {
		t.Errorf("a non-commerce event keeps its properties: commerce=%+v properties=%v", video.Commerce, video.Properties)
	}
}

func TestJSONErrors(t *testing.T) {
	tests := []struct {
		in, code, field string
	}{
		{`[1,2]`, schemas.CodeBadJSON, ""},
		{`{"type":"track",`, schemas.CodeBadJSON, ""},
		{`null`, schemas.CodeBadJSON, ""},
		{`{"type":"track","userId":42}`, schemas.CodeWrongType, "userId"},
		{`{"type":"track","timestamp":1700000000}`, schemas.CodeWrongType, "timestamp"},
		{`{"type":"track","timestamp":"28/11/2026"}`, schemas.CodeBadTimestamp, "timestamp"},
		{`{"type":"track","context":"web"}`, schemas.CodeWrongType, "context"},
		{`{"type":"track","context":{"device":{"id":7}}}`, schemas.CodeWrongType, "context.device.id"},
		{`{"type":"track","properties":[]}`, schemas.CodeWrongType, "properties"},
		{`{"type":"track","event":"Product Added","properties":{"price":"12"}}`, schemas.CodeWrongType, "properties.price"},
		{`{"type":"track","event":"Product Added","properties":{"quantity":2.5}}`, schemas.CodeWrongType, "properties.quantity"},
		{`{"type":"track","event":"Order Completed","properties":{"products":{}}}`, schemas.CodeWrongType, "properties.products"},
		{`{"type":"track","event":"Order Completed","properties":{"products":[null]}}`, schemas.CodeWrongType, "properties.products[0]"},
	}
	for _, tt := range tests {
		_, err := schemas.ParseJSON([]byte(tt.in))
		var fe *schemas.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err = %v, want a FieldError", tt.in, err)
			continue
		}
		if fe.Code != tt.code || fe.Field != tt.field {
			t.Errorf("%s: got %s/%s (%v), want %s/%s", tt.in, fe.Code, fe.Field, fe, tt.code, tt.field)
		}
	}
}

func TestEventTime(t *testing.T) {
	recv := baseTime
	tests := []struct {
		name                 string
		original, sent, recv time.Time
		fallback             time.Time
		want                 time.Time
	}{
		{"device clock an hour slow", recv.Add(-time.Hour - 5*time.Second), recv.Add(-time.Hour), recv, time.Time{}, recv.Add(-5 * time.Second)},
		{"device clock in 1970", time.UnixMilli(1000), time.UnixMilli(3000), recv, time.Time{}, recv.Add(-2 * time.Second)},
		{"no sentAt", recv.Add(-time.Minute), time.Time{}, recv, time.Time{}, recv.Add(-time.Minute)},
		{"no timestamp", time.Time{}, recv.Add(-time.Second), recv, time.Time{}, recv},
		{"no receivedAt uses fallback", recv.Add(-3 * time.Second), recv.Add(-time.Second), time.Time{}, recv, recv.Add(-2 * time.Second)},
	}
	for _, tt := range tests {
		ev := schemas.Event{OriginalTimestamp: tt.original, SentAt: tt.sent, ReceivedAt: tt.recv}
		if got := ev.EventTime(tt.fallback); !got.Equal(tt.want) {
			t.Errorf("%s: EventTime = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStringValue(t *testing.T) {
	for raw, want := range map[string]string{`"a"`: "a", `"a\"b"`: `a"b`, `"é"`: "é", `"\u00e9"`: "é"} {
		if got, ok := schemas.StringValue(json.RawMessage(raw)); !ok || got != want {
			t.Errorf("StringValue(%s) = %q, %v", raw, got, ok)
		}
	}
	for _, raw := range []string{``, `1`, `null`, `{"a":1}`, `"`} {
		if _, ok := schemas.StringValue(json.RawMessage(raw)); ok {
			t.Errorf("StringValue(%s) should fail", raw)
		}
	}
}
