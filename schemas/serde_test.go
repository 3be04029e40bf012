package schemas_test

import (
	"encoding/binary"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/streamcdp/streamcdp/schemas"
)

// countFetches counts GET /schemas/ids/{id} requests served by reg.
func countFetches(reg *srfake.Registry) *atomic.Int64 {
	var n atomic.Int64
	reg.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/schemas/ids/") {
			n.Add(1)
		}
		return false
	})
	return &n
}

func frameWithID(id uint32, body ...byte) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], id)
	return append(b, body...)
}

func wantCode(t *testing.T, err error, code string) *schemas.DecodeError {
	t.Helper()
	var de *schemas.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want a DecodeError with code %s", err, code)
	}
	if de.Code != code {
		t.Fatalf("code = %s (%v), want %s", de.Code, err, code)
	}
	return de
}

// A consumer that has never seen a schema id asks the registry once, even
// when many goroutines meet it at the same time.
func TestDecodeFetchesWriterSchemaOnce(t *testing.T) {
	reg, cl := fakeRegistry(t)
	frame, err := schemas.NewSerde(cl).Encode(ctx(t), "sf.events.raw", orderCompleted())
	if err != nil {
		t.Fatal(err)
	}
	fetches := countFetches(reg)
	consumer := schemas.NewSerde(cl)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev, err := consumer.Decode(ctx(t), frame)
			if err == nil && ev.MessageID != orderCompleted().MessageID {
				err = errors.New("wrong message id " + ev.MessageID)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("registry asked %d times for the schema, want 1", got)
	}
}

