// Package dlq defines the dead-letter record format of StreamCDP: how a
// record that a stage could not process is written to the dead-letter topic
// (cdp.events.dlq) and read back for `cdp dlq inspect` and `cdp dlq replay`.
//
// The dead-letter record keeps the input exactly: value and key untouched
// (so replay re-submits the producer's own bytes), the input's headers
// carried over, and the failure described in cdp.* headers:
//
//	cdp.error.code        stable reason code, e.g. missing_identifier
//	cdp.error.reason      human reason naming the field
//	cdp.stage             the stage that gave up, e.g. decode, validate
//	cdp.source.topic      where the input was read
//	cdp.source.partition  decimal
//	cdp.source.offset     decimal
//	cdp.source.timestamp  input record time, Unix milliseconds
//	cdp.time              when it was dead-lettered, RFC 3339 UTC
package dlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header keys of a dead-letter record.
const (
	HeaderCode            = "cdp.error.code"
	HeaderReason          = "cdp.error.reason"
	HeaderStage           = "cdp.stage"
	HeaderSourceTopic     = "cdp.source.topic"
	HeaderSourcePartition = "cdp.source.partition"
	HeaderSourceOffset    = "cdp.source.offset"
	HeaderSourceTimestamp = "cdp.source.timestamp"
	HeaderTime            = "cdp.time"

	// headerPrefix marks the headers this package owns; any other header
	// belongs to the input record.
	headerPrefix = "cdp."
)

// Stages that dead-letter records; other processors may use their own
// names.
const (
	StageDecode   = "decode"
	StageValidate = "validate"
)

// MaxReasonBytes caps cdp.error.reason: reasons quote input, and a header
// must not grow the record past the topic's size limit.
const MaxReasonBytes = 1024

// CodeUnclassified is the code of an error that carries none (a bug worth
// fixing: every error a producer can cause should have a code).
const CodeUnclassified = "unclassified"

// Coder is implemented by errors with a stable reason code
// (*schemas.DecodeError, *schemas.FieldError).
type Coder interface{ ErrorCode() string }

// CodeOf returns the reason code of err, or CodeUnclassified.
func CodeOf(err error) string {
	var c Coder
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	return CodeUnclassified
}

// Failure says why and where a record was given up on.
type Failure struct {
	Code   string
	Reason string
	Stage  string
}

// FailureOf builds the Failure for err at stage.
func FailureOf(stage string, err error) Failure {
	return Failure{Code: CodeOf(err), Reason: err.Error(), Stage: stage}
}

// New returns the dead-letter record for src, to be produced to topic. It
// copies src's key, value and headers; src itself is not modified.
func New(src *kgo.Record, topic string, f Failure, now time.Time) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(src.Headers)+8)
	for _, h := range src.Headers {
		if !strings.HasPrefix(h.Key, headerPrefix) {
			headers = append(headers, kgo.RecordHeader{Key: h.Key, Value: clone(h.Value)})
		}
	}
	code := f.Code
	if code == "" {
		code = CodeUnclassified
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderCode, Value: []byte(code)},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(truncate(f.Reason, MaxReasonBytes))},
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(f.Stage)},
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
		kgo.RecordHeader{Key: HeaderSourceTimestamp, Value: strconv.AppendInt(nil, src.Timestamp.UnixMilli(), 10)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{
		Topic:     topic,
		Key:       clone(src.Key),
		Value:     clone(src.Value),
		Headers:   headers,
		Timestamp: now, // the DLQ's retention runs from when the record failed
	}
}

// clone copies b, keeping nil as nil (a null key stays null).
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// Entry is a dead-letter record read back.
type Entry struct {
	Failure
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	SourceTime      time.Time // the input record's timestamp
	Time            time.Time // when it was dead-lettered

	Key     []byte
	Value   []byte             // the input's bytes, untouched
	Headers []kgo.RecordHeader // the input's own headers, without cdp.*

	// Where the dead-letter record itself sits.
	Topic     string
	Partition int32
	Offset    int64
}

// Parse reads a dead-letter record. It fails, naming the header, when one
// of the cdp.* headers is missing or malformed, so that records of another
// format are not silently misread.
func Parse(r *kgo.Record) (Entry, error) {
	e := Entry{
		Key: r.Key, Value: r.Value,
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
	}
	seen := map[string]string{}
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, headerPrefix) {
			seen[h.Key] = string(h.Value)
			continue
		}
		e.Headers = append(e.Headers, h)
	}
	get := func(k string) (string, error) {
		v, ok := seen[k]
		if !ok {
			return "", fmt.Errorf("dead-letter record %s/%d@%d has no %s header", r.Topic, r.Partition, r.Offset, k)
		}
		return v, nil
	}
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{{HeaderCode, &e.Code}, {HeaderReason, &e.Reason}, {HeaderStage, &e.Stage}, {HeaderSourceTopic, &e.SourceTopic}} {
		if *f.dst, err = get(f.key); err != nil {
			return e, err
		}
	}
	bad := func(k, v string, err error) error {
		return fmt.Errorf("dead-letter record %s/%d@%d: header %s=%q: %w", r.Topic, r.Partition, r.Offset, k, v, err)
	}
	v, err := get(HeaderSourcePartition)
	if err != nil {
		return e, err
	}
	p, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return e, bad(HeaderSourcePartition, v, err)
	}
	e.SourcePartition = int32(p)
	if v, err = get(HeaderSourceOffset); err != nil {
		return e, err
	}
	if e.SourceOffset, err = strconv.ParseInt(v, 10, 64); err != nil {
		return e, bad(HeaderSourceOffset, v, err)
	}
	if v, err = get(HeaderTime); err != nil {
		return e, err
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return e, bad(HeaderTime, v, err)
	}
	// Optional: older records may lack it.
	if v, ok := seen[HeaderSourceTimestamp]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return e, bad(HeaderSourceTimestamp, v, err)
		}
		e.SourceTime = time.UnixMilli(ms).UTC()
	}
	return e, nil
}

// Replay returns the record to re-submit: the original key, value and
// headers, to the source topic, or to topic when it is not empty.
func (e *Entry) Replay(topic string) *kgo.Record {
	if topic == "" {
		topic = e.SourceTopic
	}
	headers := make([]kgo.RecordHeader, len(e.Headers))
	for i, h := range e.Headers {
		headers[i] = kgo.RecordHeader{Key: h.Key, Value: clone(h.Value)}
	}
	return &kgo.Record{Topic: topic, Key: clone(e.Key), Value: clone(e.Value), Headers: headers}
}
