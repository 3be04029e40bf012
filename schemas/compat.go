package schemas

import (
	"fmt"
	"slices"
)

// CheckBackward reports why data written with writerSchema (an older
// version) could not be read with readerSchema (the newer one) under the Avro
// schema-resolution rules, i.e. why readerSchema is not BACKWARD compatible.
// It returns nil when it is compatible, else one line per problem naming the
// field.
//
// StreamCDP runs it before registering so that incompatible schemas fail with
// a clear message even against registries that do not check (srfake).
func CheckBackward(readerSchema, writerSchema string) ([]string, error) {
	r, err := parseAvroSchema(readerSchema)
	if err != nil {
		return nil, fmt.Errorf("reader schema: %w", err)
	}
	w, err := parseAvroSchema(writerSchema)
	if err != nil {
		return nil, fmt.Errorf("writer schema: %w", err)
	}
	c := compatChecker{seen: map[[2]*avroNode]bool{}}
	c.check(r, w, "")
	return c.problems, nil
}

type compatChecker struct {
	seen     map[[2]*avroNode]bool
	problems []string
}

func (c *compatChecker) fail(path, format string, args ...any) {
	where := path
	if where == "" {
		where = "(top level)"
	}
	c.problems = append(c.problems, fmt.Sprintf("%s: "+format, append([]any{where}, args...)...))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// promotable reports the primitive promotions of the Avro spec.
func promotable(reader, writer avroKind) bool {
	if reader == writer {
		return true
	}
	switch writer {
	case kInt:
		return reader == kLong || reader == kFloat || reader == kDouble
	case kLong:
		return reader == kFloat || reader == kDouble
	case kFloat:
		return reader == kDouble
	case kString:
		return reader == kBytes
	case kBytes:
		return reader == kString
	}
	return false
}

// readable reports, without recording problems, whether r can read w.
func readable(r, w *avroNode) bool {
	c := compatChecker{seen: map[[2]*avroNode]bool{}}
	c.check(r, w, "")
	return len(c.problems) == 0
}

func (c *compatChecker) check(r, w *avroNode, path string) {
	key := [2]*avroNode{r, w}
	if c.seen[key] {
		return // recursive type already being checked
	}
	c.seen[key] = true

	if w.kind == kUnion {
		// Every branch the writer may have used must be readable.
		for _, wb := range w.branches {
			if r.kind == kUnion {
				if !slices.ContainsFunc(r.branches, func(rb *avroNode) bool { return readable(rb, wb) }) {
					c.fail(path, "writer union type %s has no matching type in the reader's union", wb.typeName())
				}
				continue
			}
			c.check(r, wb, path)
		}
		return
	}
	if r.kind == kUnion {
		if !slices.ContainsFunc(r.branches, func(rb *avroNode) bool { return readable(rb, w) }) {
			c.fail(path, "writer type %s is not in the reader's union", w.typeName())
		}
		return
	}
	if !promotable(r.kind, w.kind) {
		c.fail(path, "writer type %s cannot be read as %s", w.typeName(), r.typeName())
		return
	}
	switch r.kind {
	case kRecord:
		if !namesMatch(r, w) {
			c.fail(path, "record name %s does not match writer's %s", r.name, w.name)
			return
		}
		for _, rf := range r.fields {
			wf, ok := w.field(rf.name, rf.aliases)
			if !ok {
				if !rf.hasDefault {
					c.fail(join(path, rf.name), "new field has no default, so old data cannot be read")
				}
				continue
			}
			c.check(rf.typ, wf.typ, join(path, rf.name))
		}
	case kEnum:
		if !namesMatch(r, w) {
			c.fail(path, "enum name %s does not match writer's %s", r.name, w.name)
			return
		}
		if r.enumDef != "" {
			return
		}
		for _, s := range w.symbols {
			if !slices.Contains(r.symbols, s) {
				c.fail(path, "enum symbol %q was removed", s)
			}
		}
	case kFixed:
		if !namesMatch(r, w) || r.size != w.size {
			c.fail(path, "fixed %s(%d) does not match writer's %s(%d)", r.name, r.size, w.name, w.size)
		}
	case kArray:
		c.check(r.items, w.items, path+"[]")
	case kMap:
		c.check(r.values, w.values, path+"{}")
	}
}
