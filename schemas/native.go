package schemas

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/linkedin/goavro/v2"
)

// This file converts between Event and goavro's native form of event.avsc:
// records are map[string]any, a non-null union value is wrapped as
// map[string]any{"<type name>": value}, timestamp-millis is time.Time.

// Avro type names of union members in event.avsc, as goavro spells them.
const (
	avroString = "string"
	avroDouble = "double"
	avroLong   = "long"
	avroMap    = "map"
	avroArray  = "array"
	avroTime   = "long.timestamp-millis"
)

// ToNative returns ev in goavro's native form for event.avsc. Absent fields
// are left out so that goavro writes their default (null).
func ToNative(ev *Event) map[string]any {
	m := map[string]any{
		"message_id": ev.MessageID,
		"type":       string(ev.Type),
	}
	putStr(m, "event", ev.Event)
	putStr(m, "user_id", ev.UserID)
	putStr(m, "anonymous_id", ev.AnonymousID)
	putTime(m, "original_timestamp", ev.OriginalTimestamp)
	putTime(m, "sent_at", ev.SentAt)
	putTime(m, "received_at", ev.ReceivedAt)
	if !ev.Context.IsZero() {
		m["context"] = goavro.Union(Namespace+".Context", contextNative(&ev.Context))
	}
	putMap(m, "traits", ev.Traits)
	putMap(m, "properties", ev.Properties)
	if ev.Commerce != nil {
		m["commerce"] = goavro.Union(Namespace+".Commerce", commerceNative(ev.Commerce))
	}
	putStr(m, "name", ev.Name)
	putStr(m, "group_id", ev.GroupID)
	putStr(m, "previous_id", ev.PreviousID)
	return m
}

func putStr(m map[string]any, k, v string) {
	if v != "" {
		m[k] = goavro.Union(avroString, v)
	}
}

func putTime(m map[string]any, k string, t time.Time) {
	if !t.IsZero() {
		m[k] = goavro.Union(avroTime, t)
	}
}

func putF64(m map[string]any, k string, v *float64) {
	if v != nil {
		m[k] = goavro.Union(avroDouble, *v)
	}
}

func putI64(m map[string]any, k string, v *int64) {
	if v != nil {
		m[k] = goavro.Union(avroLong, *v)
	}
}

func putMap(m map[string]any, k string, v map[string]json.RawMessage) {
	if len(v) == 0 {
		return
	}
	out := make(map[string]any, len(v))
	for key, val := range v {
		out[key] = string(val)
	}
	m[k] = goavro.Union(avroMap, out)
}

func contextNative(c *Context) map[string]any {
	m := map[string]any{}
	putStr(m, "ip", c.IP)
	putStr(m, "user_agent", c.UserAgent)
	putStr(m, "locale", c.Locale)
	if c.Page != (PageContext{}) {
		p := map[string]any{}
		putStr(p, "url", c.Page.URL)
		putStr(p, "path", c.Page.Path)
		putStr(p, "referrer", c.Page.Referrer)
		putStr(p, "title", c.Page.Title)
		m["page"] = goavro.Union(Namespace+".Page", p)
	}
	if c.Campaign != (Campaign{}) {
		p := map[string]any{}
		putStr(p, "source", c.Campaign.Source)
		putStr(p, "medium", c.Campaign.Medium)
		putStr(p, "name", c.Campaign.Name)
		putStr(p, "term", c.Campaign.Term)
		putStr(p, "content", c.Campaign.Content)
		m["campaign"] = goavro.Union(Namespace+".Campaign", p)
	}
	if c.Device != (Device{}) {
		p := map[string]any{}
		putStr(p, "id", c.Device.ID)
		putStr(p, "type", c.Device.Type)
		m["device"] = goavro.Union(Namespace+".Device", p)
	}
	if c.App != (App{}) {
		p := map[string]any{}
		putStr(p, "name", c.App.Name)
		putStr(p, "version", c.App.Version)
		putStr(p, "build", c.App.Build)
		m["app"] = goavro.Union(Namespace+".App", p)
	}
	if c.Library != (Library{}) {
		p := map[string]any{}
		putStr(p, "name", c.Library.Name)
		putStr(p, "version", c.Library.Version)
		m["library"] = goavro.Union(Namespace+".Library", p)
	}
	putMap(m, "traits", c.Traits)
	putMap(m, "extra", c.Extra)
	return m
}

