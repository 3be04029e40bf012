package definition

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/streamcdp/streamcdp/schemas"
)

// Agg is an aggregation.
type Agg uint8

// The aggregations. Sums and averages are kept in millionths (fixed point),
// so they are exact and independent of the order events arrive in: a value
// with more than six decimals is rounded to six.
const (
	Count     Agg = iota + 1 // events (or, with a field, values)
	Sum                      // sum of a numeric field
	Min                      // smallest value of a numeric field
	Max                      // largest
	Avg                      // sum / count of a numeric field
	Distinct                 // distinct values: exact up to Limit, then HyperLogLog
	First                    // value of the earliest event (by event time)
	Last                     // value of the latest event
	FirstSeen                // time of the earliest event, Unix ms
	LastSeen                 // time of the latest event, Unix ms
	Top                      // most frequent value (bounded to Limit values)
)

var aggNames = map[string]Agg{
	"count": Count, "sum": Sum, "min": Min, "max": Max, "avg": Avg, "distinct": Distinct,
	"first": First, "last": Last, "first_seen": FirstSeen, "last_seen": LastSeen, "top": Top,
}

func (a Agg) String() string {
	for n, x := range aggNames {
		if x == a {
			return n
		}
	}
	return "agg(" + strconv.Itoa(int(a)) + ")"
}

// Defaults.
const (
	DefaultBuckets         = 60
	DefaultDistinctLimit   = 64
	DefaultTopLimit        = 16
	DefaultAllowedLateness = time.Hour
	// MaxBuckets bounds a window's buckets (memory per profile).
	MaxBuckets = 1000
)

// Feature is a compiled feature definition.
type Feature struct {
	Name string
	// ID fingerprints the definition: stored state whose ID differs (the
	// definition changed) is dropped and the feature starts empty.
	ID     uint32
	Agg    Agg
	Field  *Field // nil for first_seen, last_seen and a plain count
	Type   schemas.CallType
	Events map[string]bool // nil: any
	Where  string
	where  *vm.Program
	// Window is 0 for lifetime; Bucket is the bucket width (ms).
	Window time.Duration
	Bucket int64
	Limit  int
	Spec   FeatureSpec
}

// Lifetime reports whether the feature has no window.
func (f *Feature) Lifetime() bool { return f.Window == 0 }

// WindowMs is the window in milliseconds (0: lifetime).
func (f *Feature) WindowMs() int64 { return f.Window.Milliseconds() }

// Set is a compiled `features:` section.
type Set struct {
	Features []*Feature
	// AllowedLateness: see the package doc.
	AllowedLateness time.Duration
	byName          map[string]int
	needEnv         bool
}

// Index returns the position of the named feature, or -1.
func (s *Set) Index(name string) int {
	if i, ok := s.byName[name]; ok {
		return i
	}
	return -1
}

// Error is a problem with the spec, at Path (relative to the `features:`
// section, such as "definitions[2].where").
type Error struct {
	Path string
	Msg  string
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

// ParseDuration reads a duration: Go's forms (90m, 24h) or whole days
// (7d, 365d).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 36500 {
			return 0, fmt.Errorf("%q: days must be a whole number from 1 to 36500", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 15m, 24h or 7d", s)
	}
	return d, nil
}

