package definition

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/streamcdp/streamcdp/schemas"
)

// Kind says what a Value holds.
type Kind uint8

const (
	// None: no value (a feature with an empty window, a missing field).
	None Kind = iota
	// Number: Num holds it.
	Number
	// String: Str holds it.
	String
)

// Value is a feature value or a field read from an event.
type Value struct {
	Kind Kind
	Num  float64
	Str  string
}

// Num returns a number Value.
func Num(f float64) Value { return Value{Kind: Number, Num: f} }

// Str returns a string Value.
func Str(s string) Value { return Value{Kind: String, Str: s} }

// Text is the value as text: numbers in their shortest form.
func (v Value) Text() string {
	switch v.Kind {
	case Number:
		if v.Num == math.Trunc(v.Num) && math.Abs(v.Num) < 1e15 {
			return strconv.FormatInt(int64(v.Num), 10) // counts and Unix ms, not 1.7e+12
		}
		return strconv.FormatFloat(v.Num, 'g', -1, 64)
	case String:
		return v.Str
	}
	return ""
}

// Any is the value as a Go value for JSON and expressions: float64,
// string or nil.
func (v Value) Any() any {
	switch v.Kind {
	case Number:
		return v.Num
	case String:
		return v.Str
	}
	return nil
}

func (v Value) String() string {
	if v.Kind == None {
		return "null"
	}
	return v.Text()
}

// Field reads values from an event: one for a scalar path, one per product
// for a products.* path (none when absent). It calls fn for each.
type Field struct {
	Path string
	read func(ev *schemas.Event, et int64, fn func(Value))
}

// Each calls fn with every value of the field in ev, whose event time is
// et (Unix ms).
func (f *Field) Each(ev *schemas.Event, et int64, fn func(Value)) { f.read(ev, et, fn) }

// First returns the field's first value in ev.
func (f *Field) First(ev *schemas.Event, et int64) Value {
	out := Value{}
	f.read(ev, et, func(v Value) {
		if out.Kind == None {
			out = v
		}
	})
	return out
}

// jsonValue reads a free-form JSON text: numbers as numbers, strings as
// strings, booleans as "true"/"false", objects and arrays as their text;
// null and absent are no value.
func jsonValue(raw json.RawMessage) Value {
	if len(raw) == 0 {
		return Value{}
	}
	switch c := raw[0]; {
	case c == '"':
		if s, ok := schemas.StringValue(raw); ok {
			return Str(s)
		}
		return Str(string(raw))
	case c == '-' || (c >= '0' && c <= '9'):
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
			return Num(f)
		}
	case string(raw) == "null":
		return Value{}
	}
	return Str(string(raw))
}

func optNum(p *float64) Value {
	if p == nil {
		return Value{}
	}
	return Num(*p)
}

func optInt(p *int64) Value {
	if p == nil {
		return Value{}
	}
	return Num(float64(*p))
}

func optStr(s string) Value {
	if s == "" {
		return Value{}
	}
	return Str(s)
}

// commerceScalar reads a typed e-commerce property of the event.
var commerceScalar = map[string]func(c *schemas.Commerce) Value{
	"product_id": func(c *schemas.Commerce) Value { return optStr(c.ProductID) },
	"sku":        func(c *schemas.Commerce) Value { return optStr(c.SKU) },
	"category":   func(c *schemas.Commerce) Value { return optStr(c.Category) },
	"name":       func(c *schemas.Commerce) Value { return optStr(c.Name) },
	"brand":      func(c *schemas.Commerce) Value { return optStr(c.Brand) },
	"variant":    func(c *schemas.Commerce) Value { return optStr(c.Variant) },
	"price":      func(c *schemas.Commerce) Value { return optNum(c.Price) },
	"quantity":   func(c *schemas.Commerce) Value { return optInt(c.Quantity) },
	"currency":   func(c *schemas.Commerce) Value { return optStr(c.Currency) },
	"order_id":   func(c *schemas.Commerce) Value { return optStr(c.OrderID) },
	"cart_id":    func(c *schemas.Commerce) Value { return optStr(c.CartID) },
	"checkout_id": func(c *schemas.Commerce) Value {
		return optStr(c.CheckoutID)
	},
	"revenue":  func(c *schemas.Commerce) Value { return optNum(c.Revenue) },
	"total":    func(c *schemas.Commerce) Value { return optNum(c.Total) },
	"shipping": func(c *schemas.Commerce) Value { return optNum(c.Shipping) },
	"tax":      func(c *schemas.Commerce) Value { return optNum(c.Tax) },
	"discount": func(c *schemas.Commerce) Value { return optNum(c.Discount) },
	"coupon":   func(c *schemas.Commerce) Value { return optStr(c.Coupon) },
}