func commerceNative(c *Commerce) map[string]any {
	m := map[string]any{}
	putStr(m, "product_id", c.ProductID)
	putStr(m, "sku", c.SKU)
	putStr(m, "category", c.Category)
	putStr(m, "name", c.Name)
	putStr(m, "brand", c.Brand)
	putStr(m, "variant", c.Variant)
	putF64(m, "price", c.Price)
	putI64(m, "quantity", c.Quantity)
	putStr(m, "currency", c.Currency)
	putStr(m, "order_id", c.OrderID)
	putStr(m, "cart_id", c.CartID)
	putStr(m, "checkout_id", c.CheckoutID)
	putF64(m, "revenue", c.Revenue)
	putF64(m, "total", c.Total)
	putF64(m, "shipping", c.Shipping)
	putF64(m, "tax", c.Tax)
	putF64(m, "discount", c.Discount)
	putStr(m, "coupon", c.Coupon)
	if len(c.Products) > 0 {
		ps := make([]any, len(c.Products))
		for i := range c.Products {
			p := &c.Products[i]
			pm := map[string]any{}
			putStr(pm, "product_id", p.ProductID)
			putStr(pm, "sku", p.SKU)
			putStr(pm, "category", p.Category)
			putStr(pm, "name", p.Name)
			putStr(pm, "brand", p.Brand)
			putStr(pm, "variant", p.Variant)
			putF64(pm, "price", p.Price)
			putI64(pm, "quantity", p.Quantity)
			putMap(pm, "extra", p.Extra)
			ps[i] = pm
		}
		m["products"] = goavro.Union(avroArray, ps)
	}
	return m
}

// FromNative maps a goavro-decoded event record (any writer version of
// event.avsc) onto an Event by field name: fields the Event does not know
// are ignored, fields the writer lacked stay absent. It is the reference
// path behind Serde's compiled decoder and what DecodeNative users get.
func FromNative(native any) (Event, error) {
	var ev Event
	m, ok := native.(map[string]any)
	if !ok {
		return ev, nativeErr("", "record", native)
	}
	var err error
	str := func(field string, dst *string) {
		if err == nil {
			*dst, err = nativeString(m[field], field)
		}
	}
	str("message_id", &ev.MessageID)
	var typ string
	str("type", &typ)
	ev.Type = CallType(typ)
	str("event", &ev.Event)
	str("user_id", &ev.UserID)
	str("anonymous_id", &ev.AnonymousID)
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"original_timestamp", &ev.OriginalTimestamp}, {"sent_at", &ev.SentAt}, {"received_at", &ev.ReceivedAt}} {
		if err == nil {
			*f.dst, err = nativeTime(m[f.name], f.name)
		}
	}
	if err == nil {
		err = contextFromNative(m["context"], &ev.Context)
	}
	if err == nil {
		ev.Traits, err = nativeMap(m["traits"], "traits")
	}
	if err == nil {
		ev.Properties, err = nativeMap(m["properties"], "properties")
	}
	if err == nil {
		ev.Commerce, err = commerceFromNative(m["commerce"])
	}
	str("name", &ev.Name)
	str("group_id", &ev.GroupID)
	str("previous_id", &ev.PreviousID)
	return ev, err
}

func nativeErr(field, want string, got any) error {
	return &DecodeError{Code: CodeWrongType, Field: field, Err: fmt.Errorf("want %s, got %T", want, got)}
}

// unwrapUnion removes goavro's {"type": value} wrapper around a non-null
// union value. isValue tells a wrapped value from a record or map that
// happens to have one key.
func unwrapUnion(v any, isValue func(any) bool) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, inner := range m {
			if isValue(inner) {
				return inner
			}
		}
	}
	return v
}

