// Package validate decides whether a decoded customer event may enter the
// pipeline. Every rejection is a *schemas.FieldError whose Code is stable
// (it becomes the dead-letter record's cdp.error.code) and whose Field and
// Reason tell the producer what to fix.
package validate

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/streamcdp/streamcdp/schemas"
)

// Rules are the limits an event must respect. The zero value is not useful;
// start from Default.
type Rules struct {
	// MaxBytes bounds the encoded event (framed Avro or JSON line): large
	// events are almost always a producer bug (a whole page in a property)
	// and would slow every stage after this one.
	MaxBytes int
	// Earliest is the oldest believable event time.
	Earliest time.Time
	// MaxFuture is how far past its receipt an event time may lie after
	// clock-skew correction.
	MaxFuture time.Duration
}

// Default returns the project's rules: 32 KB, not before 2000, at most 24 h
// in the future.
func Default() Rules {
	return Rules{
		MaxBytes:  32 << 10,
		Earliest:  time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxFuture: 24 * time.Hour,
	}
}

var defaultRules = Default()

// Event checks ev with the default rules; see Rules.Check.
func Event(ev *schemas.Event, size int, now time.Time) error {
	return defaultRules.Check(ev, size, now)
}

func invalid(code, field, format string, args ...any) error {
	return &schemas.FieldError{Code: code, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Check returns the first rule ev breaks, or nil. size is the encoded size
// in bytes. now is the time of receipt as the pipeline knows it (the Kafka
// record timestamp, or the wall clock): it stands in for ev.ReceivedAt when
// that is absent and bounds how far in the future an event may lie. The
// order of the rules is fixed so the same event always gets the same code.
func (r Rules) Check(ev *schemas.Event, size int, now time.Time) error {
	if size > r.MaxBytes {
		return invalid(schemas.CodeOversize, "", "event is %d bytes encoded, the limit is %d", size, r.MaxBytes)
	}
	if !ev.Type.Valid() {
		if ev.Type == "" {
			return invalid(schemas.CodeMissingField, "type", "type is required (track, identify, page, screen, group or alias)")
		}
		return invalid(schemas.CodeUnknownType, "type", "%q is not one of track, identify, page, screen, group, alias", string(ev.Type))
	}
	if blank(ev.MessageID) {
		return invalid(schemas.CodeMissingField, "messageId", "messageId is required; the producing library sets a unique one per event")
	}
	switch ev.Type {
	case schemas.Track:
		if blank(ev.Event) {
			return invalid(schemas.CodeMissingField, "event", "a track call needs the event name")
		}
	case schemas.Alias:
		if blank(ev.PreviousID) {
			return invalid(schemas.CodeMissingField, "previousId", "an alias call needs previousId (the old id)")
		}
		if blank(ev.UserID) {
			return invalid(schemas.CodeMissingField, "userId", "an alias call needs userId (the new id)")
		}
	case schemas.Group:
		if blank(ev.GroupID) {
			return invalid(schemas.CodeMissingField, "groupId", "a group call needs groupId")
		}
	}
	if !HasIdentifier(ev) {
		return invalid(schemas.CodeMissingIdentifier, "", "no identifier: set userId, anonymousId, traits.email, traits.phone or context.device.id")
	}
	if err := r.checkTime(ev, now); err != nil {
		return err
	}
	return checkNumbers(ev.Commerce)
}

// HasIdentifier reports whether ev names someone identity resolution can
// attach it to.
func HasIdentifier(ev *schemas.Event) bool {
	return !blank(ev.UserID) || !blank(ev.AnonymousID) || !blank(ev.Context.Device.ID) ||
		stringTrait(ev, "email") || stringTrait(ev, "phone")
}

// stringTrait reports whether traits or context.traits hold a non-blank
// string under key, without allocating.
func stringTrait(ev *schemas.Event, key string) bool {
	for _, raw := range [2][]byte{ev.Traits[key], ev.Context.Traits[key]} {
		if len(raw) > 2 && raw[0] == '"' && !blankBytes(raw[1:len(raw)-1]) {
			return true
		}
	}
	return false
}

func blankBytes(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

func (r Rules) checkTime(ev *schemas.Event, now time.Time) error {
	limit := now.Add(r.MaxFuture)
	received := now
	if !ev.ReceivedAt.IsZero() {
		received = ev.ReceivedAt
		// The server clock must be believable; the device clock need not
		// be, since the correction cancels its error.
		if received.Before(r.Earliest) || received.After(limit) {
			return invalid(schemas.CodeBadTimestamp, "receivedAt", "%s is before %s or more than %s after %s",
				received.Format(schemas.TimeLayout), r.Earliest.Format("2006-01-02"), r.MaxFuture, now.UTC().Format(schemas.TimeLayout))
		}
	}
	t := ev.EventTime(received)
	if t.Before(r.Earliest) {
		return invalid(schemas.CodeBadTimestamp, "timestamp", "event time %s (corrected for the device clock: receivedAt - (sentAt - timestamp)) is before %s",
			t.Format(schemas.TimeLayout), r.Earliest.Format("2006-01-02"))
	}
	if t.After(limit) {
		return invalid(schemas.CodeBadTimestamp, "timestamp", "event time %s (corrected for the device clock: receivedAt - (sentAt - timestamp)) is more than %s after %s",
			t.Format(schemas.TimeLayout), r.MaxFuture, now.UTC().Format(schemas.TimeLayout))
	}
	return nil
}

func checkNumbers(c *schemas.Commerce) error {
	if c == nil {
		return nil
	}
	check := func(field string, v *float64) error {
		if v != nil && !finite(*v) {
			return invalid(schemas.CodeWrongType, field, "%v is not a number JSON can carry", *v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"properties.price", c.Price}, {"properties.revenue", c.Revenue}, {"properties.total", c.Total},
		{"properties.shipping", c.Shipping}, {"properties.tax", c.Tax}, {"properties.discount", c.Discount}} {
		if err := check(f.name, f.v); err != nil {
			return err
		}
	}
	for i := range c.Products {
		if v := c.Products[i].Price; v != nil && !finite(*v) {
			return check(fmt.Sprintf("properties.products[%d].price", i), v)
		}
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
