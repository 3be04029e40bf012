package topology

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// position is a 1-based line and column in the YAML file.
type position struct{ line, col int }

// decoder turns a yaml.Node tree into the topology structs. It exists instead
// of yaml.v3's KnownFields mode because those errors carry a line but no
// column, and decoded structs do not remember where each value came from;
// validation needs the position of every value (pos, keyed by path such as
// "topics[2].partitions") to point at the offending line and column.
type decoder struct {
	file     string
	pos      map[string]position
	bad      map[string]bool // paths whose value could not be decoded
	problems []Problem
	syntax   bool // the file is not a YAML mapping; nothing else to check
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// fail records a problem with the value at path, located at n.
func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.bad[path] = true
	d.problems = append(d.problems, Problem{File: d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// yamlSyntax matches yaml.v3's "yaml: line N: message" errors.
var yamlSyntax = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) decodeDocument(data []byte, out any) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p := Problem{File: d.file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlSyntax.FindStringSubmatch(err.Error()); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
			// yaml.v3 reports parser errors (all "did not find expected
			// ...") with a 0-based line, scanner errors with a 1-based one.
			if strings.HasPrefix(p.Msg, "did not find expected") {
				p.Line++
			}
		}
		p.Msg = "invalid YAML: " + p.Msg
		d.problems = append(d.problems, p)
		d.syntax = true
		return
	}
	if len(doc.Content) == 0 {
		d.problems = append(d.problems, Problem{File: d.file, Line: 1, Col: 1,
			Msg: "file is empty: want a mapping with version, topics and processors"})
		d.syntax = true
		return
	}
	if root := doc.Content[0]; root.Kind != yaml.MappingNode {
		d.fail("", root, "want a mapping with version, topics and processors at the top, got %s", kindOf(root))
		d.syntax = true
		return
	}
	d.decode(doc.Content[0], "", reflect.ValueOf(out).Elem())
}

// decode fills v from n, recording the position of n under path and a
// problem for anything that does not fit v's type.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.pos[path] = position{n.Line, n.Column}
	// A type with its own UnmarshalYAML (a future section may need one)
	// decodes itself.
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(path, n, "%s: %v", keyOf(path), err)
		}
		return
	}
	null := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	switch v.Kind() {
	case reflect.Pointer:
		if null {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, path, v.Elem())
	case reflect.Struct:
		if null {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "%s: want a mapping of keys, got %s", keyOf(path), kindOf(n))
			return
		}
		fields, names := yamlFields(v.Type())
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if line, dup := seen[k.Value]; dup {
				d.fail(joinKey(path, k.Value), k, "duplicate key %q (first on line %d)", k.Value, line)
				continue
			}
			seen[k.Value] = k.Line
			idx, ok := fields[k.Value]
			if !ok {
				d.fail(joinKey(path, k.Value), k, "unknown key %q in %s%s (known keys: %s)",
					k.Value, where(path), suggest(k.Value, names), strings.Join(names, ", "))
				continue
			}
			d.decode(val, joinKey(path, k.Value), v.Field(idx))
		}
	case reflect.Slice:
		if null {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "%s: want a list, got %s", keyOf(path), kindOf(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, path+"["+strconv.Itoa(i)+"]", s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if null {
			return
		}
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			d.fail(path, n, "%s: want a mapping, got %s", keyOf(path), kindOf(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if line, dup := seen[k.Value]; dup {
				d.fail(path+"["+k.Value+"]", k, "duplicate key %q (first on line %d)", k.Value, line)
				continue
			}
			seen[k.Value] = k.Line
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, path+"["+k.Value+"]", elem)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "%s: want %s, got %s", keyOf(path), scalarName(v.Kind()), kindOf(n))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(path, n, "%s: %q is not %s", keyOf(path), n.Value, scalarName(v.Kind()))
		}
	}
}

// yamlFields maps the YAML keys of struct type t to field indexes, following
// yaml.v3's rules (tag name, else the lowercased field name; "-" skips), and
// returns the sorted key names for messages.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	fields := map[string]int{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
		names = append(names, name)
	}
	slices.Sort(names)
	return fields, names
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// keyOf returns the last key of path, for messages: "partitions" for
// "topics[2].partitions", "inputs[1]" for "processors[0].inputs[1]".
func keyOf(path string) string {
	if path == "" {
		return "document"
	}
	depth := 0
	for i := len(path) - 1; i >= 0; i-- {
		switch path[i] {
		case ']':
			depth++
		case '[':
			depth--
		case '.':
			if depth == 0 {
				return path[i+1:]
			}
		}
	}
	return path
}

// parentOf returns the path one level up: "topics[2]" for
// "topics[2].partitions", "topics" for "topics[2]", "" at the top.
func parentOf(path string) string {
	depth := 0
	for i := len(path) - 1; i >= 0; i-- {
		switch path[i] {
		case ']':
			depth++
		case '[':
			depth--
			if depth == 0 {
				return path[:i]
			}
		case '.':
			if depth == 0 {
				return path[:i]
			}
		}
	}
	return ""
}

func where(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func scalarName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + k.String()
}

// suggest returns `; did you mean "x"?` for the known name closest to s, when
// one is close enough to be a likely typo.
func suggest(s string, names []string) string {
	best, bestDist := "", len(s)/3+1 // up to a third of s may be wrong
	for _, n := range names {
		if dist := editDistance(s, n); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
