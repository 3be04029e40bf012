package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file is the JSON form of docs/EVENT_JSON.md (Segment spec, camelCase
// keys, e-commerce fields inside properties) that `cdp produce` reads and
// `cdp generate` writes.

// TimeLayout is how times are written in the JSON form: RFC 3339 in UTC
// with milliseconds, the precision Avro keeps.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes the spec's JSON form with a fixed key order, so equal
// events give identical bytes.
func (e Event) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	w := objWriter{b: &b}
	b.WriteByte('{')
	w.str("type", string(e.Type))
	w.str("event", e.Event)
	w.str("messageId", e.MessageID)
	w.str("userId", e.UserID)
	w.str("anonymousId", e.AnonymousID)
	w.time("timestamp", e.OriginalTimestamp)
	w.time("sentAt", e.SentAt)
	w.time("receivedAt", e.ReceivedAt)
	if !e.Context.IsZero() {
		w.key("context")
		writeContext(&b, &e.Context)
	}
	w.rawMap("traits", e.Traits)
	props := e.Properties
	if e.Commerce != nil {
		props = make(map[string]json.RawMessage, len(e.Properties)+8)
		for k, v := range e.Properties {
			props[k] = v
		}
		commerceJSON(e.Commerce, props)
	}
	w.rawMap("properties", props)
	w.str("name", e.Name)
	w.str("groupId", e.GroupID)
	w.str("previousId", e.PreviousID)
	b.WriteByte('}')
	return b.Bytes(), nil
}

type objWriter struct {
	b *bytes.Buffer
	n int
}

func (w *objWriter) key(k string) {
	if w.n > 0 {
		w.b.WriteByte(',')
	}
	w.n++
	w.b.Write(JSONString(k))
	w.b.WriteByte(':')
}

func (w *objWriter) str(k, v string) {
	if v != "" {
		w.key(k)
		w.b.Write(JSONString(v))
	}
}

func (w *objWriter) time(k string, t time.Time) {
	if !t.IsZero() {
		w.key(k)
		w.b.WriteByte('"')
		w.b.WriteString(t.UTC().Format(TimeLayout))
		w.b.WriteByte('"')
	}
}

func (w *objWriter) raw(k string, v json.RawMessage) {
	w.key(k)
	if len(v) == 0 {
		w.b.WriteString("null")
		return
	}
	w.b.Write(v)
}

func (w *objWriter) rawMap(k string, m map[string]json.RawMessage) {
	if len(m) == 0 {
		return
	}
	w.key(k)
	writeRawObject(w.b, m)
}

func writeRawObject(b *bytes.Buffer, m map[string]json.RawMessage) {
	o := objWriter{b: b}
	b.WriteByte('{')
	for _, k := range sortedKeys(m) {
		o.raw(k, m[k])
	}
	b.WriteByte('}')
}

// Sub-objects of context whose unknown keys are kept in Context.Extra as
// "object.key".
var contextObjects = []string{"page", "campaign", "device", "app", "library"}

func writeContext(b *bytes.Buffer, c *Context) {
	sub := map[string]map[string]json.RawMessage{}
	top := map[string]json.RawMessage{}
	for k, v := range c.Extra {
		if obj, rest, ok := strings.Cut(k, "."); ok && isContextObject(obj) {
			if sub[obj] == nil {
				sub[obj] = map[string]json.RawMessage{}
			}
			sub[obj][rest] = v
			continue
		}
		top[k] = v
	}
	put := func(m map[string]json.RawMessage, k, v string) {
		if v != "" {
			m[k] = JSONString(v)
		}
	}
	put(top, "ip", c.IP)
	put(top, "userAgent", c.UserAgent)
	put(top, "locale", c.Locale)
	objs := map[string][]string{
		"page":     {"url", c.Page.URL, "path", c.Page.Path, "referrer", c.Page.Referrer, "title", c.Page.Title},
		"campaign": {"source", c.Campaign.Source, "medium", c.Campaign.Medium, "name", c.Campaign.Name, "term", c.Campaign.Term, "content", c.Campaign.Content},
		"device":   {"id", c.Device.ID, "type", c.Device.Type},
		"app":      {"name", c.App.Name, "version", c.App.Version, "build", c.App.Build},
		"library":  {"name", c.Library.Name, "version", c.Library.Version},
	}
	for _, obj := range contextObjects {
		m := sub[obj]
		if m == nil {
			m = map[string]json.RawMessage{}
		}
		kv := objs[obj]
		for i := 0; i < len(kv); i += 2 {
			put(m, kv[i], kv[i+1])
		}
		if len(m) > 0 {
			var ob bytes.Buffer
			writeRawObject(&ob, m)
			top[obj] = ob.Bytes()
		}
	}
	if len(c.Traits) > 0 {
		var ob bytes.Buffer
		writeRawObject(&ob, c.Traits)
		top["traits"] = ob.Bytes()
	}
	writeRawObject(b, top)
}

