// Package rules compiles the `segments:` section of the topology: each
// segment's condition, an expr-lang expression over the profile's features
// (by name), its traits (traits.NAME) and the section's params
// (params.NAME), type-checked against the feature definitions when the
// topology loads, so a misspelt feature is an error at its line.
//
// Conditions have no clock of their own: time enters through windowed
// features ("orders_90d == 0" becomes true when the last order leaves the
// window, at that moment, because the features processor emits the fall as
// a change). A condition such as "cart added in the last day and no order
// since" is
//
//	cart_adds_24h > 0 && (last_order_at == nil || last_order_at < last_cart_add_at)
//
// Features that may have no value (avg, min, max, first, last, first_seen,
// last_seen, top) are nil then; compare them with nil first. A condition
// that fails at run time (nil compared with a number) counts as false.
package rules

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	fdef "github.com/streamcdp/streamcdp/processors/features/definition"
)

// Spec is the `segments:` section of the topology.
type Spec struct {
	// Params are named numbers conditions may use (params.NAME), so that a
	// threshold is changed in one place.
	Params map[string]float64 `yaml:"params"`
	// AudienceEvents also emits every change as a Segment-style
	// "Audience Entered"/"Audience Exited" track event on the
	// segments.audiences topic.
	AudienceEvents bool `yaml:"audience_events"`
	// BackfillRate bounds how many profiles per second each partition's
	// task evaluates in a backfill, after the definitions changed or on the
	// first start (default 2000).
	BackfillRate int `yaml:"backfill_rate"`
	// Definitions are the segments.
	Definitions []SegmentSpec `yaml:"definitions"`
}

// SegmentSpec is one segment as written in the topology.
type SegmentSpec struct {
	// Name identifies the segment: lower-case letters, digits and
	// underscores.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Condition is an expr-lang boolean expression (see the package doc).
	Condition string `yaml:"condition"`
	// Topic is an optional topic of the topology (logical name) that gets
	// this segment's changes too.
	Topic string `yaml:"topic"`
	// Activation lists traits to copy into each change (user_id, email,
	// ...), for services that act on it without a profile lookup.
	Activation []string `yaml:"activation"`
}

// Segment is a compiled segment.
type Segment struct {
	Name       string
	Condition  string
	Topic      string
	Activation []string
	// Features and Traits are the names the condition reads: the values
	// that decide it.
	Features []string
	Traits   []string
	// ID fingerprints the condition: a segment whose ID changed is
	// re-evaluated over every profile.
	ID   uint32
	prog *vm.Program
}

// Set is a compiled `segments:` section.
type Set struct {
	Segments []*Segment
	Params   map[string]float64
	// Features and Traits are the union of what the conditions read (and
	// the activation traits).
	Features []string
	Traits   []string
	// ID fingerprints all the definitions.
	ID             uint32
	AudienceEvents bool
	BackfillRate   int
	byName         map[string]*Segment
	// readers lists, per feature name and per "traits.NAME", the segments
	// (by index) whose condition reads it.
	readers map[string][]int
}

// Readers returns the indexes of the segments whose condition reads the
// named feature (or "traits.NAME").
func (s *Set) Readers(name string) []int { return s.readers[name] }

// Segment returns the named segment, or nil.
func (s *Set) Segment(name string) *Segment { return s.byName[name] }

// Error is a problem with the spec at Path (relative to `segments:`).
type Error struct {
	Path, Msg string
}

func (e Error) Error() string { return e.Path + ": " + e.Msg }

// Errors lists every problem found.
type Errors []Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// DefaultBackfillRate is profiles per second per partition.
const DefaultBackfillRate = 2000

