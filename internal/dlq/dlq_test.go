package dlq_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/schemas"
)

var failedAt = time.Date(2026, 11, 28, 10, 0, 5, 123456789, time.UTC)

func source() *kgo.Record {
	return &kgo.Record{
		Topic: "cdp.events.raw", Partition: 3, Offset: 1234567,
		Key: []byte("a-7"), Value: []byte{0, 0, 0, 0, 1, 0xde, 0xad},
		Timestamp: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
		Headers: []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte("00-abc-def-01")},
			{Key: dlq.HeaderCode, Value: []byte("stale code from an earlier failure")},
		},
	}
}

func TestNewAndParse(t *testing.T) {
	src := source()
	orig := source()
	rec := dlq.New(src, "cdp.events.dlq", dlq.Failure{Code: "missing_identifier", Reason: "no identifier: set userId", Stage: dlq.StageValidate}, failedAt)

	if !reflect.DeepEqual(src, orig) {
		t.Fatal("New modified the source record")
	}
	if rec.Topic != "cdp.events.dlq" || string(rec.Key) != "a-7" || string(rec.Value) != string(orig.Value) || !rec.Timestamp.Equal(failedAt) {
		t.Fatalf("record = %+v", rec)
	}
	src.Value[5] = 0 // the dead letter owns its bytes
	if rec.Value[5] != 0xde {
		t.Fatal("dead-letter value aliases the source's buffer")
	}
	want := map[string]string{
		"traceparent":             "00-abc-def-01",
		dlq.HeaderCode:            "missing_identifier",
		dlq.HeaderReason:          "no identifier: set userId",
		dlq.HeaderStage:           "validate",
		dlq.HeaderSourceTopic:     "cdp.events.raw",
		dlq.HeaderSourcePartition: "3",
		dlq.HeaderSourceOffset:    "1234567",
		dlq.HeaderSourceTimestamp: "1795860000000",
		dlq.HeaderTime:            "2026-11-28T10:00:05.123456789Z",
	}
	got := map[string]string{}
	for _, h := range rec.Headers {
		if _, dup := got[h.Key]; dup {
			t.Fatalf("header %s twice", h.Key)
		}
		got[h.Key] = string(h.Value)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("headers = %v\nwant %v", got, want)
	}

	rec.Partition, rec.Offset = 0, 42 // as consumed from the DLQ
	e, err := dlq.Parse(rec)
	if err != nil {
		t.Fatal(err)
	}
	if e.Code != "missing_identifier" || e.Stage != "validate" || e.Reason != "no identifier: set userId" ||
		e.SourceTopic != "cdp.events.raw" || e.SourcePartition != 3 || e.SourceOffset != 1234567 ||
		!e.Time.Equal(failedAt) || !e.SourceTime.Equal(orig.Timestamp) || e.Offset != 42 ||
		string(e.Key) != "a-7" || string(e.Value) != string(orig.Value) {
		t.Fatalf("entry = %+v", e)
	}
	if len(e.Headers) != 1 || e.Headers[0].Key != "traceparent" {
		t.Fatalf("entry headers = %v, want the input's own only", e.Headers)
	}

	replay := e.Replay("")
	if replay.Topic != "cdp.events.raw" || string(replay.Key) != "a-7" || string(replay.Value) != string(orig.Value) ||
		len(replay.Headers) != 1 || replay.Headers[0].Key != "traceparent" {
		t.Fatalf("replay = %+v", replay)
	}
	if e.Replay("cdp.events.raw.retry").Topic != "cdp.events.raw.retry" {
		t.Fatal("replay to another topic")
	}
}

func TestNilKeyAndLongReason(t *testing.T) {
	src := source()
	src.Key = nil
	reason := strings.Repeat("é", dlq.MaxReasonBytes)
	rec := dlq.New(src, "dlq", dlq.Failure{Reason: reason, Stage: dlq.StageDecode}, failedAt)
	if rec.Key != nil {
		t.Fatal("a null key must stay null")
	}
	e, err := dlq.Parse(rec)
	if err != nil {
		t.Fatal(err)
	}
	if e.Code != dlq.CodeUnclassified {
		t.Fatalf("code = %q", e.Code)
	}
	if len(e.Reason) > dlq.MaxReasonBytes || !strings.HasSuffix(e.Reason, "…") || !strings.HasPrefix(e.Reason, "éé") {
		t.Fatalf("reason not cut cleanly: %d bytes", len(e.Reason))
	}
	for _, r := range e.Reason {
		if r == '\uFFFD' {
			t.Fatal("reason cut inside a character")
		}
	}
}

func TestParseRejectsOtherRecords(t *testing.T) {
	good := dlq.New(source(), "dlq", dlq.Failure{Code: "x", Stage: "s"}, failedAt)
	for _, tc := range []struct {
		header, value, want string
	}{
		{dlq.HeaderCode, "", "no cdp.error.code header"},
		{dlq.HeaderSourceOffset, "", "no cdp.source.offset header"},
		{dlq.HeaderSourcePartition, "three", `cdp.source.partition="three"`},
		{dlq.HeaderTime, "yesterday", `cdp.time="yesterday"`},
	} {
		rec := *good
		rec.Headers = nil
		for _, h := range good.Headers {
			if h.Key == tc.header {
				if tc.value == "" {
					continue
				}
				h.Value = []byte(tc.value)
			}
			rec.Headers = append(rec.Headers, h)
		}
		if _, err := dlq.Parse(&rec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: err = %v, want one containing %q", tc.header, tc.value, err, tc.want)
		}
	}
}

func TestCodeOf(t *testing.T) {
	wrapped := fmt.Errorf("stage validate: %w", &schemas.FieldError{Code: schemas.CodeOversize})
	if got := dlq.CodeOf(wrapped); got != schemas.CodeOversize {
		t.Fatalf("CodeOf(wrapped FieldError) = %q", got)
	}
	if got := dlq.CodeOf(&schemas.DecodeError{Code: schemas.CodeTruncated}); got != schemas.CodeTruncated {
		t.Fatalf("CodeOf(DecodeError) = %q", got)
	}
	if got := dlq.CodeOf(errors.New("boom")); got != dlq.CodeUnclassified {
		t.Fatalf("CodeOf(plain) = %q", got)
	}
	f := dlq.FailureOf(dlq.StageDecode, &schemas.DecodeError{Code: schemas.CodeWrongMagic})
	if f.Code != schemas.CodeWrongMagic || f.Stage != dlq.StageDecode || !strings.Contains(f.Reason, "wrong_magic") {
		t.Fatalf("FailureOf = %+v", f)
	}
}