func isContextObject(k string) bool {
	for _, o := range contextObjects {
		if o == k {
			return true
		}
	}
	return false
}

func commerceJSON(c *Commerce, props map[string]json.RawMessage) {
	putS := func(k, v string) {
		if v != "" {
			props[k] = JSONString(v)
		}
	}
	putF := func(k string, v *float64) {
		if v != nil {
			props[k] = floatJSON(*v)
		}
	}
	putS("product_id", c.ProductID)
	putS("sku", c.SKU)
	putS("category", c.Category)
	putS("name", c.Name)
	putS("brand", c.Brand)
	putS("variant", c.Variant)
	putF("price", c.Price)
	if c.Quantity != nil {
		props["quantity"] = json.RawMessage(strconv.FormatInt(*c.Quantity, 10))
	}
	putS("currency", c.Currency)
	putS("order_id", c.OrderID)
	putS("cart_id", c.CartID)
	putS("checkout_id", c.CheckoutID)
	putF("revenue", c.Revenue)
	putF("total", c.Total)
	putF("shipping", c.Shipping)
	putF("tax", c.Tax)
	putF("discount", c.Discount)
	putS("coupon", c.Coupon)
	if len(c.Products) > 0 {
		var b bytes.Buffer
		b.WriteByte('[')
		for i := range c.Products {
			if i > 0 {
				b.WriteByte(',')
			}
			p := &c.Products[i]
			m := make(map[string]json.RawMessage, 8+len(p.Extra))
			for k, v := range p.Extra {
				m[k] = v
			}
			for _, kv := range [][2]string{{"product_id", p.ProductID}, {"sku", p.SKU}, {"category", p.Category}, {"name", p.Name}, {"brand", p.Brand}, {"variant", p.Variant}} {
				if kv[1] != "" {
					m[kv[0]] = JSONString(kv[1])
				}
			}
			if p.Price != nil {
				m["price"] = floatJSON(*p.Price)
			}
			if p.Quantity != nil {
				m["quantity"] = json.RawMessage(strconv.FormatInt(*p.Quantity, 10))
			}
			writeRawObject(&b, m)
		}
		b.WriteByte(']')
		props["products"] = b.Bytes()
	}
}

// floatJSON writes f as a JSON number; JSON has no NaN or infinity, so those
// (which validation rejects) become null.
func floatJSON(f float64) json.RawMessage {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return json.RawMessage("null")
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64)
}

// ParseJSON reads one event in the JSON form (a line of a JSON-lines file).
// Every error is a *FieldError: bad_json when the text is not a JSON object,
// else the code and field of the first wrong value.
func ParseJSON(line []byte) (Event, error) {
	var ev Event
	if !json.Valid(line) {
		err := json.Unmarshal(line, &struct{}{})
		return ev, &FieldError{Code: CodeBadJSON, Reason: "not valid JSON: " + err.Error()}
	}
	err := ev.UnmarshalJSON(line)
	return ev, err
}