// Compile checks and compiles spec. Every problem is reported.
func Compile(spec Spec) (*Set, error) {
	var errs Errors
	fail := func(path, format string, args ...any) {
		errs = append(errs, Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	set := &Set{AllowedLateness: DefaultAllowedLateness, byName: map[string]int{}}
	if spec.AllowedLateness != "" {
		d, err := ParseDuration(spec.AllowedLateness)
		switch {
		case err != nil:
			fail("allowed_lateness", "allowed_lateness: %v", err)
		case d < 0:
			fail("allowed_lateness", "allowed_lateness must not be negative")
		default:
			set.AllowedLateness = d
		}
	}
	for i, fs := range spec.Definitions {
		p := fmt.Sprintf("definitions[%d]", i)
		f, ferrs := compileFeature(fs, p)
		errs = append(errs, ferrs...)
		if f == nil {
			continue
		}
		if j, dup := set.byName[f.Name]; dup {
			fail(p+".name", "feature %q is defined twice (also definitions[%d])", f.Name, j)
			continue
		}
		set.byName[f.Name] = len(set.Features)
		set.Features = append(set.Features, f)
		set.needEnv = set.needEnv || f.where != nil
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

func compileFeature(fs FeatureSpec, p string) (*Feature, Errors) {
	var errs Errors
	fail := func(path, format string, args ...any) {
		errs = append(errs, Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	f := &Feature{Name: fs.Name, Where: fs.Where, Spec: fs}
	if !nameRE.MatchString(fs.Name) {
		fail(p+".name", "feature name %q: use lower-case letters, digits and underscores, starting with a letter", fs.Name)
	}
	if fs.Type != "" {
		f.Type = schemas.CallType(fs.Type)
		if !f.Type.Valid() {
			fail(p+".type", "type %q is not a call type (track, page, screen, identify, group, alias)", fs.Type)
		}
	}
	if len(fs.Events) > 0 {
		f.Events = map[string]bool{}
		for j, e := range fs.Events {
			if strings.TrimSpace(e) == "" {
				fail(fmt.Sprintf("%s.events[%d]", p, j), "empty event name")
			}
			f.Events[e] = true
		}
	}
	agg, ok := aggNames[fs.Agg]
	if !ok {
		fail(p+".agg", "agg %q is not one of count, sum, min, max, avg, distinct, first, last, first_seen, last_seen, top", fs.Agg)
	}
	f.Agg = agg
	switch {
	case !ok:
	case agg == FirstSeen || agg == LastSeen:
		if fs.Field != "" {
			fail(p+".field", "%s takes no field: it is the event time", fs.Agg)
		}
	case fs.Field == "" && agg != Count:
		fail(p+".field", "%s needs a field (%s)", fs.Agg, FieldPaths)
	case fs.Field != "":
		fld, err := ParseField(fs.Field)
		if err != nil {
			fail(p+".field", "%v", err)
		}
		f.Field = fld
	}
	if fs.Window != "" && fs.Window != "lifetime" {
		w, err := ParseDuration(fs.Window)
		switch {
		case err != nil:
			fail(p+".window", "window %v (or lifetime)", err)
		case w < time.Second:
			fail(p+".window", "window %s is shorter than 1s", fs.Window)
		default:
			f.Window = w
		}
	}
	buckets := fs.Buckets
	if buckets == 0 {
		buckets = DefaultBuckets
	}
	if buckets < 1 || buckets > MaxBuckets {
		fail(p+".buckets", "buckets must be from 1 to %d", MaxBuckets)
	} else if f.Window > 0 {
		// Round the width up so that Buckets buckets cover the window.
		w := f.Window.Milliseconds()
		f.Bucket = (w + int64(buckets) - 1) / int64(buckets)
	}
	switch f.Agg {
	case Distinct:
		f.Limit = DefaultDistinctLimit
	case Top:
		f.Limit = DefaultTopLimit
	}
	if fs.Limit != 0 {
		if f.Agg != Distinct && f.Agg != Top {
			fail(p+".limit", "limit applies to distinct and top only")
		} else if fs.Limit < 1 || fs.Limit > 1024 {
			fail(p+".limit", "limit must be from 1 to 1024")
		} else {
			f.Limit = fs.Limit
		}
	}
	if fs.Where != "" {
		prog, err := expr.Compile(fs.Where, expr.Env(PredicateEnv{}), expr.AsBool())
		if err != nil {
			fail(p+".where", "where: %s", oneLine(err.Error()))
		}
		f.where = prog
	}
	if len(errs) > 0 {
		return nil, errs
	}
	f.ID = fingerprint(f)
	return f, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// fingerprint hashes what the stored state of a feature depends on. The
// description does not count; the name does, so two features never share
// state.
func fingerprint(f *Feature) uint32 {
	h := fnv.New32a()
	fs := f.Spec
	events := make([]string, 0, len(fs.Events))
	events = append(events, fs.Events...)
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00%s\x00%d\x00%s\x00%d\x00%d\x00%d", fs.Name, fs.Type, events, fs.Where,
		f.Agg, fs.Field, f.Window.Milliseconds(), f.Bucket, f.Limit)
	return h.Sum32()
}

// PredicateEnv is what a `where` expression sees: the event's call type,
// name, properties (typed e-commerce keys included, products as a list of
// maps), traits and context traits, and the context's common fields.
type PredicateEnv struct {
	Type          string         `expr:"type"`
	Event         string         `expr:"event"`
	Name          string         `expr:"name"`
	UserID        string         `expr:"user_id"`
	Properties    map[string]any `expr:"properties"`
	Traits        map[string]any `expr:"traits"`
	ContextTraits map[string]any `expr:"context_traits"`
	Page          map[string]any `expr:"page"`
	Campaign      map[string]any `expr:"campaign"`
	Device        map[string]any `expr:"device"`
}

// Matches reports whether ev is one of the feature's events. env is built
// on first need and shared by the features of one event.
func (f *Feature) Matches(ev *schemas.Event, env **PredicateEnv) (bool, error) {
	if f.Type != "" && ev.Type != f.Type {
		return false, nil
	}
	if f.Events != nil {
		name := ev.Event
		if ev.Type == schemas.Page || ev.Type == schemas.Screen {
			name = ev.Name
		}
		if !f.Events[name] {
			return false, nil
		}
	}
	if f.where == nil {
		return true, nil
	}
	if *env == nil {
		*env = NewPredicateEnv(ev)
	}
	out, err := expr.Run(f.where, **env)
	if err != nil {
		return false, fmt.Errorf("feature %s: where: %w", f.Name, err)
	}
	b, _ := out.(bool)
	return b, nil
}

// NewPredicateEnv builds the expression environment of ev.
func NewPredicateEnv(ev *schemas.Event) *PredicateEnv {
	env := &PredicateEnv{
		Type: string(ev.Type), Event: ev.Event, Name: ev.Name, UserID: ev.UserID,
		Properties: jsonMap(ev.Properties), Traits: jsonMap(ev.Traits), ContextTraits: jsonMap(ev.Context.Traits),
		Page: map[string]any{"path": ev.Context.Page.Path, "url": ev.Context.Page.URL,
			"referrer": ev.Context.Page.Referrer, "title": ev.Context.Page.Title},
		Campaign: map[string]any{"source": ev.Context.Campaign.Source, "medium": ev.Context.Campaign.Medium,
			"name": ev.Context.Campaign.Name, "term": ev.Context.Campaign.Term, "content": ev.Context.Campaign.Content},
		Device: map[string]any{"id": ev.Context.Device.ID, "type": ev.Context.Device.Type},
	}
	if c := ev.Commerce; c != nil {
		for k, get := range commerceScalar {
			if v := get(c); v.Kind != None {
				env.Properties[k] = v.Any()
			}
		}
		if len(c.Products) > 0 {
			ps := make([]any, len(c.Products))
			for i := range c.Products {
				p := &c.Products[i]
				m := jsonMap(p.Extra)
				for k, get := range productField {
					if v := get(p); v.Kind != None {
						m[k] = v.Any()
					}
				}
				ps[i] = m
			}
			env.Properties["products"] = ps
		}
	}
	return env
}

func jsonMap(m map[string]json.RawMessage) map[string]any {
	out := make(map[string]any, len(m))
	for k, raw := range m {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			v = string(raw)
		}
		out[k] = v
	}
	return out
}