// Compile checks and compiles spec against the feature definitions.
func Compile(spec Spec, features *fdef.Set) (*Set, error) {
	var errs Errors
	fail := func(path, format string, args ...any) {
		errs = append(errs, Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	set := &Set{Params: spec.Params, AudienceEvents: spec.AudienceEvents, BackfillRate: spec.BackfillRate, byName: map[string]*Segment{}}
	if set.BackfillRate == 0 {
		set.BackfillRate = DefaultBackfillRate
	}
	if set.BackfillRate < 1 {
		fail("backfill_rate", "backfill_rate must be at least 1 profile per second")
	}
	for name := range spec.Params {
		if !nameRE.MatchString(name) {
			fail("params", "param name %q: use lower-case letters, digits and underscores", name)
		}
	}
	env := Env(features, spec.Params)
	feats, traits := map[string]bool{}, map[string]bool{}
	h := fnv.New32a()
	for i, ss := range spec.Definitions {
		p := fmt.Sprintf("definitions[%d]", i)
		if !nameRE.MatchString(ss.Name) {
			fail(p+".name", "segment name %q: use lower-case letters, digits and underscores, starting with a letter", ss.Name)
			continue
		}
		if set.byName[ss.Name] != nil {
			fail(p+".name", "segment %q is defined twice", ss.Name)
			continue
		}
		if strings.TrimSpace(ss.Condition) == "" {
			fail(p+".condition", "segment %s has no condition", ss.Name)
			continue
		}
		prog, err := expr.Compile(ss.Condition, expr.Env(env), expr.AsBool())
		if err != nil {
			fail(p+".condition", "condition: %s", strings.Join(strings.Fields(err.Error()), " "))
			continue
		}
		seg := &Segment{Name: ss.Name, Condition: ss.Condition, Topic: ss.Topic, Activation: ss.Activation, prog: prog}
		seg.Features, seg.Traits = referenced(prog, features)
		for j, a := range ss.Activation {
			if a == "" {
				fail(fmt.Sprintf("%s.activation[%d]", p, j), "empty trait name")
			}
			traits[a] = true
		}
		for _, f := range seg.Features {
			feats[f] = true
		}
		for _, t := range seg.Traits {
			traits[t] = true
		}
		sh := fnv.New32a()
		fmt.Fprintf(sh, "%s\x00%s\x00%v", ss.Name, ss.Condition, paramValues(spec.Params, ss.Condition))
		seg.ID = sh.Sum32()
		fmt.Fprintf(h, "%d,", seg.ID)
		set.byName[seg.Name] = seg
		set.Segments = append(set.Segments, seg)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for f := range feats {
		set.Features = append(set.Features, f)
	}
	for t := range traits {
		set.Traits = append(set.Traits, t)
	}
	slices.Sort(set.Features)
	slices.Sort(set.Traits)
	set.ID = h.Sum32()
	set.readers = map[string][]int{}
	for i, seg := range set.Segments {
		for _, f := range seg.Features {
			set.readers[f] = append(set.readers[f], i)
		}
		for _, t := range seg.Traits {
			set.readers["traits."+t] = append(set.readers["traits."+t], i)
		}
	}
	return set, nil
}

// paramValues lists the params a condition mentions, so that changing a
// threshold changes the segment's fingerprint.
func paramValues(params map[string]float64, cond string) string {
	var out []string
	for k, v := range params {
		if strings.Contains(cond, k) {
			out = append(out, fmt.Sprintf("%s=%v", k, v))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// Env is the environment conditions are compiled against: every feature
// (numbers that always have a value as float64, numbers that may have none
// as *float64, the most frequent value as *string, first/last values as
// any), traits and params.
func Env(features *fdef.Set, params map[string]float64) map[string]any {
	env := map[string]any{"traits": map[string]any{}, "params": map[string]float64{}}
	if params != nil {
		env["params"] = params
	}
	for _, f := range features.Features {
		env[f.Name] = Value(f.Agg, fdef.Value{})
	}
	return env
}

// Value is a feature value as conditions see it (see Env).
func Value(agg fdef.Agg, v fdef.Value) any {
	switch agg {
	case fdef.Count, fdef.Sum, fdef.Distinct:
		return v.Num
	case fdef.Top:
		if v.Kind != fdef.String {
			return (*string)(nil)
		}
		return &v.Str
	case fdef.First, fdef.Last:
		return v.Any()
	}
	if v.Kind != fdef.Number {
		return (*float64)(nil)
	}
	return &v.Num
}

type collector struct {
	features     *fdef.Set
	feats, trait map[string]bool
}

func (c *collector) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if c.features.Index(x.Value) >= 0 {
			c.feats[x.Value] = true
		}
	case *ast.MemberNode:
		if id, ok := x.Node.(*ast.IdentifierNode); ok && id.Value == "traits" {
			if s, ok := x.Property.(*ast.StringNode); ok {
				c.trait[s.Value] = true
			}
		}
	}
}

// referenced lists the features and traits a compiled condition reads.
func referenced(prog *vm.Program, features *fdef.Set) (feats, traits []string) {
	c := &collector{features: features, feats: map[string]bool{}, trait: map[string]bool{}}
	node := prog.Node()
	ast.Walk(&node, c)
	for f := range c.feats {
		feats = append(feats, f)
	}
	for t := range c.trait {
		traits = append(traits, t)
	}
	slices.Sort(feats)
	slices.Sort(traits)
	return feats, traits
}

// Eval evaluates the condition in env (see Env for its shape). A run-time
// error counts as false and is returned for the caller to count.
func (s *Segment) Eval(env map[string]any) (bool, error) {
	out, err := expr.Run(s.prog, env)
	if err != nil {
		return false, fmt.Errorf("segment %s: %w", s.Name, err)
	}
	b, _ := out.(bool)
	return b, nil
}
