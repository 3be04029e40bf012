package profileapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// EventStore serves a profile's recent events, newest first, from the
// event warehouse. The ClickHouse implementation belongs with the warehouse
// processor (not built yet); until then `cdp api` runs without one and the
// events route answers 501 events_unavailable.
type EventStore interface {
	// RecentEvents returns up to limit events of profileID strictly older
	// than after (in (timestamp, message id) order, newest first); a zero
	// after starts at the newest. more is true when older events remain.
	// profileID is a surviving profile: the store must include the events
	// of the profiles merged into it (the warehouse holds the merges), since
	// those were resolved under the old ids.
	RecentEvents(ctx context.Context, profileID string, after Cursor, limit int) (events []Event, more bool, err error)
}

// ErrEventsUnavailable is returned when the API has no EventStore.
var ErrEventsUnavailable = errors.New("this API runs without an event warehouse")

// Event is one stored event (components.schemas.Event).
type Event struct {
	MessageID  string                     `json:"message_id"`
	Type       string                     `json:"type"`
	Event      string                     `json:"event,omitempty"`
	Timestamp  time.Time                  `json:"timestamp"`
	Properties map[string]json.RawMessage `json:"properties,omitempty"`
}

// EventPage is one page of a profile's events.
type EventPage struct {
	ProfileID  string  `json:"profile_id"`
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Cursor is a keyset position: the last event of the previous page. Keyset
// rather than offset pagination, so pages stay stable while new events
// arrive at the head.
type Cursor struct {
	Time      time.Time
	MessageID string
}

// IsZero reports the start of the list.
func (c Cursor) IsZero() bool { return c.Time.IsZero() && c.MessageID == "" }

// Encode returns the opaque form clients pass back.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Time.UnixMicro(), 10) + ":" + c.MessageID))
}

// DecodeCursor parses Encode's form; "" is the zero cursor.
func DecodeCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: malformed cursor", ErrInvalidArgument)
	}
	ts, id, ok := strings.Cut(string(b), ":")
	us, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return Cursor{}, fmt.Errorf("%w: malformed cursor", ErrInvalidArgument)
	}
	return Cursor{Time: time.UnixMicro(us).UTC(), MessageID: id}, nil
}

// Page limits of the events route.
const (
	DefaultEventLimit = 50
	MaxEventLimit     = 200
)

// Events returns a page of the events of the profile id is, or was merged
// into.
func (s *Service) Events(ctx context.Context, id, cursor string, limit int) (*EventPage, error) {
	if s.st.Events == nil {
		return nil, ErrEventsUnavailable
	}
	if limit < 1 || limit > MaxEventLimit {
		return nil, fmt.Errorf("%w: limit %d: want 1 to %d", ErrInvalidArgument, limit, MaxEventLimit)
	}
	after, err := DecodeCursor(cursor)
	if err != nil {
		return nil, err
	}
	canonical, err := s.canonical(ctx, id)
	if err != nil {
		return nil, err
	}
	evs, more, err := s.st.Events.RecentEvents(ctx, canonical, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the events of %s: %w", canonical, err)
	}
	page := &EventPage{ProfileID: canonical, Events: evs}
	if page.Events == nil {
		page.Events = []Event{}
	}
	if more && len(evs) > 0 {
		last := evs[len(evs)-1]
		page.NextCursor = Cursor{Time: last.Timestamp, MessageID: last.MessageID}.Encode()
	}
	return page, nil
}
