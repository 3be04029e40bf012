package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
)

// This file parses Avro schema JSON into a tree that the compatibility
// check, the native resolver and the compiled Event decoder walk. goavro
// validates schemas and encodes, but it does not expose its parsed form.

type avroKind uint8

const (
	kNull avroKind = iota
	kBoolean
	kInt
	kLong
	kFloat
	kDouble
	kBytes
	kString
	kRecord
	kEnum
	kArray
	kMap
	kUnion
	kFixed
)

var kindNames = [...]string{"null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "enum", "array", "map", "union", "fixed"}

func (k avroKind) String() string { return kindNames[k] }

type avroNode struct {
	kind     avroKind
	name     string // full name of a named type
	aliases  []string
	logical  string
	fields   []avroField
	symbols  []string
	enumDef  string // enum default symbol, "" when none
	items    *avroNode
	values   *avroNode
	branches []*avroNode
	size     int
}

type avroField struct {
	name       string
	aliases    []string
	typ        *avroNode
	hasDefault bool
	def        any // default as decoded JSON
}

// shortName is the unqualified name used to match named types.
func (n *avroNode) shortName() string {
	if i := strings.LastIndexByte(n.name, '.'); i >= 0 {
		return n.name[i+1:]
	}
	return n.name
}

// typeName is how a type is shown in messages and how goavro names union
// members (full name for named types, "long.timestamp-millis" for logical).
func (n *avroNode) typeName() string {
	switch n.kind {
	case kRecord, kEnum, kFixed:
		return n.name
	}
	if goavroLogical[n.kind.String()+"."+n.logical] {
		return n.kind.String() + "." + n.logical
	}
	return n.kind.String()
}

// goavroLogical are the logical types goavro gives their own union member
// names; it treats others as their underlying type.
var goavroLogical = map[string]bool{
	"long.timestamp-millis": true, "long.timestamp-micros": true, "int.time-millis": true,
	"long.time-micros": true, "int.date": true, "bytes.decimal": true, "string.validated-string": true,
}

// parseAvroSchema parses a schema text into its tree.
func parseAvroSchema(text string) (*avroNode, error) {
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return nil, fmt.Errorf("parsing Avro schema JSON: %w", err)
	}
	p := &schemaParser{named: map[string]*avroNode{}}
	return p.parse(v, "")
}

type schemaParser struct {
	named map[string]*avroNode
}

func fullName(name, namespace string) string {
	if strings.Contains(name, ".") || namespace == "" {
		return name
	}
	return namespace + "." + name
}

func (p *schemaParser) primitive(s string) (*avroNode, bool) {
	for k := kNull; k <= kString; k++ {
		if kindNames[k] == s {
			return &avroNode{kind: k}, true
		}
	}
	return nil, false
}

func (p *schemaParser) parse(v any, ns string) (*avroNode, error) {
	switch t := v.(type) {
	case string:
		if n, ok := p.primitive(t); ok {
			return n, nil
		}
		if n := p.named[fullName(t, ns)]; n != nil {
			return n, nil
		}
		if n := p.named[t]; n != nil {
			return n, nil
		}
		return nil, fmt.Errorf("unknown type %q", t)
	case []any:
		u := &avroNode{kind: kUnion}
		for i, b := range t {
			bn, err := p.parse(b, ns)
			if err != nil {
				return nil, fmt.Errorf("union branch %d: %w", i, err)
			}
			u.branches = append(u.branches, bn)
		}
		return u, nil
	case map[string]any:
		return p.parseObject(t, ns)
	}
	return nil, fmt.Errorf("unexpected schema element %T", v)
}

func (p *schemaParser) parseObject(m map[string]any, ns string) (*avroNode, error) {
	typ, ok := m["type"].(string)
	if !ok {
		// {"type": {...}} or {"type": [...]} wraps another schema.
		if inner, has := m["type"]; has {
			return p.parse(inner, ns)
		}
		return nil, fmt.Errorf("schema object without type")
	}
	logical, _ := m["logicalType"].(string)
	if n, ok := p.primitive(typ); ok {
		n.logical = logical
		return n, nil
	}
	named := func(k avroKind) (*avroNode, string, error) {
		name, _ := m["name"].(string)
		if name == "" {
			return nil, "", fmt.Errorf("%s without name", typ)
		}
		space, _ := m["namespace"].(string)
		if space == "" {
			space = ns
		}
		full := fullName(name, space)
		if _, dup := p.named[full]; dup {
			return nil, "", fmt.Errorf("type %q defined twice", full)
		}
		n := &avroNode{kind: k, name: full, logical: logical}
		if as, ok := m["aliases"].([]any); ok {
			for _, a := range as {
				if s, ok := a.(string); ok {
					n.aliases = append(n.aliases, fullName(s, space))
				}
			}
		}
		p.named[full] = n
		enclosing := space
		if i := strings.LastIndexByte(full, '.'); i >= 0 {
			enclosing = full[:i]
		}
		return n, enclosing, nil
	}
	switch typ {
	case "record", "error":
		n, inner, err := named(kRecord)
		if err != nil {
			return nil, err
		}
		fs, _ := m["fields"].([]any)
		for i, f := range fs {
			fm, ok := f.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %s field %d is not an object", n.name, i)
			}
			fname, _ := fm["name"].(string)
			ft, err := p.parse(fm["type"], inner)
			if err != nil {
				return nil, fmt.Errorf("record %s field %s: %w", n.name, fname, err)
			}
			af := avroField{name: fname, typ: ft}
			af.def, af.hasDefault = fm["default"]
			if as, ok := fm["aliases"].([]any); ok {
				for _, a := range as {
					if s, ok := a.(string); ok {
						af.aliases = append(af.aliases, s)
					}
				}
			}
			n.fields = append(n.fields, af)
		}
		return n, nil
	case "enum":
		n, _, err := named(kEnum)
		if err != nil {
			return nil, err
		}
		syms, _ := m["symbols"].([]any)
		for _, s := range syms {
			str, _ := s.(string)
			n.symbols = append(n.symbols, str)
		}
		n.enumDef, _ = m["default"].(string)
		return n, nil
	case "fixed":
		n, _, err := named(kFixed)
		if err != nil {
			return nil, err
		}
		size, _ := m["size"].(float64)
		n.size = int(size)
		return n, nil
	case "array":
		items, err := p.parse(m["items"], ns)
		if err != nil {
			return nil, fmt.Errorf("array items: %w", err)
		}
		return &avroNode{kind: kArray, items: items, logical: logical}, nil
	case "map":
		values, err := p.parse(m["values"], ns)
		if err != nil {
			return nil, fmt.Errorf("map values: %w", err)
		}
		return &avroNode{kind: kMap, values: values, logical: logical}, nil
	}
	// A named type referenced in the long form {"type": "io.x.Foo"}.
	return p.parse(typ, ns)
}

// field returns the record field with the given name, or one whose alias is
// name.
func (n *avroNode) field(name string, aliases []string) (*avroField, bool) {
	for i := range n.fields {
		if n.fields[i].name == name {
			return &n.fields[i], true
		}
	}
	for _, a := range aliases {
		for i := range n.fields {
			if n.fields[i].name == a {
				return &n.fields[i], true
			}
		}
	}
	return nil, false
}

// namesMatch reports whether a reader named type can read a writer named
// type: same unqualified name, or the reader lists the writer's name as an
// alias.
func namesMatch(reader, writer *avroNode) bool {
	if reader.shortName() == writer.shortName() || reader.name == writer.name {
		return true
	}
	for _, a := range reader.aliases {
		if a == writer.name {
			return true
		}
	}
	return false
}
