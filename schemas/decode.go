package schemas

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"
)

// This file is the compiled decoder behind Serde.Decode. For each writer
// schema seen on the wire it builds, once, a tree of closures that reads
// Avro binary straight into Event fields matched by name, skipping fields
// the Event does not know and leaving absent ones at their zero value (the
// schema default, null). That is Avro schema resolution specialised to one
// reader type; it runs several times faster than decoding to goavro's
// generic maps and converting (see BenchmarkDecodeValidate), which matters
// because every event passes here. FromNative is the reference it is
// fuzz-tested against.

// Limits that keep hostile input from costing more than its size.
const (
	maxSkipDepth = 64
	// zeroSizeItems bounds collections of items that take no bytes (null).
	zeroSizeItems = 1 << 12
)

var (
	errShort     = errors.New("input ends early")
	errVarint    = errors.New("varint longer than 64 bits")
	errNegLen    = errors.New("negative length")
	errTooDeep   = errors.New("nesting deeper than 64")
	errTooMany   = errors.New("more collection items than the input can hold")
	errUnionIdx  = errors.New("union branch index out of range")
	errEnumIdx   = errors.New("enum symbol index out of range")
	errBadInt    = errors.New("int out of 32-bit range")
	errBadBool   = errors.New("boolean byte is neither 0 nor 1")
	errTrailing  = errors.New("bytes left after the record")
	errDupKey    = errors.New("duplicate map key")
	errNullBytes = errors.New("value of this union branch cannot be read as the field's type")
)

type reader struct {
	buf    []byte // a private copy of the Avro body; decoded values point into it
	pos    int
	err    *DecodeError
	budget int // collection items still allowed
	depth  int
	floats []float64 // backing store for *float64 fields: one allocation per event, not per field
	ints   []int64
}

func (r *reader) newFloat(v float64) *float64 {
	if len(r.floats) == cap(r.floats) {
		r.floats = make([]float64, 0, 16)
	}
	r.floats = append(r.floats, v)
	return &r.floats[len(r.floats)-1]
}

func (r *reader) newInt(v int64) *int64 {
	if len(r.ints) == cap(r.ints) {
		r.ints = make([]int64, 0, 8)
	}
	r.ints = append(r.ints, v)
	return &r.ints[len(r.ints)-1]
}

// newReader copies b once, so the decoded event owns its memory (the
// caller may reuse b) and its strings and JSON texts need no allocation of
// their own: they are views of the copy. Strings view bytes that are never
// handed out as mutable slices, and each JSON text is capped to its own
// bytes, so no write through a json.RawMessage can change a string.
func newReader(b []byte) reader {
	return reader{buf: bytes.Clone(b), budget: len(b) + zeroSizeItems}
}

func (r *reader) fail(code string, err error) {
	if r.err == nil {
		r.err = &DecodeError{Code: code, Err: fmt.Errorf("at byte %d: %w", r.pos, err)}
	}
}

func (r *reader) failField(code, field string, err error) {
	if r.err == nil {
		r.err = &DecodeError{Code: code, Field: field, Err: err}
	}
}

func (r *reader) long() int64 {
	if r.pos < len(r.buf) && r.err == nil {
		if b := r.buf[r.pos]; b < 0x80 { // one-byte varint: most lengths and indexes
			r.pos++
			return int64(b>>1) ^ -int64(b&1)
		}
	}
	return r.longSlow()
}

func (r *reader) longSlow() int64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if r.pos >= len(r.buf) {
			r.fail(CodeTruncated, errShort)
			return 0
		}
		b := r.buf[r.pos]
		r.pos++
		if shift == 63 && b > 1 {
			r.fail(CodeBadAvro, errVarint)
			return 0
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			break
		}
	}
	return int64(v>>1) ^ -int64(v&1)
}

func (r *reader) int() int64 {
	v := r.long()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail(CodeBadAvro, errBadInt)
		return 0
	}
	return v
}

