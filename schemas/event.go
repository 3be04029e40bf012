package schemas

import (
	"encoding/json"
	"time"
)

// CallType is the kind of Segment call an event records.
type CallType string

// The six call types of the spec; the Avro enum io.streamcdp.EventType has
// exactly these symbols.
const (
	Track    CallType = "track"
	Identify CallType = "identify"
	Page     CallType = "page"
	Screen   CallType = "screen"
	Group    CallType = "group"
	Alias    CallType = "alias"
)

// CallTypes lists the valid call types in the Avro enum's symbol order.
var CallTypes = []CallType{Track, Identify, Page, Screen, Group, Alias}

// Valid reports whether t is one of the six call types.
func (t CallType) Valid() bool {
	switch t {
	case Track, Identify, Page, Screen, Group, Alias:
		return true
	}
	return false
}

// Event is one customer event in its Go form. It mirrors event.avsc field by
// field; an empty string, zero time, nil pointer or nil map means "absent"
// (null in Avro, omitted in JSON).
//
// Traits, Properties and the other free-form maps hold JSON texts, exactly
// as they travel in Avro, so values of any JSON type survive unchanged.
// Decoded events may share one backing array among these values: copy a
// value before modifying it in place.
type Event struct {
	MessageID   string
	Type        CallType
	Event       string // track: the event name
	UserID      string
	AnonymousID string

	OriginalTimestamp time.Time // device clock at the action (JSON "timestamp")
	SentAt            time.Time // device clock when the library sent it
	ReceivedAt        time.Time // server clock at receipt

	Context    Context
	Traits     map[string]json.RawMessage
	Properties map[string]json.RawMessage // without the typed Commerce keys
	Commerce   *Commerce                  // typed e-commerce properties, nil when none

	Name       string // page/screen name
	GroupID    string // group
	PreviousID string // alias
}

// Context is the spec's context object; unknown keys are kept in Extra.
type Context struct {
	IP        string
	UserAgent string
	Locale    string
	Page      PageContext
	Campaign  Campaign
	Device    Device
	App       App
	Library   Library
	Traits    map[string]json.RawMessage
	Extra     map[string]json.RawMessage
}

// IsZero reports whether the context carries nothing (null in Avro).
func (c *Context) IsZero() bool {
	return c.IP == "" && c.UserAgent == "" && c.Locale == "" && c.Page == (PageContext{}) &&
		c.Campaign == (Campaign{}) && c.Device == (Device{}) && c.App == (App{}) &&
		c.Library == (Library{}) && len(c.Traits) == 0 && len(c.Extra) == 0
}

// PageContext is context.page.
type PageContext struct{ URL, Path, Referrer, Title string }

// Campaign holds the UTM parameters (context.campaign).
type Campaign struct{ Source, Medium, Name, Term, Content string }

// Device is context.device; ID is an identifier for identity resolution.
type Device struct{ ID, Type string }

// App is context.app.
type App struct{ Name, Version, Build string }

// Library is context.library: the SDK that produced the event.
type Library struct{ Name, Version string }

// Commerce holds the typed properties of the e-commerce spec. In the JSON
// form they are snake_case keys of properties.
type Commerce struct {
	ProductID string
	SKU       string
	Category  string
	Name      string
	Brand     string
	Variant   string
	Price     *float64
	Quantity  *int64

	Currency   string
	OrderID    string
	CartID     string
	CheckoutID string
	Revenue    *float64
	Total      *float64
	Shipping   *float64
	Tax        *float64
	Discount   *float64
	Coupon     string

	Products []Product
}

// Product is one element of properties.products; unknown keys are kept in
// Extra.
type Product struct {
	ProductID string
	SKU       string
	Category  string
	Name      string
	Brand     string
	Variant   string
	Price     *float64
	Quantity  *int64
	Extra     map[string]json.RawMessage
}

// CommerceEvents are the track event names of the e-commerce spec whose
// properties are read into Event.Commerce. For other events those keys stay
// in Properties (a "Video Played" may well have a name and a category).
var CommerceEvents = map[string]bool{
	"Products Searched": true, "Product List Viewed": true, "Product List Filtered": true,
	"Promotion Viewed": true, "Promotion Clicked": true, "Product Clicked": true,
	"Product Viewed": true, "Product Added": true, "Product Removed": true,
	"Cart Viewed": true, "Checkout Started": true, "Checkout Step Viewed": true,
	"Checkout Step Completed": true, "Payment Info Entered": true, "Order Updated": true,
	"Order Completed": true, "Order Refunded": true, "Order Cancelled": true,
	"Coupon Entered": true, "Coupon Applied": true, "Coupon Denied": true, "Coupon Removed": true,
	"Product Added to Wishlist": true, "Product Removed from Wishlist": true,
	"Wishlist Product Added to Cart": true, "Product Shared": true, "Cart Shared": true,
	"Product Reviewed": true,
}

// EventTime is when the action happened by the server's clock, corrected for
// a wrong device clock the way Segment does it:
// receivedAt − (sentAt − originalTimestamp). The device clock's error cancels
// out because sentAt and originalTimestamp come from the same clock. Without
// sentAt it is originalTimestamp; without originalTimestamp, receivedAt.
// received is used when ReceivedAt is zero (pass the Kafka record time or
// now).
func (e *Event) EventTime(received time.Time) time.Time {
	if !e.ReceivedAt.IsZero() {
		received = e.ReceivedAt
	}
	switch {
	case e.OriginalTimestamp.IsZero():
		return received
	case e.SentAt.IsZero() || received.IsZero():
		return e.OriginalTimestamp
	default:
		return received.Add(-e.SentAt.Sub(e.OriginalTimestamp))
	}
}

// Trait returns the string value of a trait, looking in traits first and
// then in context.traits, as the spec allows either. ok is false when the
// key is absent or not a JSON string.
func (e *Event) Trait(key string) (string, bool) {
	if s, ok := StringValue(e.Traits[key]); ok {
		return s, true
	}
	return StringValue(e.Context.Traits[key])
}

// StringValue decodes a JSON text holding a string. It is cheap for the
// common case of a string without escapes.
func StringValue(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	plain := true
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 {
			plain = false
			break
		}
	}
	if plain {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// JSONString encodes s as a JSON text, for building Traits and Properties.
func JSONString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
