package producer

import (
	"context"
	"time"

	"github.com/streamcdp/streamcdp/schemas"
)

// Who identifies the person an event is about: the user id of a signed-in
// user, the anonymous (device or cookie) id, or both, as the spec allows.
type Who struct {
	UserID      string
	AnonymousID string
}

// User is a signed-in user.
func User(userID string) Who { return Who{UserID: userID} }

// Anonymous is a visitor known only by a device or cookie id.
func Anonymous(anonymousID string) Who { return Who{AnonymousID: anonymousID} }

// Option adjusts an event built by a call helper.
type Option func(*schemas.Event) error

// At sets when the action happened (the spec's timestamp; default: now).
func At(t time.Time) Option {
	return func(e *schemas.Event) error { e.OriginalTimestamp = t; return nil }
}

// WithMessageID sets the messageId, for callers that de-duplicate retries
// themselves (default: a random UUID).
func WithMessageID(id string) Option {
	return func(e *schemas.Event) error { e.MessageID = id; return nil }
}

// WithContext sets the context object (ip, user agent, page, campaign,
// device, ...). Apply it before WithTraits.
func WithContext(c schemas.Context) Option {
	return func(e *schemas.Event) error { e.Context = c; return nil }
}

// WithTraits sets context.traits on a call that is not identify or group,
// e.g. the email of the user on a track call.
func WithTraits(traits Props) Option {
	return func(e *schemas.Event) (err error) {
		e.Context.Traits, err = traits.raw("context.traits")
		return err
	}
}

// Event applies opts to a copy of ev and sends it without a callback: the
// call helpers below all end here. Delivery failures are reported through
// Config.OnError, Stats and the next Flush.
func (p *Producer) Event(ctx context.Context, ev schemas.Event, opts ...Option) error {
	for _, o := range opts {
		if err := o(&ev); err != nil {
			return p.refused(ev.Type, err)
		}
	}
	return p.Send(ctx, ev, nil)
}

// Track records an action the person took, e.g. "Product Viewed". For the
// e-commerce events of the spec, properties such as product_id, price,
// revenue and products are carried in typed Avro fields.
func (p *Producer) Track(ctx context.Context, who Who, event string, props Props, opts ...Option) error {
	raw, err := props.raw("properties")
	if err != nil {
		return p.refused(schemas.Track, err)
	}
	return p.Event(ctx, schemas.Event{Type: schemas.Track, UserID: who.UserID, AnonymousID: who.AnonymousID, Event: event, Properties: raw}, opts...)
}

// Identify ties traits (email, name, plan, ...) to the person.
func (p *Producer) Identify(ctx context.Context, who Who, traits Props, opts ...Option) error {
	raw, err := traits.raw("traits")
	if err != nil {
		return p.refused(schemas.Identify, err)
	}
	return p.Event(ctx, schemas.Event{Type: schemas.Identify, UserID: who.UserID, AnonymousID: who.AnonymousID, Traits: raw}, opts...)
}

// Page records a web page view; name may be empty.
func (p *Producer) Page(ctx context.Context, who Who, name string, props Props, opts ...Option) error {
	raw, err := props.raw("properties")
	if err != nil {
		return p.refused(schemas.Page, err)
	}
	return p.Event(ctx, schemas.Event{Type: schemas.Page, UserID: who.UserID, AnonymousID: who.AnonymousID, Name: name, Properties: raw}, opts...)
}

// Screen records a mobile app screen view; name may be empty.
func (p *Producer) Screen(ctx context.Context, who Who, name string, props Props, opts ...Option) error {
	raw, err := props.raw("properties")
	if err != nil {
		return p.refused(schemas.Screen, err)
	}
	return p.Event(ctx, schemas.Event{Type: schemas.Screen, UserID: who.UserID, AnonymousID: who.AnonymousID, Name: name, Properties: raw}, opts...)
}

// Group ties the person to a group (company, account) with its traits.
func (p *Producer) Group(ctx context.Context, who Who, groupID string, traits Props, opts ...Option) error {
	raw, err := traits.raw("traits")
	if err != nil {
		return p.refused(schemas.Group, err)
	}
	return p.Event(ctx, schemas.Event{Type: schemas.Group, UserID: who.UserID, AnonymousID: who.AnonymousID, GroupID: groupID, Traits: raw}, opts...)
}

// Alias says that previousID (an earlier user id or anonymous id) and
// userID are the same person.
func (p *Producer) Alias(ctx context.Context, userID, previousID string, opts ...Option) error {
	return p.Event(ctx, schemas.Event{Type: schemas.Alias, UserID: userID, PreviousID: previousID}, opts...)
}

func (p *Producer) refused(t schemas.CallType, err error) error {
	p.invalid.Add(1)
	return invalidErr(&schemas.Event{Type: t}, err)
}