// span reads a length-prefixed byte run and returns its bounds.
func (r *reader) span() (int, int) {
	n := r.long()
	if r.err != nil {
		return 0, 0
	}
	if n < 0 {
		r.fail(CodeBadAvro, errNegLen)
		return 0, 0
	}
	if n > int64(len(r.buf)-r.pos) {
		r.fail(CodeTruncated, errShort)
		return 0, 0
	}
	start := r.pos
	r.pos += int(n)
	return start, r.pos
}

func (r *reader) string() string {
	s, e := r.span()
	if s == e {
		return ""
	}
	return unsafe.String(&r.buf[s], e-s)
}

func (r *reader) rawText() json.RawMessage {
	s, e := r.span()
	if r.err != nil {
		return nil
	}
	return jsonText(r.buf[s:e:e])
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.buf)-r.pos {
		r.fail(CodeTruncated, errShort)
		return nil
	}
	b := r.buf[r.pos : r.pos+n]
	r.pos += n
	return b
}

func (r *reader) double() float64 {
	b := r.fixed(8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

func (r *reader) float() float64 {
	b := r.fixed(4)
	if b == nil {
		return 0
	}
	return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
}

func (r *reader) index(n int, what error) int {
	i := r.long()
	if r.err != nil {
		return -1
	}
	if i < 0 || i >= int64(n) {
		r.fail(CodeBadAvro, what)
		return -1
	}
	return int(i)
}

// blockCount reads the item count of the next array/map block (0 at the
// end), skipping the optional block byte size, and charges it to the budget.
func (r *reader) blockCount(minItemSize int) int {
	n := r.long()
	if n < 0 {
		if n == math.MinInt64 {
			r.fail(CodeBadAvro, errTooMany)
			return 0
		}
		n = -n
		r.long() // block size in bytes
	}
	if r.err != nil || n == 0 {
		return 0
	}
	if n > int64(r.budget) || (minItemSize > 0 && n > int64((len(r.buf)-r.pos)/minItemSize)) {
		if minItemSize > 0 && n > int64(len(r.buf)-r.pos) {
			r.fail(CodeTruncated, errShort)
		} else {
			r.fail(CodeBadAvro, errTooMany)
		}
		return 0
	}
	r.budget -= int(n)
	return int(n)
}

// minSize is the fewest bytes a value of n can take.
func minSize(n *avroNode, seen map[*avroNode]bool) int {
	switch n.kind {
	case kNull:
		return 0
	case kFloat:
		return 4
	case kDouble:
		return 8
	case kFixed:
		return n.size
	case kRecord:
		if seen[n] {
			return 0
		}
		seen[n] = true
		s := 0
		for _, f := range n.fields {
			s += minSize(f.typ, seen)
		}
		delete(seen, n)
		return s
	}
	return 1
}

// ---- skipping values the Event does not use ----

type skipFn func(*reader)

func compileSkip(n *avroNode, memo map[*avroNode]*skipFn) skipFn {
	if p, ok := memo[n]; ok {
		return func(r *reader) { (*p)(r) } // recursive named type
	}
	var f skipFn
	switch n.kind {
	case kNull:
		f = func(*reader) {}
	case kBoolean:
		f = func(r *reader) {
			if b := r.fixed(1); b != nil && b[0] > 1 {
				r.fail(CodeBadAvro, errBadBool)
			}
		}
	case kInt:
		f = func(r *reader) { r.int() }
	case kLong:
		f = func(r *reader) { r.long() }
	case kFloat:
		f = func(r *reader) { r.fixed(4) }
	case kDouble:
		f = func(r *reader) { r.fixed(8) }
	case kBytes, kString:
		f = func(r *reader) { r.span() }
	case kFixed:
		size := n.size
		f = func(r *reader) { r.fixed(size) }
	case kEnum:
		count := len(n.symbols)
		f = func(r *reader) { r.index(count, errEnumIdx) }
	case kRecord:
		slot := new(skipFn)
		memo[n] = slot
		fields := make([]skipFn, len(n.fields))
		for i, fd := range n.fields {
			fields[i] = compileSkip(fd.typ, memo)
		}
		f = func(r *reader) {
			if r.depth++; r.depth > maxSkipDepth {
				r.fail(CodeBadAvro, errTooDeep)
				return
			}
			for _, s := range fields {
				if s(r); r.err != nil {
					break
				}
			}
			r.depth--
		}
		*slot = f
	case kArray, kMap:
		elem := n.items
		if n.kind == kMap {
			elem = n.values
		}
		item := compileSkip(elem, memo)
		isMap := n.kind == kMap
		size := minSize(elem, map[*avroNode]bool{})
		if isMap {
			size++
		}
		f = func(r *reader) {
			if r.depth++; r.depth > maxSkipDepth {
				r.fail(CodeBadAvro, errTooDeep)
				return
			}
			var keys map[string]struct{} // duplicate keys are invalid, as goavro holds
			for r.err == nil {
				c := r.blockCount(size)
				if c == 0 {
					break
				}
				for ; c > 0 && r.err == nil; c-- {
					if isMap {
						k := r.string()
						if keys == nil {
							keys = map[string]struct{}{}
						}
						if _, dup := keys[k]; dup && r.err == nil {
							r.fail(CodeBadAvro, fmt.Errorf("%w %q", errDupKey, k))
							return
						}
						keys[k] = struct{}{}
					}
					item(r)
				}
			}
			r.depth--
		}
	case kUnion:
		branches := make([]skipFn, len(n.branches))
		for i, b := range n.branches {
			branches[i] = compileSkip(b, memo)
		}
		f = func(r *reader) {
			if i := r.index(len(branches), errUnionIdx); i >= 0 {
				branches[i](r)
			}
		}
	}
	return f
}

// ---- reading values into Go types, with union and promotion handling ----

// valueFn reads one value of a writer type as a Go T.
type valueFn[T any] func(*reader) T

// scalar compiles w as a T: non-union types through direct, unions branch
// by branch (null gives T's zero value; a branch direct rejects fails only
// when the data actually uses it, as Avro resolution requires).
func scalar[T any](w *avroNode, path string, direct func(*avroNode) (valueFn[T], bool)) (valueFn[T], error) {
	if w.kind != kUnion {
		if f, ok := direct(w); ok {
			return f, nil
		}
		return nil, &DecodeError{Code: CodeWrongType, Field: path, Err: fmt.Errorf("writer type %s cannot be read here", w.typeName())}
	}
	branches := make([]valueFn[T], len(w.branches))
	for i, b := range w.branches {
		if b.kind == kNull {
			branches[i] = func(*reader) (zero T) { return zero }
			continue
		}
		if f, ok := direct(b); ok {
			branches[i] = f
			continue
		}
		typ := b.typeName()
		branches[i] = func(r *reader) (zero T) {
			r.failField(CodeWrongType, path, fmt.Errorf("%w: writer type %s", errNullBytes, typ))
			return zero
		}
	}
	return func(r *reader) (zero T) {
		if i := r.index(len(branches), errUnionIdx); i >= 0 {
			return branches[i](r)
		}
		return zero
	}, nil
}

func directString(w *avroNode) (valueFn[string], bool) {
	if w.kind == kString || w.kind == kBytes {
		return (*reader).string, true
	}
	return nil, false
}

func directF64(w *avroNode) (valueFn[*float64], bool) {
	var read func(*reader) float64
	switch w.kind {
	case kDouble:
		read = (*reader).double
	case kFloat:
		read = (*reader).float
	case kLong:
		read = func(r *reader) float64 { return float64(r.long()) }
	case kInt:
		read = func(r *reader) float64 { return float64(r.int()) }
	default:
		return nil, false
	}
	return func(r *reader) *float64 {
		v := read(r)
		if r.err != nil {
			return nil
		}
		return r.newFloat(v)
	}, true
}

func directI64(w *avroNode) (valueFn[*int64], bool) {
	var read func(*reader) int64
	switch w.kind {
	case kLong:
		read = (*reader).long
	case kInt:
		read = (*reader).int
	default:
		return nil, false
	}
	return func(r *reader) *int64 {
		v := read(r)
		if r.err != nil {
			return nil
		}
		return r.newInt(v)
	}, true
}

func directTime(w *avroNode) (valueFn[time.Time], bool) {
	if w.kind != kLong {
		return nil, false
	}
	if w.logical == "timestamp-micros" {
		return func(r *reader) time.Time {
			us := r.long()
			ms := us / 1000
			if us%1000 < 0 {
				ms-- // floor, as time.UnixMicro(us).UnixMilli() does
			}
			return time.UnixMilli(ms).UTC()
		}, true
	}
	return func(r *reader) time.Time { return time.UnixMilli(r.long()).UTC() }, true
}

func directCallType(w *avroNode) (valueFn[CallType], bool) {
	switch w.kind {
	case kString:
		return func(r *reader) CallType { return CallType(r.string()) }, true
	case kEnum:
		syms := make([]CallType, len(w.symbols))
		for i, s := range w.symbols {
			syms[i] = CallType(s)
		}
		return func(r *reader) CallType {
			if i := r.index(len(syms), errEnumIdx); i >= 0 {
				return syms[i]
			}
			return ""
		}, true
	}
	return nil, false
}

func directJSONMap(w *avroNode) (valueFn[map[string]json.RawMessage], bool) {
	if w.kind != kMap {
		return nil, false
	}
	var val valueFn[json.RawMessage]
	switch w.values.kind {
	case kString, kBytes:
		val = (*reader).rawText
	default:
		return nil, false
	}
	return func(r *reader) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		for r.err == nil {
			c := r.blockCount(2)
			if c == 0 {
				break
			}
			if m == nil {
				m = make(map[string]json.RawMessage, c)
			}
			for ; c > 0 && r.err == nil; c-- {
				k := r.string()
				before := len(m)
				m[k] = val(r)
				if len(m) == before && r.err == nil { // one lookup, not two, on the hot path
					r.fail(CodeBadAvro, fmt.Errorf("%w %q", errDupKey, k))
					return nil
				}
			}
		}
		if r.err != nil {
			return nil
		}
		return m
	}, true
}

// ---- records ----

// recordFn decodes one writer record into *T.
type recordFn[T any] func(*reader, *T)

// binder compiles the writer type of one known field into a step that
// stores it in *T.
type binder[T any] func(w *avroNode, path string) (recordFn[T], error)

// optString is the decoder of the commonest field type, ["null","string"],
// in one closure instead of three.
func optString(w *avroNode) (valueFn[string], bool) {
	if w.kind != kUnion || len(w.branches) != 2 || w.branches[0].kind != kNull ||
		(w.branches[1].kind != kString && w.branches[1].kind != kBytes) {
		return nil, false
	}
	return func(r *reader) string {
		switch r.index(2, errUnionIdx) {
		case 1:
			return r.string()
		}
		return ""
	}, true
}

func str[T any](dst func(*T) *string) binder[T] {
	return func(w *avroNode, path string) (recordFn[T], error) {
		read, ok := optString(w)
		if !ok {
			var err error
			if read, err = scalar(w, path, directString); err != nil {
				return nil, err
			}
		}
		return func(r *reader, t *T) { *dst(t) = read(r) }, nil
	}
}

func field[T, V any](direct func(*avroNode) (valueFn[V], bool), dst func(*T) *V) binder[T] {
	return func(w *avroNode, path string) (recordFn[T], error) {
		read, err := scalar(w, path, direct)
		if err != nil {
			return nil, err
		}
		return func(r *reader, t *T) { *dst(t) = read(r) }, nil
	}
}

// compileRecord matches writer fields to the binders by name; fields
// without a binder are skipped.
func compileRecord[T any](w *avroNode, path, name string, binders map[string]binder[T]) (recordFn[T], error) {
	if w.kind != kRecord || w.shortName() != name {
		return nil, &DecodeError{Code: CodeWrongType, Field: path, Err: fmt.Errorf("writer type %s, want record %s", w.typeName(), name)}
	}
	steps := make([]recordFn[T], len(w.fields))
	memo := map[*avroNode]*skipFn{}
	for i, f := range w.fields {
		if b, ok := binders[f.name]; ok {
			step, err := b(f.typ, join(path, f.name))
			if err != nil {
				return nil, err
			}
			steps[i] = step
			continue
		}
		skip := compileSkip(f.typ, memo)
		steps[i] = func(r *reader, _ *T) { skip(r) }
	}
	return func(r *reader, t *T) {
		for _, s := range steps {
			if s(r, t); r.err != nil {
				return
			}
		}
	}, nil
}

// optRecord reads a record that may sit in a union with null; next returns
// the decoder to run, or nil when the value is null.
type optRecord[T any] struct {
	union    bool
	branches []recordFn[T] // nil entries are null
}

func compileOptRecord[T any](w *avroNode, path, name string, binders map[string]binder[T]) (*optRecord[T], error) {
	if w.kind != kUnion {
		f, err := compileRecord(w, path, name, binders)
		if err != nil {
			return nil, err
		}
		return &optRecord[T]{branches: []recordFn[T]{f}}, nil
	}
	o := &optRecord[T]{union: true, branches: make([]recordFn[T], len(w.branches))}
	for i, b := range w.branches {
		if b.kind == kNull {
			continue
		}
		f, err := compileRecord(b, path, name, binders)
		if err != nil {
			typ := b.typeName()
			f = func(r *reader, _ *T) {
				r.failField(CodeWrongType, path, fmt.Errorf("%w: writer type %s", errNullBytes, typ))
			}
		}
		o.branches[i] = f
	}
	return o, nil
}

func (o *optRecord[T]) next(r *reader) recordFn[T] {
	if !o.union {
		return o.branches[0]
	}
	if i := r.index(len(o.branches), errUnionIdx); i >= 0 {
		return o.branches[i]
	}
	return nil
}

func subRecord[T, S any](name string, binders func() map[string]binder[S], dst func(*T) *S) binder[T] {
	return func(w *avroNode, path string) (recordFn[T], error) {
		o, err := compileOptRecord(w, path, name, binders())
		if err != nil {
			return nil, err
		}
		return func(r *reader, t *T) {
			if f := o.next(r); f != nil {
				f(r, dst(t))
			}
		}, nil
	}
}

// ---- the Event's fields ----

func contextBinders() map[string]binder[Context] {
	return map[string]binder[Context]{
		"ip":         str(func(c *Context) *string { return &c.IP }),
		"user_agent": str(func(c *Context) *string { return &c.UserAgent }),
		"locale":     str(func(c *Context) *string { return &c.Locale }),
		"page": subRecord("Page", func() map[string]binder[PageContext] {
			return map[string]binder[PageContext]{
				"url":      str(func(p *PageContext) *string { return &p.URL }),
				"path":     str(func(p *PageContext) *string { return &p.Path }),
				"referrer": str(func(p *PageContext) *string { return &p.Referrer }),
				"title":    str(func(p *PageContext) *string { return &p.Title }),
			}
		}, func(c *Context) *PageContext { return &c.Page }),
		"campaign": subRecord("Campaign", func() map[string]binder[Campaign] {
			return map[string]binder[Campaign]{
				"source":  str(func(p *Campaign) *string { return &p.Source }),
				"medium":  str(func(p *Campaign) *string { return &p.Medium }),
				"name":    str(func(p *Campaign) *string { return &p.Name }),
				"term":    str(func(p *Campaign) *string { return &p.Term }),
				"content": str(func(p *Campaign) *string { return &p.Content }),
			}
		}, func(c *Context) *Campaign { return &c.Campaign }),
		"device": subRecord("Device", func() map[string]binder[Device] {
			return map[string]binder[Device]{
				"id":   str(func(p *Device) *string { return &p.ID }),
				"type": str(func(p *Device) *string { return &p.Type }),
			}
		}, func(c *Context) *Device { return &c.Device }),
		"app": subRecord("App", func() map[string]binder[App] {
			return map[string]binder[App]{
				"name":    str(func(p *App) *string { return &p.Name }),
				"version": str(func(p *App) *string { return &p.Version }),
				"build":   str(func(p *App) *string { return &p.Build }),
			}
		}, func(c *Context) *App { return &c.App }),
		"library": subRecord("Library", func() map[string]binder[Library] {
			return map[string]binder[Library]{
				"name":    str(func(p *Library) *string { return &p.Name }),
				"version": str(func(p *Library) *string { return &p.Version }),
			}
		}, func(c *Context) *Library { return &c.Library }),
		"traits": field(directJSONMap, func(c *Context) *map[string]json.RawMessage { return &c.Traits }),
		"extra":  field(directJSONMap, func(c *Context) *map[string]json.RawMessage { return &c.Extra }),
	}
}

func productBinders() map[string]binder[Product] {
	return map[string]binder[Product]{
		"product_id": str(func(p *Product) *string { return &p.ProductID }),
		"sku":        str(func(p *Product) *string { return &p.SKU }),
		"category":   str(func(p *Product) *string { return &p.Category }),
		"name":       str(func(p *Product) *string { return &p.Name }),
		"brand":      str(func(p *Product) *string { return &p.Brand }),
		"variant":    str(func(p *Product) *string { return &p.Variant }),
		"price":      field(directF64, func(p *Product) **float64 { return &p.Price }),
		"quantity":   field(directI64, func(p *Product) **int64 { return &p.Quantity }),
		"extra":      field(directJSONMap, func(p *Product) *map[string]json.RawMessage { return &p.Extra }),
	}
}

// products compiles commerce.products: an array (maybe in a union with
// null) of Product records (maybe in unions with null, which are dropped).
func products(w *avroNode, path string) (recordFn[Commerce], error) {
	compileArray := func(a *avroNode) (recordFn[Commerce], error) {
		if a.kind != kArray {
			return nil, &DecodeError{Code: CodeWrongType, Field: path, Err: fmt.Errorf("writer type %s, want array", a.typeName())}
		}
		item, err := compileOptRecord(a.items, path+"[]", "Product", productBinders())
		if err != nil {
			return nil, err
		}
		size := minSize(a.items, map[*avroNode]bool{})
		return func(r *reader, c *Commerce) {
			for r.err == nil {
				n := r.blockCount(size)
				if n == 0 {
					break
				}
				if c.Products == nil {
					c.Products = make([]Product, 0, n)
				}
				for ; n > 0 && r.err == nil; n-- {
					if f := item.next(r); f != nil {
						c.Products = append(c.Products, Product{})
						f(r, &c.Products[len(c.Products)-1])
					}
				}
			}
			if len(c.Products) == 0 {
				c.Products = nil
			}
		}, nil
	}
	if w.kind != kUnion {
		return compileArray(w)
	}
	branches := make([]recordFn[Commerce], len(w.branches))
	for i, b := range w.branches {
		if b.kind == kNull {
			branches[i] = func(*reader, *Commerce) {}
			continue
		}
		f, err := compileArray(b)
		if err != nil {
			typ := b.typeName()
			f = func(r *reader, _ *Commerce) {
				r.failField(CodeWrongType, path, fmt.Errorf("%w: writer type %s", errNullBytes, typ))
			}
		}
		branches[i] = f
	}
	return func(r *reader, c *Commerce) {
		if i := r.index(len(branches), errUnionIdx); i >= 0 {
			branches[i](r, c)
		}
	}, nil
}

func commerceBinders() map[string]binder[Commerce] {
	f64 := func(dst func(*Commerce) **float64) binder[Commerce] { return field(directF64, dst) }
	return map[string]binder[Commerce]{
		"product_id":  str(func(c *Commerce) *string { return &c.ProductID }),
		"sku":         str(func(c *Commerce) *string { return &c.SKU }),
		"category":    str(func(c *Commerce) *string { return &c.Category }),
		"name":        str(func(c *Commerce) *string { return &c.Name }),
		"brand":       str(func(c *Commerce) *string { return &c.Brand }),
		"variant":     str(func(c *Commerce) *string { return &c.Variant }),
		"price":       f64(func(c *Commerce) **float64 { return &c.Price }),
		"quantity":    field(directI64, func(c *Commerce) **int64 { return &c.Quantity }),
		"currency":    str(func(c *Commerce) *string { return &c.Currency }),
		"order_id":    str(func(c *Commerce) *string { return &c.OrderID }),
		"cart_id":     str(func(c *Commerce) *string { return &c.CartID }),
		"checkout_id": str(func(c *Commerce) *string { return &c.CheckoutID }),
		"revenue":     f64(func(c *Commerce) **float64 { return &c.Revenue }),
		"total":       f64(func(c *Commerce) **float64 { return &c.Total }),
		"shipping":    f64(func(c *Commerce) **float64 { return &c.Shipping }),
		"tax":         f64(func(c *Commerce) **float64 { return &c.Tax }),
		"discount":    f64(func(c *Commerce) **float64 { return &c.Discount }),
		"coupon":      str(func(c *Commerce) *string { return &c.Coupon }),
		"products":    products,
	}
}

func eventBinders() map[string]binder[Event] {
	ts := func(dst func(*Event) *time.Time) binder[Event] { return field(directTime, dst) }
	return map[string]binder[Event]{
		"message_id":         str(func(e *Event) *string { return &e.MessageID }),
		"type":               field(directCallType, func(e *Event) *CallType { return &e.Type }),
		"event":              str(func(e *Event) *string { return &e.Event }),
		"user_id":            str(func(e *Event) *string { return &e.UserID }),
		"anonymous_id":       str(func(e *Event) *string { return &e.AnonymousID }),
		"original_timestamp": ts(func(e *Event) *time.Time { return &e.OriginalTimestamp }),
		"sent_at":            ts(func(e *Event) *time.Time { return &e.SentAt }),
		"received_at":        ts(func(e *Event) *time.Time { return &e.ReceivedAt }),
		"context":            subRecord("Context", contextBinders, func(e *Event) *Context { return &e.Context }),
		"traits":             field(directJSONMap, func(e *Event) *map[string]json.RawMessage { return &e.Traits }),
		"properties":         field(directJSONMap, func(e *Event) *map[string]json.RawMessage { return &e.Properties }),
		"commerce": func(w *avroNode, path string) (recordFn[Event], error) {
			o, err := compileOptRecord(w, path, "Commerce", commerceBinders())
			if err != nil {
				return nil, err
			}
			return func(r *reader, e *Event) {
				if f := o.next(r); f != nil {
					c := new(Commerce)
					f(r, c)
					e.Commerce = c
				}
			}, nil
		},
		"name":        str(func(e *Event) *string { return &e.Name }),
		"group_id":    str(func(e *Event) *string { return &e.GroupID }),
		"previous_id": str(func(e *Event) *string { return &e.PreviousID }),
	}
}

// eventDecoder decodes Avro written with one writer schema into Events.
type eventDecoder struct {
	dec recordFn[Event]
}

func compileEventDecoder(w *avroNode) (*eventDecoder, error) {
	if w.kind != kRecord || w.shortName() != "Event" {
		return nil, &DecodeError{Code: CodeWrongSchema, Err: fmt.Errorf("writer schema is %s, want record %s.Event", w.typeName(), Namespace)}
	}
	dec, err := compileRecord(w, "", "Event", eventBinders())
	if err != nil {
		return nil, err
	}
	return &eventDecoder{dec: dec}, nil
}

// decode reads one Avro body (no framing) into ev, which it resets first.
func (d *eventDecoder) decode(body []byte, ev *Event) *DecodeError {
	*ev = Event{}
	r := newReader(body)
	d.dec(&r, ev)
	if r.err == nil && r.pos != len(body) {
		r.fail(CodeBadAvro, fmt.Errorf("%w: %d", errTrailing, len(body)-r.pos))
	}
	if r.err != nil {
		*ev = Event{}
	}
	return r.err
}
