package generate

import (
	"slices"
	"time"
)

// The structs below are the JSON form of docs/EVENT_JSON.md as far as the
// generator uses it. They are local on purpose: the generator must not depend
// on the schemas package, and its output is checked to round-trip through it.
// Field order follows the document so the lines read naturally.

type event struct {
	Type        string      `json:"type"`
	Event       string      `json:"event,omitempty"`
	Name        string      `json:"name,omitempty"`
	MessageID   string      `json:"messageId,omitempty"`
	UserID      string      `json:"userId,omitempty"`
	AnonymousID string      `json:"anonymousId,omitempty"`
	Timestamp   string      `json:"timestamp,omitempty"`
	SentAt      string      `json:"sentAt,omitempty"`
	ReceivedAt  string      `json:"receivedAt,omitempty"`
	Context     *evContext  `json:"context,omitempty"`
	Traits      *evTraits   `json:"traits,omitempty"`
	Properties  *properties `json:"properties,omitempty"`
}

type evContext struct {
	IP        string      `json:"ip,omitempty"`
	UserAgent string      `json:"userAgent,omitempty"`
	Locale    string      `json:"locale,omitempty"`
	Page      *evPage     `json:"page,omitempty"`
	Campaign  *evCampaign `json:"campaign,omitempty"`
	Device    *evDevice   `json:"device,omitempty"`
	App       *evApp      `json:"app,omitempty"`
	Library   *evLibrary  `json:"library,omitempty"`
	Traits    *evTraits   `json:"traits,omitempty"`
}

type evPage struct {
	URL      string `json:"url,omitempty"`
	Path     string `json:"path,omitempty"`
	Referrer string `json:"referrer,omitempty"`
	Title    string `json:"title,omitempty"`
}

type evCampaign struct {
	Source  string `json:"source,omitempty"`
	Medium  string `json:"medium,omitempty"`
	Name    string `json:"name,omitempty"`
	Term    string `json:"term,omitempty"`
	Content string `json:"content,omitempty"`
}

type evDevice struct {
	ID   string `json:"id,omitempty"`
	Type string `json:"type,omitempty"`
}

type evApp struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	Build   string `json:"build,omitempty"`
}

type evLibrary struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// evTraits serves both identify traits and context.traits.
type evTraits struct {
	Email     string `json:"email,omitempty"`
	Phone     string `json:"phone,omitempty"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
}

type properties struct {
	ProductID string      `json:"product_id,omitempty"`
	SKU       string      `json:"sku,omitempty"`
	Category  string      `json:"category,omitempty"`
	Name      string      `json:"name,omitempty"`
	Price     float64     `json:"price,omitempty"`
	Quantity  int         `json:"quantity,omitempty"`
	Currency  string      `json:"currency,omitempty"`
	OrderID   string      `json:"order_id,omitempty"`
	Revenue   float64     `json:"revenue,omitempty"`
	Products  []evProduct `json:"products,omitempty"`
}

type evProduct struct {
	ProductID string  `json:"product_id,omitempty"`
	SKU       string  `json:"sku,omitempty"`
	Category  string  `json:"category,omitempty"`
	Name      string  `json:"name,omitempty"`
	Price     float64 `json:"price,omitempty"`
	Quantity  int     `json:"quantity,omitempty"`
}

// tsLayout is RFC 3339 in UTC with exactly three fractional digits, as the
// Segment libraries write it.
const tsLayout = "2006-01-02T15:04:05.000Z07:00"

func formatTS(t time.Time) string { return t.UTC().Format(tsLayout) }

func pounds(cents int64) float64 { return float64(cents) / 100 }

// identifiers returns the identifiers a resolver reads from e, in a fixed
// order, with emails and phones normalised. It is the single definition used
// for the truth, so the truth and a resolver reading the same fields agree.
func (e *event) identifiers(dst []ident) []ident {
	dst = dst[:0]
	if e.UserID != "" {
		dst = append(dst, ident{typ: idUser, val: e.UserID})
	}
	if e.AnonymousID != "" {
		dst = append(dst, ident{typ: idAnon, val: e.AnonymousID})
	}
	if e.Context != nil && e.Context.Device != nil && e.Context.Device.ID != "" {
		dst = append(dst, ident{typ: idDevice, val: e.Context.Device.ID})
	}
	for _, t := range []*evTraits{e.Traits, e.contextTraits()} {
		if t == nil {
			continue
		}
		if t.Email != "" {
			dst = append(dst, ident{idEmail, NormalizeEmail(t.Email), t.Email})
		}
		if t.Phone != "" {
			dst = append(dst, ident{idPhone, NormalizePhone(t.Phone), t.Phone})
		}
	}
	return dst
}

func (e *event) contextTraits() *evTraits {
	if e.Context == nil {
		return nil
	}
	return e.Context.Traits
}

// clone copies e deeply enough that the copy can be mutated (made invalid)
// without touching the original.
func (e *event) clone() *event {
	c := *e
	if e.Context != nil {
		ctx := *e.Context
		if ctx.Device != nil {
			d := *ctx.Device
			ctx.Device = &d
		}
		if ctx.Traits != nil {
			t := *ctx.Traits
			ctx.Traits = &t
		}
		c.Context = &ctx
	}
	if e.Traits != nil {
		t := *e.Traits
		c.Traits = &t
	}
	if e.Properties != nil {
		p := *e.Properties
		p.Products = slices.Clone(p.Products)
		c.Properties = &p
	}
	return &c
}
