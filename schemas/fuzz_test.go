package schemas_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/streamcdp/streamcdp/schemas"
)

// FuzzDecode feeds arbitrary bytes to Serde.Decode. It must never panic, and
// any event it accepts must re-encode and decode to the same value. The
// compiled decoder is also checked against the reference path (goavro's
// generic decode + FromNative): when it accepts a record, so must goavro,
// with the same result.
//
//	go test -run XXX -fuzz FuzzDecode -fuzztime 60s ./schemas/
func FuzzDecode(f *testing.F) {
	_, cl := fakeRegistry(f)
	s := schemas.NewSerde(cl)
	c := context.Background() // a fuzz run outlasts any test timeout; the registry is in-process
	const topic = "fuzz.events.raw"

	seed := func(ev schemas.Event) []byte {
		b, err := s.Encode(c, topic, ev)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	full := seed(orderCompleted())
	f.Add(full)
	for _, line := range readJSONL(f, fixtures+"valid.jsonl") {
		var ev schemas.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			f.Fatal(err)
		}
		f.Add(seed(ev))
	}
	// A v2 writer (one more field) so the skip path is fuzzed too.
	v2 := addField(f, `{"name": "consent", "type": ["null", "string", {"type": "map", "values": "long"}], "default": null}`)
	native := schemas.ToNative(new(orderCompleted()))
	native["consent"] = map[string]any{"map": map[string]any{"email": int64(1)}}
	withV2, err := s.EncodeNative(c, topic, v2, native)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withV2)
	f.Add(full[:len(full)/2])             // truncated
	f.Add(append([]byte{1}, full[1:]...)) // wrong magic
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0x7f, 0xff, 2, 'm', 0}) // unknown id
	f.Add(append(append([]byte{}, full[:5]...), 2, 'm', 18))

	f.Fuzz(func(t *testing.T, frame []byte) {
		ev, err := s.Decode(c, frame)
		if err != nil {
			if dlqCode(err) == "" {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		nat, err := s.DecodeNative(c, frame, "")
		if err != nil {
			t.Fatalf("compiled decoder accepted what goavro rejects: %v\nevent %+v", err, ev)
		}
		ref, err := schemas.FromNative(nat)
		if err != nil {
			t.Fatalf("FromNative rejects what the compiled decoder accepted: %v", err)
		}
		if !sameEvent(ref, ev) {
			t.Fatalf("compiled decoder and goavro disagree:\n%+v\n%+v", ev, ref)
		}
		if !ev.Type.Valid() {
			return // a foreign enum; the event schema cannot write it back
		}
		again, err := s.Encode(c, topic, ev)
		if err != nil {
			t.Fatalf("re-encoding a decoded event: %v\n%+v", err, ev)
		}
		back, err := s.Decode(c, again)
		if err != nil {
			t.Fatalf("decoding the re-encoded event: %v", err)
		}
		if !sameEvent(back, ev) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, back)
		}
	})
}

// dlqCode is the reason code the dead-letter record would carry.
func dlqCode(err error) string {
	var c interface{ ErrorCode() string }
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	return ""
}
