package schemas

import (
	"errors"
	"fmt"
)

// Stable reason codes. They name why an input was rejected in the
// dead-letter topic (header cdp.error.code), in metrics and in `cdp produce`
// reports, so they never change meaning once published.
const (
	// Framing and decoding (Serde.Decode).
	CodeEmpty           = "empty_value"       // record value has no bytes
	CodeWrongMagic      = "wrong_magic"       // first byte is not the Confluent magic 0
	CodeTruncated       = "truncated"         // header or Avro body ends early
	CodeUnknownSchemaID = "unknown_schema_id" // the registry has no schema with that id
	CodeWrongSchema     = "wrong_schema"      // the writer schema is not an Avro io.streamcdp.Event
	CodeBadAvro         = "bad_avro"          // bytes are not valid for the writer schema
	CodeRegistry        = "registry_unavailable"

	// Content (JSON parsing and internal/validate).
	CodeBadJSON           = "bad_json"           // a JSON line does not parse
	CodeWrongType         = "wrong_type"         // a field holds a value of the wrong type
	CodeUnknownType       = "unknown_type"       // type is not one of the six call types
	CodeMissingField      = "missing_field"      // a field the call type requires is empty
	CodeMissingIdentifier = "missing_identifier" // no userId, anonymousId, email, phone or device id
	CodeOversize          = "oversize"           // encoded event larger than the limit
	CodeBadTimestamp      = "bad_timestamp"      // unparseable, before 2000 or too far in the future
)

// Sentinels for errors.Is on decode errors; each DecodeError unwraps to the
// one matching its code.
var (
	ErrEmpty           = errors.New(CodeEmpty)
	ErrWrongMagic      = errors.New(CodeWrongMagic)
	ErrTruncated       = errors.New(CodeTruncated)
	ErrUnknownSchemaID = errors.New(CodeUnknownSchemaID)
	ErrWrongSchema     = errors.New(CodeWrongSchema)
	ErrAvro            = errors.New(CodeBadAvro)
	ErrWrongType       = errors.New(CodeWrongType)
	// ErrRegistry means the registry could not be asked (network, 5xx). It
	// is transient: retry, do not dead-letter.
	ErrRegistry = errors.New(CodeRegistry)
	// ErrIncompatible is returned when registering a schema that breaks the
	// subject's compatibility rule.
	ErrIncompatible = errors.New("incompatible schema")
)

var sentinels = map[string]error{
	CodeEmpty:           ErrEmpty,
	CodeWrongMagic:      ErrWrongMagic,
	CodeTruncated:       ErrTruncated,
	CodeUnknownSchemaID: ErrUnknownSchemaID,
	CodeWrongSchema:     ErrWrongSchema,
	CodeBadAvro:         ErrAvro,
	CodeWrongType:       ErrWrongType,
	CodeRegistry:        ErrRegistry,
}

// DecodeError is why a framed record could not be turned into an Event.
type DecodeError struct {
	Code     string // one of the Code* framing/decoding constants
	SchemaID int    // writer schema id, 0 when the header was unreadable
	Field    string // dotted Avro field path when known
	Err      error  // cause, may be nil
}

func (e *DecodeError) Error() string {
	msg := "decoding Avro event"
	if e.SchemaID != 0 {
		msg += fmt.Sprintf(" (schema id %d)", e.SchemaID)
	}
	msg += ": " + e.Code
	if e.Field != "" {
		msg += ": field " + e.Field
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes both the code's sentinel and the cause.
func (e *DecodeError) Unwrap() []error {
	errs := make([]error, 0, 2)
	if s := sentinels[e.Code]; s != nil {
		errs = append(errs, s)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// ErrorCode returns the stable reason code (see dlq.CodeOf).
func (e *DecodeError) ErrorCode() string { return e.Code }

// FieldError is an event whose content breaks the contract: a JSON value of
// the wrong type, or a validation rule. Field is the JSON (camelCase) path of
// the offending field, e.g. "properties.price", empty for whole-event rules.
type FieldError struct {
	Code   string
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Code + ": " + e.Reason
	}
	return e.Code + ": " + e.Field + ": " + e.Reason
}

// ErrorCode returns the stable reason code (see dlq.CodeOf).
func (e *FieldError) ErrorCode() string { return e.Code }

// IsTransient reports whether err is worth retrying rather than
// dead-lettering: the registry was unreachable, so the record itself may be
// fine.
func IsTransient(err error) bool { return errors.Is(err, ErrRegistry) }

// IncompatibleError is a schema the registry (or the local check) refused
// under the subject's compatibility level.
type IncompatibleError struct {
	Subject  string
	Level    string   // e.g. BACKWARD
	Problems []string // one line per incompatibility, naming the field
}

func (e *IncompatibleError) Error() string {
	msg := fmt.Sprintf("schema for subject %q is not %s compatible with the registered versions", e.Subject, e.Level)
	for _, p := range e.Problems {
		msg += "; " + p
	}
	return msg
}

// Unwrap lets errors.Is(err, ErrIncompatible) match.
func (e *IncompatibleError) Unwrap() error { return ErrIncompatible }