func TestUnknownSchemaIDIsRemembered(t *testing.T) {
	reg, cl := fakeRegistry(t)
	fetches := countFetches(reg)
	s := schemas.NewSerde(cl)
	for range 3 {
		_, err := s.Decode(ctx(t), frameWithID(4242, 2, 'x'))
		de := wantCode(t, err, schemas.CodeUnknownSchemaID)
		if de.SchemaID != 4242 || !errors.Is(err, schemas.ErrUnknownSchemaID) || schemas.IsTransient(err) {
			t.Fatalf("unexpected error details: %+v", de)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("registry asked %d times, want 1", got)
	}
	s = schemas.NewSerde(cl, schemas.WithUnknownIDRetry(0))
	for range 2 {
		_, err := s.Decode(ctx(t), frameWithID(4242))
		wantCode(t, err, schemas.CodeUnknownSchemaID)
	}
	if got := fetches.Load(); got != 3 {
		t.Fatalf("with no retry delay the registry should be asked each time: %d requests, want 3", got)
	}
}

func TestRegistryDownIsTransient(t *testing.T) {
	cl, err := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = schemas.NewSerde(cl).Decode(ctx(t), frameWithID(1, 0))
	wantCode(t, err, schemas.CodeRegistry)
	if !schemas.IsTransient(err) {
		t.Fatal("a registry outage must be transient (retry, not dead-letter)")
	}
	_, err = schemas.NewSerde(cl).Encode(ctx(t), "down.events.raw", orderCompleted())
	if !schemas.IsTransient(err) {
		t.Fatalf("encode with the registry down: %v, want transient", err)
	}
}

// Records written with a schema that is not an Event, or whose fields have
// types an Event cannot hold, fail with codes that say so.
func TestDecodeForeignWriterSchemas(t *testing.T) {
	_, cl := fakeRegistry(t)
	s := schemas.NewSerde(cl)
	merge := map[string]any{
		"merge_id": "mg-1", "from_profile": "p-1", "into_profile": "p-2",
		"identifiers": []any{map[string]any{"type": "email", "value": "a@example.com"}},
		"rule":        "email", "time": baseTime,
	}
	frame, err := s.EncodeNative(ctx(t), "f.identity.merges", schemas.IdentityMergeSchema, merge)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Decode(ctx(t), frame)
	wantCode(t, err, schemas.CodeWrongSchema)

	// The same record reads fine generically.
	native, err := s.DecodeNative(ctx(t), frame, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := native.(map[string]any)["into_profile"]; got != "p-2" {
		t.Fatalf("into_profile = %v", got)
	}

	userIDLong := strings.Replace(schemas.EventSchema, `{"name": "user_id", "type": ["null", "string"]`, `{"name": "user_id", "type": ["null", "long"]`, 1)
	frame, err = s.EncodeNative(ctx(t), "f2.events.raw", userIDLong, map[string]any{
		"message_id": "m-1", "type": "track", "user_id": map[string]any{"long": int64(42)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Decode(ctx(t), frame)
	if de := wantCode(t, err, schemas.CodeWrongType); de.Field != "user_id" {
		t.Fatalf("field = %q, want user_id", de.Field)
	}
	// A null in that union branch is still readable: Avro resolution fails
	// only on the branch actually used.
	frame, err = s.EncodeNative(ctx(t), "f2.events.raw", userIDLong, map[string]any{"message_id": "m-2", "type": "track"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := s.Decode(ctx(t), frame); err != nil || ev.MessageID != "m-2" {
		t.Fatalf("decode = %+v, %v", ev, err)
	}
}

func TestDecodeBadFrames(t *testing.T) {
	_, cl := fakeRegistry(t)
	s := schemas.NewSerde(cl)
	good, err := s.Encode(ctx(t), "bad.events.raw", orderCompleted())
	if err != nil {
		t.Fatal(err)
	}
	id := binary.BigEndian.Uint32(good[1:5])
	tests := []struct {
		name  string
		frame []byte
		code  string
	}{
		{"empty", nil, schemas.CodeEmpty},
		{"wrong magic", append([]byte{1}, good[1:]...), schemas.CodeWrongMagic},
		{"JSON instead of Avro", []byte(`{"type":"track"}`), schemas.CodeWrongMagic},
		{"header cut", good[:3], schemas.CodeTruncated},
		{"body cut", good[:len(good)/2], schemas.CodeTruncated},
		{"no body", good[:5], schemas.CodeTruncated},
		{"trailing bytes", append(append([]byte{}, good...), 0), schemas.CodeBadAvro},
		{"type enum index 9", frameWithID(id, 2, 'm', 18), schemas.CodeBadAvro},
		{"union index 5", frameWithID(id, 2, 'm', 0, 10), schemas.CodeBadAvro},
		{"negative string length", frameWithID(id, 1), schemas.CodeBadAvro},
		{"varint too long", frameWithID(id, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), schemas.CodeBadAvro},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := s.Decode(ctx(t), tt.frame)
			wantCode(t, err, tt.code)
			if ev.MessageID != "" {
				t.Fatalf("a failed decode must not return a partial event: %+v", ev)
			}
		})
	}
}

func TestEncodeRejectsUnknownType(t *testing.T) {
	_, cl := fakeRegistry(t)
	ev := orderCompleted()
	ev.Type = "purchase"
	_, err := schemas.NewSerde(cl).Encode(ctx(t), "x.events.raw", ev)
	var fe *schemas.FieldError
	if !errors.As(err, &fe) || fe.Code != schemas.CodeUnknownType || fe.Field != "type" {
		t.Fatalf("err = %v, want unknown_type on type", err)
	}
}

// Values in the JSON-text maps that are not JSON (a producer that forgot to
// encode a string) arrive as that string.
func TestPlainStringMapValues(t *testing.T) {
	_, cl := fakeRegistry(t)
	s := schemas.NewSerde(cl)
	frame, err := s.EncodeNative(ctx(t), "p.events.raw", schemas.EventSchema, map[string]any{
		"message_id": "m-1", "type": "identify", "user_id": map[string]any{"string": "u-1"},
		"traits": map[string]any{"map": map[string]any{"email": "ann@example.com", "age": "41", "tags": `["a","b"]`, "note": " 12"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := s.Decode(ctx(t), frame)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"email": `"ann@example.com"`, "age": `41`, "tags": `["a","b"]`, "note": `" 12"`}
	for k, w := range want {
		if got := string(ev.Traits[k]); got != w {
			t.Errorf("traits.%s = %s, want %s", k, got, w)
		}
	}
}

func TestResolvedEventRoundTrip(t *testing.T) {
	_, cl := fakeRegistry(t)
	s := schemas.NewSerde(cl)
	ev := orderCompleted()
	want := schemas.ResolvedEvent{ProfileID: "prof-1", Timestamp: ev.EventTime(time.Time{}), Event: ev}
	frame, err := s.EncodeResolved(ctx(t), "r.events.resolved", &want)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.ResolvedEvent
	if err := schemas.NewSerde(cl).DecodeResolved(ctx(t), frame, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	raw, err := s.Encode(ctx(t), "r.events.raw", ev)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.DecodeResolved(ctx(t), raw, &got), schemas.CodeWrongSchema)
	_, err = s.Decode(ctx(t), frame)
	wantCode(t, err, schemas.CodeWrongSchema)
	wantCode(t, s.DecodeResolved(ctx(t), frame[:len(frame)-1], &got), schemas.CodeTruncated)
	if got.ProfileID != "" {
		t.Fatal("a failed decode must reset the result")
	}
}

// A subject an operator made stricter (BACKWARD_TRANSITIVE) stays so, and
// new schemas are then checked against every version, not only the latest.
func TestTransitiveLevelIsKept(t *testing.T) {
	_, cl := fakeRegistry(t)
	c := ctx(t)
	const topic = "tr.events.raw"
	v1 := `{"type":"record","name":"R","namespace":"io.streamcdp","fields":[{"name":"a","type":"string"}]}`
	v2 := `{"type":"record","name":"R","namespace":"io.streamcdp","fields":[{"name":"a","type":"string"},{"name":"b","type":"string","default":""}]}`
	v3 := `{"type":"record","name":"R","namespace":"io.streamcdp","fields":[{"name":"a","type":"string"},{"name":"b","type":"string"}]}`
	for _, sch := range []string{v1, v2} {
		if _, err := schemas.NewSerde(cl).Register(c, topic, sch); err != nil {
			t.Fatal(err)
		}
	}
	// Under BACKWARD, v3 only has to read v2 data: it can.
	if problems, _ := schemas.CheckBackward(v3, v2); len(problems) != 0 {
		t.Fatalf("v3 should read v2: %v", problems)
	}
	if res := cl.SetCompatibility(c, sr.SetCompatibility{Level: sr.CompatBackwardTransitive}, schemas.Subject(topic)); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	_, err := schemas.NewSerde(cl).Register(c, topic, v3)
	var inc *schemas.IncompatibleError
	if !errors.As(err, &inc) || inc.Level != "BACKWARD_TRANSITIVE" || !strings.Contains(err.Error(), "version 1: b: new field has no default") {
		t.Fatalf("err = %v, want BACKWARD_TRANSITIVE refusal naming version 1 and field b", err)
	}
	if lvl := cl.Compatibility(c, schemas.Subject(topic))[0].Level; lvl != sr.CompatBackwardTransitive {
		t.Fatalf("level changed to %v", lvl)
	}
}

// TestEncodeRegistersEachSchemaOnce checks the registration cache of the
// encoders: each (topic, schema) is registered once however often it is
// written, and two schemas of one topic keep their own ids.
func TestEncodeRegistersEachSchemaOnce(t *testing.T) {
	reg, cl := fakeRegistry(t)
	var posts atomic.Int64
	reg.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/versions") {
			posts.Add(1)
		}
		return false
	})
	const v1 = `{"type":"record","name":"Thing","fields":[{"name":"a","type":"string"}]}`
	const v2 = `{"type":"record","name":"Thing","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}`
	s := schemas.NewSerde(cl)
	ids := map[string]map[uint32]bool{v1: {}, v2: {}}
	for i := range 10 {
		schema, native := v1, map[string]any{"a": "x"}
		if i%2 == 1 {
			schema, native = v2, map[string]any{"a": "x", "b": int64(i)}
		}
		frame, err := s.EncodeNative(ctx(t), "sf.things", schema, native)
		if err != nil {
			t.Fatal(err)
		}
		ids[schema][binary.BigEndian.Uint32(frame[1:5])] = true
	}
	if len(ids[v1]) != 1 || len(ids[v2]) != 1 {
		t.Fatalf("schema ids in the frames: v1 %v, v2 %v: want one each", ids[v1], ids[v2])
	}
	for id := range ids[v1] {
		if ids[v2][id] {
			t.Fatalf("both schemas framed with id %d", id)
		}
	}
	if n := posts.Load(); n != 2 {
		t.Fatalf("%d registrations for two schemas written 10 times, want 2", n)
	}
}