// productField reads a typed property of one product.
var productField = map[string]func(p *schemas.Product) Value{
	"product_id": func(p *schemas.Product) Value { return optStr(p.ProductID) },
	"sku":        func(p *schemas.Product) Value { return optStr(p.SKU) },
	"category":   func(p *schemas.Product) Value { return optStr(p.Category) },
	"name":       func(p *schemas.Product) Value { return optStr(p.Name) },
	"brand":      func(p *schemas.Product) Value { return optStr(p.Brand) },
	"variant":    func(p *schemas.Product) Value { return optStr(p.Variant) },
	"price":      func(p *schemas.Product) Value { return optNum(p.Price) },
	"quantity":   func(p *schemas.Product) Value { return optInt(p.Quantity) },
}

// contextField reads a fixed field of the event's context.
var contextField = map[string]func(c *schemas.Context) string{
	"ip":               func(c *schemas.Context) string { return c.IP },
	"user_agent":       func(c *schemas.Context) string { return c.UserAgent },
	"locale":           func(c *schemas.Context) string { return c.Locale },
	"page.url":         func(c *schemas.Context) string { return c.Page.URL },
	"page.path":        func(c *schemas.Context) string { return c.Page.Path },
	"page.referrer":    func(c *schemas.Context) string { return c.Page.Referrer },
	"page.title":       func(c *schemas.Context) string { return c.Page.Title },
	"campaign.source":  func(c *schemas.Context) string { return c.Campaign.Source },
	"campaign.medium":  func(c *schemas.Context) string { return c.Campaign.Medium },
	"campaign.name":    func(c *schemas.Context) string { return c.Campaign.Name },
	"campaign.term":    func(c *schemas.Context) string { return c.Campaign.Term },
	"campaign.content": func(c *schemas.Context) string { return c.Campaign.Content },
	"device.id":        func(c *schemas.Context) string { return c.Device.ID },
	"device.type":      func(c *schemas.Context) string { return c.Device.Type },
	"app.name":         func(c *schemas.Context) string { return c.App.Name },
	"app.version":      func(c *schemas.Context) string { return c.App.Version },
	"library.name":     func(c *schemas.Context) string { return c.Library.Name },
}

// topField reads a top-level field of the event.
var topField = map[string]func(ev *schemas.Event) string{
	"type":         func(ev *schemas.Event) string { return string(ev.Type) },
	"event":        func(ev *schemas.Event) string { return ev.Event },
	"name":         func(ev *schemas.Event) string { return ev.Name },
	"user_id":      func(ev *schemas.Event) string { return ev.UserID },
	"anonymous_id": func(ev *schemas.Event) string { return ev.AnonymousID },
	"group_id":     func(ev *schemas.Event) string { return ev.GroupID },
	"message_id":   func(ev *schemas.Event) string { return ev.MessageID },
}

// timeParts are the parts of the event time (UTC) a field may read, for
// features such as "distinct months with an order".
var timeParts = map[string]string{
	"year": "2006", "month": "2006-01", "day": "2006-01-02", "hour": "2006-01-02T15", "weekday": "Monday",
}

// FieldPaths lists the forms a field path may take, for error messages.
const FieldPaths = "properties.KEY (typed e-commerce keys included), products.KEY (each product), " +
	"product.KEY (products.KEY when the event has products, else properties.KEY), traits.KEY, " +
	"context.traits.KEY, context.extra.KEY, context.FIELD (" + "page.path, campaign.source, device.type, ...), " +
	"time.PART (year, month, day, hour, weekday of the event time, UTC), " +
	"or a top-level field (event, name, type, user_id, anonymous_id, group_id, message_id)"

