package schemas_test

import (
	"bufio"
	"bytes"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// EncodeResolvedFrom copies the event's bytes into the resolved record. The
// result must end with the event's bytes untouched and decode to the same
// value, for every fixture event; and an event
// written with another schema version must take the slow path and still
// decode right.
func TestEncodeResolvedFrom(t *testing.T) {
	env := testkit.New(t)
	ctx := testkit.Context(t)
	s := schemas.NewSerde(env.Registry(t))
	raw, resolved := env.Services.Topic("events.raw"), env.Services.Topic("events.resolved")

	f, err := os.Open("../testdata/events/valid.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		ev, err := schemas.ParseJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("fixture line %d: %v", n+1, err)
		}
		n++
		b, err := s.Encode(ctx, raw, ev)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := s.Decode(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		r := schemas.ResolvedEvent{ProfileID: "p-" + ev.MessageID, Timestamp: time.UnixMilli(1764323000123).UTC(), Event: dec}
		fast, err := s.EncodeResolvedFrom(ctx, nil, resolved, b, &r)
		if err != nil {
			t.Fatal(err)
		}
		// The event's bytes are carried untouched (map order in Avro is not
		// canonical, so comparing with a fresh encoding would be wrong).
		if !bytes.HasSuffix(fast, b[5:]) {
			t.Errorf("line %d: the resolved record does not end with the event's own bytes", n)
		}
		var back schemas.ResolvedEvent
		if err := s.DecodeResolved(ctx, fast, &back); err != nil {
			t.Fatalf("line %d: decoding spliced record: %v", n, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("line %d: round trip\n got %+v\nwant %+v", n, back, r)
		}
	}
	if n < 5 {
		t.Fatalf("only %d fixture events", n)
	}

	// A v2 writer (one more optional field) is not spliced: the resolved
	// record must still be a valid resolved_event.avsc record.
	v2 := schemas.NewSerde(env.Registry(t), schemas.WithEventSchema(eventV2(t)))
	ev, _ := schemas.ParseJSON([]byte(`{"type":"track","event":"X","messageId":"m-v2","userId":"u","timestamp":"2026-11-28T10:00:00Z"}`))
	b, err := v2.Encode(ctx, raw, ev)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := s.Decode(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	r := schemas.ResolvedEvent{ProfileID: "p", Timestamp: time.UnixMilli(5).UTC(), Event: dec}
	out, err := s.EncodeResolvedFrom(ctx, nil, resolved, b, &r)
	if err != nil {
		t.Fatal(err)
	}
	var back schemas.ResolvedEvent
	if err := s.DecodeResolved(ctx, out, &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("v2 writer: %v\n got %+v\nwant %+v", err, back, r)
	}
}