func isMap(v any) bool { _, ok := v.(map[string]any); return ok }

func nativeString(v any, field string) (string, error) {
	v = unwrapUnion(v, func(any) bool { return true })
	switch t := v.(type) {
	case nil:
		return "", nil
	case string:
		return t, nil
	case []byte:
		return string(t), nil
	}
	return "", nativeErr(field, "string", v)
}

func nativeTime(v any, field string) (time.Time, error) {
	v = unwrapUnion(v, func(any) bool { return true })
	switch t := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return time.UnixMilli(t.UnixMilli()).UTC(), nil
	case int64:
		return time.UnixMilli(t).UTC(), nil
	}
	return time.Time{}, nativeErr(field, "timestamp-millis", v)
}

func nativeF64(v any, field string) (*float64, error) {
	v = unwrapUnion(v, func(any) bool { return true })
	var f float64
	switch t := v.(type) {
	case nil:
		return nil, nil
	case float64:
		f = t
	case float32:
		f = float64(t)
	case int64:
		f = float64(t)
	case int32:
		f = float64(t)
	default:
		return nil, nativeErr(field, "double", v)
	}
	return &f, nil
}

func nativeI64(v any, field string) (*int64, error) {
	v = unwrapUnion(v, func(any) bool { return true })
	var i int64
	switch t := v.(type) {
	case nil:
		return nil, nil
	case int64:
		i = t
	case int32:
		i = int64(t)
	default:
		return nil, nativeErr(field, "long", v)
	}
	return &i, nil
}

func nativeMap(v any, field string) (map[string]json.RawMessage, error) {
	v = unwrapUnion(v, isMap)
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nativeErr(field, "map<string>", v)
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, val := range m {
		s, err := nativeString(val, field+"."+k)
		if err != nil {
			return nil, err
		}
		out[k] = jsonText([]byte(s))
	}
	return out, nil
}

func nativeRecord(v any, field string) (map[string]any, error) {
	// A wrapped record is {"io.streamcdp.X": {...}}; record field names
	// cannot contain dots, so a dotted single key is the wrapper.
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, inner := range m {
			if _, isRec := inner.(map[string]any); isRec && containsDot(k) {
				v = inner
			}
		}
	}
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nativeErr(field, "record", v)
	}
	return m, nil
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

func contextFromNative(v any, c *Context) error {
	m, err := nativeRecord(v, "context")
	if m == nil || err != nil {
		return err
	}
	strs := []struct {
		rec   string
		field string
		dst   *string
	}{
		{"", "ip", &c.IP}, {"", "user_agent", &c.UserAgent}, {"", "locale", &c.Locale},
		{"page", "url", &c.Page.URL}, {"page", "path", &c.Page.Path},
		{"page", "referrer", &c.Page.Referrer}, {"page", "title", &c.Page.Title},
		{"campaign", "source", &c.Campaign.Source}, {"campaign", "medium", &c.Campaign.Medium},
		{"campaign", "name", &c.Campaign.Name}, {"campaign", "term", &c.Campaign.Term},
		{"campaign", "content", &c.Campaign.Content},
		{"device", "id", &c.Device.ID}, {"device", "type", &c.Device.Type},
		{"app", "name", &c.App.Name}, {"app", "version", &c.App.Version}, {"app", "build", &c.App.Build},
		{"library", "name", &c.Library.Name}, {"library", "version", &c.Library.Version},
	}
	subs := map[string]map[string]any{"": m}
	for _, s := range strs {
		sub, seen := subs[s.rec]
		if !seen {
			if sub, err = nativeRecord(m[s.rec], "context."+s.rec); err != nil {
				return err
			}
			subs[s.rec] = sub
		}
		if sub == nil {
			continue
		}
		if *s.dst, err = nativeString(sub[s.field], "context."+join(s.rec, s.field)); err != nil {
			return err
		}
	}
	if c.Traits, err = nativeMap(m["traits"], "context.traits"); err != nil {
		return err
	}
	c.Extra, err = nativeMap(m["extra"], "context.extra")
	return err
}