// ParseField compiles a field path.
func ParseField(path string) (*Field, error) {
	f := &Field{Path: path}
	scalar := func(get func(ev *schemas.Event) Value) {
		f.read = func(ev *schemas.Event, _ int64, fn func(Value)) {
			if v := get(ev); v.Kind != None {
				fn(v)
			}
		}
	}
	switch {
	case path == "":
		return nil, fmt.Errorf("empty field path; want %s", FieldPaths)
	case strings.HasPrefix(path, "properties."):
		key := strings.TrimPrefix(path, "properties.")
		if key == "" {
			break
		}
		typed := commerceScalar[key]
		scalar(func(ev *schemas.Event) Value {
			if typed != nil && ev.Commerce != nil {
				if v := typed(ev.Commerce); v.Kind != None {
					return v
				}
			}
			return jsonValue(ev.Properties[key])
		})
		return f, nil
	case strings.HasPrefix(path, "products."):
		key := strings.TrimPrefix(path, "products.")
		if key == "" {
			break
		}
		typed := productField[key]
		f.read = func(ev *schemas.Event, _ int64, fn func(Value)) {
			if ev.Commerce == nil {
				return
			}
			for i := range ev.Commerce.Products {
				p := &ev.Commerce.Products[i]
				v := Value{}
				if typed != nil {
					v = typed(p)
				}
				if v.Kind == None {
					v = jsonValue(p.Extra[key])
				}
				if v.Kind != None {
					fn(v)
				}
			}
		}
		return f, nil
	case strings.HasPrefix(path, "product."):
		// The e-commerce spec puts a single product's keys at the top of
		// properties (Product Viewed) and several products in products[]
		// (Order Completed): product.KEY reads whichever the event has.
		key := strings.TrimPrefix(path, "product.")
		if key == "" {
			break
		}
		each, _ := ParseField("products." + key)
		one, _ := ParseField("properties." + key)
		f.read = func(ev *schemas.Event, et int64, fn func(Value)) {
			if ev.Commerce != nil && len(ev.Commerce.Products) > 0 {
				each.read(ev, et, fn)
				return
			}
			one.read(ev, et, fn)
		}
		return f, nil
	case strings.HasPrefix(path, "time."):
		layout, ok := timeParts[strings.TrimPrefix(path, "time.")]
		if !ok {
			break
		}
		f.read = func(_ *schemas.Event, et int64, fn func(Value)) {
			fn(Str(time.UnixMilli(et).UTC().Format(layout)))
		}
		return f, nil
	case strings.HasPrefix(path, "traits."):
		key := strings.TrimPrefix(path, "traits.")
		if key == "" {
			break
		}
		scalar(func(ev *schemas.Event) Value { return jsonValue(ev.Traits[key]) })
		return f, nil
	case strings.HasPrefix(path, "context.traits."):
		key := strings.TrimPrefix(path, "context.traits.")
		if key == "" {
			break
		}
		scalar(func(ev *schemas.Event) Value { return jsonValue(ev.Context.Traits[key]) })
		return f, nil
	case strings.HasPrefix(path, "context.extra."):
		key := strings.TrimPrefix(path, "context.extra.")
		if key == "" {
			break
		}
		scalar(func(ev *schemas.Event) Value { return jsonValue(ev.Context.Extra[key]) })
		return f, nil
	case strings.HasPrefix(path, "context."):
		get, ok := contextField[strings.TrimPrefix(path, "context.")]
		if !ok {
			return nil, fmt.Errorf("unknown context field %q; known: %s", path, strings.Join(sortedKeys(contextField), ", "))
		}
		scalar(func(ev *schemas.Event) Value { return optStr(get(&ev.Context)) })
		return f, nil
	default:
		if get, ok := topField[path]; ok {
			scalar(func(ev *schemas.Event) Value { return optStr(get(ev)) })
			return f, nil
		}
	}
	return nil, fmt.Errorf("unknown field path %q; want %s", path, FieldPaths)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, "context."+k)
	}
	sort.Strings(out)
	return out
}
