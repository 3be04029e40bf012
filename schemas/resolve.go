package schemas

import (
	"fmt"
	"slices"
	"time"

	"github.com/linkedin/goavro/v2"
)

// resolveNative turns a goavro native value decoded with the writer schema
// into the shape of the reader schema, following the Avro resolution rules:
// record fields matched by name (or reader alias), reader fields the writer
// lacks take their default, writer fields the reader lacks are dropped,
// numeric promotions applied. The result is in goavro native form for the
// reader schema (it encodes with a reader codec).
func resolveNative(r, w *avroNode, v any, path string) (any, error) {
	if w.kind == kUnion {
		if v == nil {
			return resolveNull(r, path)
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, fmt.Errorf("%s: union value %T is not goavro's {type: value} form", path, v)
		}
		for name, inner := range m {
			i := slices.IndexFunc(w.branches, func(b *avroNode) bool { return b.typeName() == name })
			if i < 0 {
				return nil, fmt.Errorf("%s: writer union has no type %s", path, name)
			}
			return resolveNative(r, w.branches[i], inner, path)
		}
	}
	if r.kind == kUnion {
		if w.kind == kNull {
			return resolveNull(r, path)
		}
		for _, rb := range r.branches {
			if readable(rb, w) {
				out, err := resolveNative(rb, w, v, path)
				if err != nil {
					return nil, err
				}
				return goavro.Union(rb.typeName(), out), nil
			}
		}
		return nil, fmt.Errorf("%s: writer type %s is not in the reader's union", path, w.typeName())
	}
	if !promotable(r.kind, w.kind) {
		return nil, fmt.Errorf("%s: writer type %s cannot be read as %s", path, w.typeName(), r.typeName())
	}
	switch r.kind {
	case kRecord:
		in, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: record value is %T", path, v)
		}
		out := make(map[string]any, len(r.fields))
		for _, rf := range r.fields {
			if wf, ok := w.field(rf.name, rf.aliases); ok {
				val, err := resolveNative(rf.typ, wf.typ, in[wf.name], join(path, rf.name))
				if err != nil {
					return nil, err
				}
				out[rf.name] = val
				continue
			}
			if !rf.hasDefault {
				return nil, fmt.Errorf("%s: reader field has no default and the writer does not have it", join(path, rf.name))
			}
			val, err := defaultNative(rf.typ, rf.def, join(path, rf.name))
			if err != nil {
				return nil, err
			}
			out[rf.name] = val
		}
		return out, nil
	case kEnum:
		s, _ := v.(string)
		if slices.Contains(r.symbols, s) {
			return s, nil
		}
		if r.enumDef != "" {
			return r.enumDef, nil
		}
		return nil, fmt.Errorf("%s: enum symbol %q unknown to the reader", path, s)
	case kArray:
		in, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: array value is %T", path, v)
		}
		out := make([]any, len(in))
		for i, it := range in {
			val, err := resolveNative(r.items, w.items, it, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = val
		}
		return out, nil
	case kMap:
		in, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: map value is %T", path, v)
		}
		out := make(map[string]any, len(in))
		for k, it := range in {
			val, err := resolveNative(r.values, w.values, it, path+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = val
		}
		return out, nil
	}
	return promote(r.kind, v), nil
}

func resolveNull(r *avroNode, path string) (any, error) {
	if r.kind == kNull || (r.kind == kUnion && slices.ContainsFunc(r.branches, func(b *avroNode) bool { return b.kind == kNull })) {
		return nil, nil
	}
	return nil, fmt.Errorf("%s: writer value is null and the reader does not allow null", path)
}

// promote converts a primitive native value to the reader's kind.
func promote(k avroKind, v any) any {
	switch k {
	case kLong:
		if i, ok := v.(int32); ok {
			return int64(i)
		}
	case kFloat:
		switch t := v.(type) {
		case int32:
			return float32(t)
		case int64:
			return float32(t)
		}
	case kDouble:
		switch t := v.(type) {
		case int32:
			return float64(t)
		case int64:
			return float64(t)
		case float32:
			return float64(t)
		}
	case kString:
		if b, ok := v.([]byte); ok {
			return string(b)
		}
	case kBytes:
		if s, ok := v.(string); ok {
			return []byte(s)
		}
	}
	return v
}

// defaultNative converts a field default (decoded JSON) to native form.
func defaultNative(n *avroNode, def any, path string) (any, error) {
	switch n.kind {
	case kNull:
		return nil, nil
	case kUnion:
		// A union's default is a value of its first branch.
		first := n.branches[0]
		v, err := defaultNative(first, def, path)
		if err != nil || first.kind == kNull {
			return nil, err
		}
		return goavro.Union(first.typeName(), v), nil
	case kBoolean:
		b, ok := def.(bool)
		if !ok {
			return nil, fmt.Errorf("%s: default %v is not a boolean", path, def)
		}
		return b, nil
	case kInt, kLong, kFloat, kDouble:
		f, ok := def.(float64)
		if !ok {
			return nil, fmt.Errorf("%s: default %v is not a number", path, def)
		}
		switch {
		case n.kind == kLong && n.logical == "timestamp-millis":
			return time.UnixMilli(int64(f)).UTC(), nil
		case n.kind == kInt:
			return int32(f), nil
		case n.kind == kLong:
			return int64(f), nil
		case n.kind == kFloat:
			return float32(f), nil
		}
		return f, nil
	case kString, kEnum:
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("%s: default %v is not a string", path, def)
		}
		return s, nil
	case kBytes, kFixed:
		s, ok := def.(string)
		if !ok {
			return nil, fmt.Errorf("%s: default %v is not a string", path, def)
		}
		return []byte(s), nil
	case kArray:
		in, ok := def.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: default %v is not an array", path, def)
		}
		out := make([]any, len(in))
		for i, it := range in {
			v, err := defaultNative(n.items, it, path)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case kMap, kRecord:
		in, ok := def.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: default %v is not an object", path, def)
		}
		out := make(map[string]any, len(in))
		if n.kind == kMap {
			for k, it := range in {
				v, err := defaultNative(n.values, it, path)
				if err != nil {
					return nil, err
				}
				out[k] = v
			}
			return out, nil
		}
		for _, f := range n.fields {
			d, has := in[f.name]
			if !has {
				d, has = f.def, f.hasDefault
			}
			if !has {
				return nil, fmt.Errorf("%s.%s: no default", path, f.name)
			}
			v, err := defaultNative(f.typ, d, path+"."+f.name)
			if err != nil {
				return nil, err
			}
			out[f.name] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: unsupported default for %s", path, n.typeName())
}
