package schemas

import (
	"context"
	"fmt"
	"time"
)

// ResolvedEvent is an event after identity resolution (resolved_event.avsc),
// what the identity stage writes to cdp.events.resolved keyed by ProfileID.
type ResolvedEvent struct {
	ProfileID string
	Timestamp time.Time // skew-corrected event time (Event.EventTime)
	Event     Event
}

// NativeResolved returns r in goavro's native form for resolved_event.avsc.
func NativeResolved(r *ResolvedEvent) map[string]any {
	return map[string]any{
		"profile_id": r.ProfileID,
		"timestamp":  r.Timestamp,
		"event":      ToNative(&r.Event),
	}
}

// EncodeResolved frames r for topic with resolved_event.avsc.
func (s *Serde) EncodeResolved(ctx context.Context, topic string, r *ResolvedEvent) ([]byte, error) {
	if !r.Event.Type.Valid() {
		return nil, &FieldError{Code: CodeUnknownType, Field: "event.type", Reason: fmt.Sprintf("%q is not a call type", r.Event.Type)}
	}
	return s.appendNative(ctx, nil, topic, ResolvedEventSchema, NativeResolved(r))
}

// DecodeResolved reads a framed resolved event written with any registered
// version of resolved_event.avsc, through the same compiled decoder as
// Decode.
func (s *Serde) DecodeResolved(ctx context.Context, b []byte, r *ResolvedEvent) error {
	*r = ResolvedEvent{}
	id, body, err := s.splitFrame(b)
	if err != nil {
		return err
	}
	w, err := s.writer(ctx, id)
	if err != nil {
		return err
	}
	if w.resolvedErr != nil {
		return w.resolvedErr
	}
	rd := newReader(body)
	w.resolved(&rd, r)
	if rd.err == nil && rd.pos != len(body) {
		rd.fail(CodeBadAvro, fmt.Errorf("%w: %d", errTrailing, len(body)-rd.pos))
	}
	if rd.err != nil {
		*r = ResolvedEvent{}
		rd.err.SchemaID = id
		return rd.err
	}
	return nil
}

func resolvedBinders() map[string]binder[ResolvedEvent] {
	return map[string]binder[ResolvedEvent]{
		"profile_id": str(func(r *ResolvedEvent) *string { return &r.ProfileID }),
		"timestamp":  field(directTime, func(r *ResolvedEvent) *time.Time { return &r.Timestamp }),
		"event":      subRecord("Event", eventBinders, func(r *ResolvedEvent) *Event { return &r.Event }),
	}
}

// compileResolved builds the ResolvedEvent decoder for a writer schema, or
// the error every record written with it gets.
func compileResolved(id int, w *avroNode) (recordFn[ResolvedEvent], *DecodeError) {
	if w.kind != kRecord || w.shortName() != "ResolvedEvent" {
		return nil, &DecodeError{Code: CodeWrongSchema, SchemaID: id, Err: fmt.Errorf("writer schema is %s, want record %s.ResolvedEvent", w.typeName(), Namespace)}
	}
	dec, err := compileRecord(w, "", "ResolvedEvent", resolvedBinders())
	if err != nil {
		return nil, asDecodeError(id, err)
	}
	return dec, nil
}

func asDecodeError(id int, err error) *DecodeError {
	de, ok := err.(*DecodeError)
	if !ok {
		de = &DecodeError{Code: CodeWrongSchema, Err: err}
	}
	de.SchemaID = id
	return de
}
