package dlq_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

const (
	rawTopic = "cdp.events.raw"
	dlqTopic = "cdp.events.dlq"
)

// stage is what the first processor does with each raw record: decode,
// validate, and dead-letter anything that fails, so no record is dropped.
func stage(ctx context.Context, s *schemas.Serde, rec *kgo.Record) (*schemas.Event, *kgo.Record) {
	ev, err := s.Decode(ctx, rec.Value)
	if err != nil {
		return nil, dlq.New(rec, dlqTopic, dlq.FailureOf(dlq.StageDecode, err), rec.Timestamp)
	}
	if err := validate.Event(&ev, len(rec.Value), rec.Timestamp); err != nil {
		return nil, dlq.New(rec, dlqTopic, dlq.FailureOf(dlq.StageValidate, err), rec.Timestamp)
	}
	return &ev, nil
}

// Each kind of bad input ends in the dead-letter topic with its own code,
// its bytes untouched and its origin recorded; good input passes; nothing is
// lost.
func TestBadInputGoesToDLQWithReason(t *testing.T) {
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	producer := schemas.NewSerde(cl)
	now := time.Date(2026, 11, 28, 10, 0, 1, 0, time.UTC)

	encode := func(edit func(*schemas.Event)) []byte {
		ev := schemas.Event{
			MessageID: "m-ok", Type: schemas.Track, Event: "Product Viewed", AnonymousID: "a-1",
			OriginalTimestamp: now.Add(-time.Second),
			Properties:        map[string]json.RawMessage{"path": json.RawMessage(`"/p/1"`)},
		}
		edit(&ev)
		b, err := producer.Encode(ctx, rawTopic, ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := encode(func(*schemas.Event) {})
	header := good[:5]
	withBody := func(body ...byte) []byte { return append(append([]byte{}, header...), body...) }
	unknownID := append([]byte{0, 0, 0, 0, 0}, good[5:]...)
	binary.BigEndian.PutUint32(unknownID[1:], 987654)

	userIDLong := strings.Replace(schemas.EventSchema, `{"name": "user_id", "type": ["null", "string"]`, `{"name": "user_id", "type": ["null", "long"]`, 1)
	wrongTypes, err := producer.EncodeNative(ctx, "other.events.raw", userIDLong, map[string]any{
		"message_id": "m-1", "type": "track", "event": map[string]any{"string": "Signed Up"}, "user_id": map[string]any{"long": int64(42)},
	})
	if err != nil {
		t.Fatal(err)
	}
	mergeRecord, err := producer.EncodeNative(ctx, "cdp.identity.merges", schemas.IdentityMergeSchema, map[string]any{
		"merge_id": "mg", "from_profile": "p1", "into_profile": "p2", "identifiers": []any{}, "rule": "r", "time": now,
	})
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()

	cases := []struct {
		name  string
		value []byte
		code  string
		stage string
	}{
		{"empty value", nil, schemas.CodeEmpty, dlq.StageDecode},
		{"wrong magic byte", append([]byte{7}, good[1:]...), schemas.CodeWrongMagic, dlq.StageDecode},
		{"plain JSON", []byte(`{"type":"track","event":"x"}`), schemas.CodeWrongMagic, dlq.StageDecode},
		{"truncated header", good[:4], schemas.CodeTruncated, dlq.StageDecode},
		{"truncated Avro", good[:len(good)-3], schemas.CodeTruncated, dlq.StageDecode},
		{"unknown schema id", unknownID, schemas.CodeUnknownSchemaID, dlq.StageDecode},
		{"garbage Avro", withBody(2, 'm', 0, 3, 0xff, 0xfe), schemas.CodeBadAvro, dlq.StageDecode},
		{"bad type enum", withBody(2, 'm', 18), schemas.CodeBadAvro, dlq.StageDecode},
		{"wrong field type", wrongTypes, schemas.CodeWrongType, dlq.StageDecode},
		{"not an event", mergeRecord, schemas.CodeWrongSchema, dlq.StageDecode},
		{"missing identifiers", encode(func(e *schemas.Event) { e.AnonymousID = "" }), schemas.CodeMissingIdentifier, dlq.StageValidate},
		{"oversize", encode(func(e *schemas.Event) {
			e.Properties["blob"] = schemas.JSONString(strings.Repeat("x", 40<<10))
		}), schemas.CodeOversize, dlq.StageValidate},
		{"timestamp before 2000", encode(func(e *schemas.Event) {
			e.OriginalTimestamp = time.Date(1998, 1, 1, 0, 0, 0, 0, time.UTC)
		}), schemas.CodeBadTimestamp, dlq.StageValidate},
		{"timestamp days ahead after correction", encode(func(e *schemas.Event) {
			e.OriginalTimestamp, e.SentAt, e.ReceivedAt = now.Add(72*time.Hour), now, now
		}), schemas.CodeBadTimestamp, dlq.StageValidate},
		{"track without event name", encode(func(e *schemas.Event) { e.Event = "" }), schemas.CodeMissingField, dlq.StageValidate},
		{"missing message id", encode(func(e *schemas.Event) { e.MessageID = "" }), schemas.CodeMissingField, dlq.StageValidate},
		{"alias without previousId", encode(func(e *schemas.Event) { e.Type, e.UserID = schemas.Alias, "u-1" }), schemas.CodeMissingField, dlq.StageValidate},
		{"NaN revenue", encode(func(e *schemas.Event) {
			e.Event, e.Commerce = "Order Completed", &schemas.Commerce{Revenue: &nan}
		}), schemas.CodeWrongType, dlq.StageValidate},
	}

	consumer := schemas.NewSerde(cl) // a fresh process: fetches writer schemas itself
	var passed, dead int
	for i, tc := range append(cases, struct {
		name  string
		value []byte
		code  string
		stage string
	}{"good event", good, "", ""}) {
		in := &kgo.Record{Topic: rawTopic, Partition: 1, Offset: int64(100 + i), Key: []byte("k"), Value: tc.value, Timestamp: now}
		ev, dead1 := stage(ctx, consumer, in)
		if tc.code == "" {
			if dead1 != nil || ev == nil || ev.MessageID != "m-ok" {
				t.Fatalf("%s: want it to pass, got event %+v, dead letter %+v", tc.name, ev, dead1)
			}
			passed++
			continue
		}
		if dead1 == nil {
			t.Errorf("%s: accepted, want %s", tc.name, tc.code)
			continue
		}
		dead++
		e, err := dlq.Parse(dead1)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if e.Code != tc.code || e.Stage != tc.stage {
			t.Errorf("%s: code %s at %s (%s), want %s at %s", tc.name, e.Code, e.Stage, e.Reason, tc.code, tc.stage)
		}
		if string(e.Value) != string(tc.value) || e.SourceOffset != in.Offset || e.SourceTopic != rawTopic || e.Reason == "" {
			t.Errorf("%s: dead letter lost the input: %+v", tc.name, e)
		}
	}
	if passed+dead != len(cases)+1 || dead != len(cases) {
		t.Fatalf("%d passed + %d dead-lettered of %d records", passed, dead, len(cases)+1)
	}
}