// UnmarshalJSON reads the spec's JSON form. A value of the wrong JSON type
// gives a *FieldError with code wrong_type (bad_timestamp for unparseable
// times, bad_json for malformed input) naming the field.
func (e *Event) UnmarshalJSON(data []byte) error {
	*e = Event{}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return &FieldError{Code: CodeBadJSON, Reason: "not a JSON object: " + err.Error()}
	}
	if top == nil {
		return &FieldError{Code: CodeBadJSON, Reason: "event is null"}
	}
	var typ string
	for _, f := range []struct {
		key string
		dst *string
	}{{"type", &typ}, {"messageId", &e.MessageID}, {"event", &e.Event}, {"userId", &e.UserID},
		{"anonymousId", &e.AnonymousID}, {"name", &e.Name}, {"groupId", &e.GroupID}, {"previousId", &e.PreviousID}} {
		if err := jsonStr(top[f.key], f.key, f.dst); err != nil {
			return err
		}
	}
	e.Type = CallType(typ)
	tsKey := "timestamp"
	if isNull(top[tsKey]) {
		tsKey = "originalTimestamp"
	}
	for _, f := range []struct {
		key string
		dst *time.Time
	}{{tsKey, &e.OriginalTimestamp}, {"sentAt", &e.SentAt}, {"receivedAt", &e.ReceivedAt}} {
		if err := jsonTime(top[f.key], f.key, f.dst); err != nil {
			return err
		}
	}
	if err := e.Context.fromJSON(top["context"]); err != nil {
		return err
	}
	var err error
	if e.Traits, err = jsonObject(top["traits"], "traits"); err != nil {
		return err
	}
	if e.Properties, err = jsonObject(top["properties"], "properties"); err != nil {
		return err
	}
	if e.Type == Track && CommerceEvents[e.Event] && len(e.Properties) > 0 {
		if e.Commerce, err = commerceFromJSON(e.Properties); err != nil {
			return err
		}
		if len(e.Properties) == 0 {
			e.Properties = nil // absent, as after an Avro round trip
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// jsonKind names the JSON type of raw for messages.
func jsonKind(raw json.RawMessage) string {
	if isNull(raw) {
		return "null"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func wrongType(field, want string, raw json.RawMessage) error {
	return &FieldError{Code: CodeWrongType, Field: field, Reason: fmt.Sprintf("want %s, got %s", want, jsonKind(raw))}
}

func jsonStr(raw json.RawMessage, field string, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if raw[0] != '"' {
		return wrongType(field, "a string", raw)
	}
	return json.Unmarshal(raw, dst)
}

func jsonTime(raw json.RawMessage, field string, dst *time.Time) error {
	var s string
	if err := jsonStr(raw, field, &s); err != nil || s == "" {
		return err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return &FieldError{Code: CodeBadTimestamp, Field: field, Reason: fmt.Sprintf("%q is not an RFC 3339 time like 2026-11-28T10:00:00.123Z", s)}
	}
	// Avro keeps milliseconds; truncating here makes JSON and Avro agree.
	*dst = time.UnixMilli(t.UnixMilli()).UTC()
	return nil
}

func jsonFloat(raw json.RawMessage, field string) (*float64, error) {
	if isNull(raw) {
		return nil, nil
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return nil, wrongType(field, "a number", raw)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil, &FieldError{Code: CodeWrongType, Field: field, Reason: fmt.Sprintf("number %s out of range", raw)}
	}
	return &f, nil
}

func jsonInt(raw json.RawMessage, field string) (*int64, error) {
	f, err := jsonFloat(raw, field)
	if f == nil || err != nil {
		return nil, err
	}
	i, perr := strconv.ParseInt(string(raw), 10, 64)
	if perr != nil {
		if *f != math.Trunc(*f) || math.Abs(*f) > 1<<53 {
			return nil, &FieldError{Code: CodeWrongType, Field: field, Reason: fmt.Sprintf("want an integer, got %s", raw)}
		}
		i = int64(*f)
	}
	return &i, nil
}

// jsonObject reads a JSON object into compacted JSON texts per key.
func jsonObject(raw json.RawMessage, field string) (map[string]json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, wrongType(field, "an object", raw)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, &FieldError{Code: CodeBadJSON, Field: field, Reason: err.Error()}
	}
	if len(m) == 0 {
		return nil, nil
	}
	for k, v := range m {
		m[k] = compact(v)
	}
	return m, nil
}

func compact(v json.RawMessage) json.RawMessage {
	if len(v) > 0 && (v[0] == '{' || v[0] == '[') {
		var b bytes.Buffer
		if json.Compact(&b, v) == nil {
			return b.Bytes()
		}
	}
	return v
}

func (c *Context) fromJSON(raw json.RawMessage) error {
	m, err := jsonObject(raw, "context")
	if m == nil || err != nil {
		return err
	}
	take := func(key string, dst *string) error {
		err := jsonStr(m[key], "context."+key, dst)
		delete(m, key)
		return err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"ip", &c.IP}, {"userAgent", &c.UserAgent}, {"locale", &c.Locale}} {
		if err := take(f.key, f.dst); err != nil {
			return err
		}
	}
	if c.Traits, err = jsonObject(m["traits"], "context.traits"); err != nil {
		return err
	}
	delete(m, "traits")
	fields := map[string][]struct {
		key string
		dst *string
	}{
		"page":     {{"url", &c.Page.URL}, {"path", &c.Page.Path}, {"referrer", &c.Page.Referrer}, {"title", &c.Page.Title}},
		"campaign": {{"source", &c.Campaign.Source}, {"medium", &c.Campaign.Medium}, {"name", &c.Campaign.Name}, {"term", &c.Campaign.Term}, {"content", &c.Campaign.Content}},
		"device":   {{"id", &c.Device.ID}, {"type", &c.Device.Type}},
		"app":      {{"name", &c.App.Name}, {"version", &c.App.Version}, {"build", &c.App.Build}},
		"library":  {{"name", &c.Library.Name}, {"version", &c.Library.Version}},
	}
	for _, obj := range contextObjects {
		sub, err := jsonObject(m[obj], "context."+obj)
		if err != nil {
			return err
		}
		delete(m, obj)
		for _, f := range fields[obj] {
			if err := jsonStr(sub[f.key], "context."+obj+"."+f.key, f.dst); err != nil {
				return err
			}
			delete(sub, f.key)
		}
		for k, v := range sub {
			m[obj+"."+k] = v
		}
	}
	if len(m) > 0 {
		c.Extra = m
	}
	return nil
}

// commerceFromJSON moves the e-commerce keys of props into a Commerce.
func commerceFromJSON(props map[string]json.RawMessage) (*Commerce, error) {
	c := &Commerce{}
	found := false
	str := func(key string, dst *string) error {
		raw, ok := props[key]
		if !ok {
			return nil
		}
		if err := jsonStr(raw, "properties."+key, dst); err != nil {
			return err
		}
		found = true
		delete(props, key)
		return nil
	}
	num := func(key string, dst **float64) error {
		raw, ok := props[key]
		if !ok {
			return nil
		}
		v, err := jsonFloat(raw, "properties."+key)
		if err != nil {
			return err
		}
		*dst, found = v, true
		delete(props, key)
		return nil
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"product_id", &c.ProductID}, {"sku", &c.SKU}, {"category", &c.Category}, {"name", &c.Name},
		{"brand", &c.Brand}, {"variant", &c.Variant}, {"currency", &c.Currency}, {"order_id", &c.OrderID},
		{"cart_id", &c.CartID}, {"checkout_id", &c.CheckoutID}, {"coupon", &c.Coupon}} {
		if err := str(f.key, f.dst); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		key string
		dst **float64
	}{{"price", &c.Price}, {"revenue", &c.Revenue}, {"total", &c.Total}, {"shipping", &c.Shipping},
		{"tax", &c.Tax}, {"discount", &c.Discount}} {
		if err := num(f.key, f.dst); err != nil {
			return nil, err
		}
	}
	if raw, ok := props["quantity"]; ok {
		q, err := jsonInt(raw, "properties.quantity")
		if err != nil {
			return nil, err
		}
		c.Quantity, found = q, true
		delete(props, "quantity")
	}
	if raw, ok := props["products"]; ok && !isNull(raw) {
		if raw[0] != '[' {
			return nil, wrongType("properties.products", "an array", raw)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, &FieldError{Code: CodeBadJSON, Field: "properties.products", Reason: err.Error()}
		}
		for i, it := range items {
			p, err := productFromJSON(it, fmt.Sprintf("properties.products[%d]", i))
			if err != nil {
				return nil, err
			}
			c.Products = append(c.Products, p)
		}
		found = true
		delete(props, "products")
	}
	if !found {
		return nil, nil
	}
	return c, nil
}

func productFromJSON(raw json.RawMessage, path string) (Product, error) {
	var p Product
	if isNull(raw) || raw[0] != '{' {
		return p, wrongType(path, "an object", raw)
	}
	m, err := jsonObject(raw, path)
	if err != nil {
		return p, err
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"product_id", &p.ProductID}, {"sku", &p.SKU}, {"category", &p.Category}, {"name", &p.Name},
		{"brand", &p.Brand}, {"variant", &p.Variant}} {
		if err := jsonStr(m[f.key], path+"."+f.key, f.dst); err != nil {
			return p, err
		}
		delete(m, f.key)
	}
	if p.Price, err = jsonFloat(m["price"], path+".price"); err != nil {
		return p, err
	}
	delete(m, "price")
	if p.Quantity, err = jsonInt(m["quantity"], path+".quantity"); err != nil {
		return p, err
	}
	delete(m, "quantity")
	if len(m) > 0 {
		p.Extra = m
	}
	return p, nil
}