func commerceFromNative(v any) (*Commerce, error) {
	m, err := nativeRecord(v, "commerce")
	if m == nil || err != nil {
		return nil, err
	}
	c := &Commerce{}
	if err := productFields(m, "commerce", &c.ProductID, &c.SKU, &c.Category, &c.Name, &c.Brand, &c.Variant, &c.Price, &c.Quantity); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		f   string
		dst *string
	}{{"currency", &c.Currency}, {"order_id", &c.OrderID}, {"cart_id", &c.CartID}, {"checkout_id", &c.CheckoutID}, {"coupon", &c.Coupon}} {
		if *s.dst, err = nativeString(m[s.f], "commerce."+s.f); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		f   string
		dst **float64
	}{{"revenue", &c.Revenue}, {"total", &c.Total}, {"shipping", &c.Shipping}, {"tax", &c.Tax}, {"discount", &c.Discount}} {
		if *f.dst, err = nativeF64(m[f.f], "commerce."+f.f); err != nil {
			return nil, err
		}
	}
	arr := unwrapUnion(m["products"], func(v any) bool { _, ok := v.([]any); return ok })
	if arr == nil {
		return c, nil
	}
	items, ok := arr.([]any)
	if !ok {
		return nil, nativeErr("commerce.products", "array", arr)
	}
	for i, it := range items {
		pm, err := nativeRecord(it, "commerce.products")
		if err != nil {
			return nil, err
		}
		if pm == nil {
			continue
		}
		var p Product
		path := fmt.Sprintf("commerce.products[%d]", i)
		if err := productFields(pm, path, &p.ProductID, &p.SKU, &p.Category, &p.Name, &p.Brand, &p.Variant, &p.Price, &p.Quantity); err != nil {
			return nil, err
		}
		if p.Extra, err = nativeMap(pm["extra"], path+".extra"); err != nil {
			return nil, err
		}
		c.Products = append(c.Products, p)
	}
	return c, nil
}

func productFields(m map[string]any, path string, id, sku, cat, name, brand, variant *string, price **float64, qty **int64) error {
	var err error
	for _, s := range []struct {
		f   string
		dst *string
	}{{"product_id", id}, {"sku", sku}, {"category", cat}, {"name", name}, {"brand", brand}, {"variant", variant}} {
		if *s.dst, err = nativeString(m[s.f], path+"."+s.f); err != nil {
			return err
		}
	}
	if *price, err = nativeF64(m["price"], path+".price"); err != nil {
		return err
	}
	*qty, err = nativeI64(m["quantity"], path+".quantity")
	return err
}

// jsonText returns b as a JSON text: b itself when it already is one, else
// b quoted as a JSON string (a producer that wrote a plain string). The fast
// paths cover what producers write almost always without running the full
// JSON scanner.
func jsonText(b []byte) json.RawMessage {
	if isJSONText(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

func isJSONText(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	switch c := b[0]; {
	case c == '"':
		if len(b) >= 2 && b[len(b)-1] == '"' {
			plain := true
			for _, c := range b[1 : len(b)-1] {
				if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
					plain = false
					break
				}
			}
			if plain {
				return true
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if isJSONNumber(b) {
			return true
		}
	case c == 't' || c == 'f' || c == 'n':
		if s := string(b); s == "true" || s == "false" || s == "null" {
			return true
		}
	}
	return json.Valid(b) && !hasOuterSpace(b)
}

// hasOuterSpace rejects texts json.Valid accepts with surrounding blanks, so
// that the stored form is canonical enough to compare.
func hasOuterSpace(b []byte) bool {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	return isSpace(b[0]) || isSpace(b[len(b)-1])
}

// isJSONNumber matches the JSON number grammar exactly.
func isJSONNumber(b []byte) bool {
	i := 0
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// sortedKeys returns m's keys in order, for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
