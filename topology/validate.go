package topology

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
)

// Problem is one thing wrong in a topology file and where it is, so that an
// editor or a person can jump straight to it.
type Problem struct {
	File string
	Line int // 1-based; 0 when unknown
	Col  int // 1-based; 0 when unknown
	Msg  string
}

// String formats the problem as "file:line:col: message", the form editors
// and CI logs link to.
func (p Problem) String() string {
	switch {
	case p.Line == 0:
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	case p.Col == 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// ValidationError is every problem found in a topology file. It lists them
// all, not just the first, so one edit-validate round fixes the whole file.
type ValidationError struct {
	Problems []Problem
	// Warnings found alongside; they alone would not fail validation.
	Warnings []Problem
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func newValidationError(problems, warnings []Problem) *ValidationError {
	return &ValidationError{Problems: sortProblems(problems), Warnings: sortProblems(warnings)}
}

// sortProblems orders problems as they appear in the file.
func sortProblems(ps []Problem) []Problem {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return ps
}

// maxTopicName is Kafka's limit on topic name length.
const maxTopicName = 249

// checkTopicName returns why name is not a legal Kafka topic name, or "".
func checkTopicName(name string) string {
	if name == "." || name == ".." {
		return fmt.Sprintf("topic name %q is not allowed by Kafka", name)
	}
	if len(name) > maxTopicName {
		return fmt.Sprintf("topic name %q is %d characters; Kafka allows at most %d", name, len(name), maxTopicName)
	}
	for _, r := range name {
		if !legalNameRune(r) {
			return fmt.Sprintf("topic name %q contains %q; Kafka allows only ASCII letters, digits, '.', '_' and '-'", name, r)
		}
	}
	return ""
}

func legalNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// managedConfigs are topic configs set through Topic fields, not Config.
var managedConfigs = map[string]string{
	"retention.ms":   "retention",
	"cleanup.policy": "compaction",
}

// kafkaTopicConfigs are the topic-level configs Apache Kafka 4.x knows. A
// key outside this list is a warning, not an error: brokers from other
// vendors add their own.
var kafkaTopicConfigs = []string{
	"cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
	"compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages",
	"flush.ms", "follower.replication.throttled.replicas", "index.interval.bytes",
	"leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
	"max.compaction.lag.ms", "max.message.bytes", "message.timestamp.after.max.ms",
	"message.timestamp.before.max.ms", "message.timestamp.type", "min.cleanable.dirty.ratio",
	"min.compaction.lag.ms", "min.insync.replicas", "preallocate", "remote.log.copy.disable",
	"remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes", "retention.ms",
	"segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
	"unclean.leader.election.enable",
}

type validator struct {
	t                  *Topology
	problems, warnings []Problem
}

// at returns the position of path, or of its nearest ancestor that is in the
// file (a missing key is reported where its parent is).
func (v *validator) at(path string) Problem {
	for {
		if p, ok := v.t.pos[path]; ok {
			return Problem{File: v.t.file, Line: p.line, Col: p.col}
		}
		if path == "" {
			return Problem{File: v.t.file, Line: 1, Col: 1}
		}
		path = parentOf(path)
	}
}

func (v *validator) errorf(path, format string, args ...any) {
	if v.t.bad[path] {
		return // the decoder already said what is wrong with this value
	}
	p := v.at(path)
	p.Msg = fmt.Sprintf(format, args...)
	v.problems = append(v.problems, p)
}

func (v *validator) warnf(path, format string, args ...any) {
	p := v.at(path)
	p.Msg = "warning: " + fmt.Sprintf(format, args...)
	v.warnings = append(v.warnings, p)
}

// validate checks what the decoder cannot: names, references between
// processors and topics, and values.
func (t *Topology) validate() (problems, warnings []Problem) {
	v := &validator{t: t}
	if _, ok := t.pos["version"]; !ok {
		v.errorf("", "version is missing: add `version: 1` at the top")
	} else if t.Version != 1 {
		v.errorf("version", "version: %d is not supported; want 1", t.Version)
	}
	if len(t.Topics) == 0 {
		v.errorf("topics", "no topics declared")
	}
	topics := v.checkTopics()
	produced, consumed := v.checkProcessors(topics)
	if w := t.Identity.DedupWindow; w != "" {
		if d, err := time.ParseDuration(w); err != nil || d < time.Second {
			v.errorf("identity.dedup_window", "identity.dedup_window: %q is not a duration of at least 1s (such as 24h)", w)
		}
	}
	for key, w := range map[string]string{"recommend.session_window": t.Recommend.SessionWindow, "recommend.refit_interval": t.Recommend.RefitInterval} {
		if d, err := time.ParseDuration(w); w != "" && (err != nil || d < time.Second) {
			v.errorf(key, "%s: %q is not a duration of at least 1s (such as 1h)", key, w)
		}
	}
	if r := t.Recommend; r.K < 0 {
		v.errorf("recommend.k", "recommend.k: %d items; must not be negative (0 keeps the default)", r.K)
	}
	if m := t.Recommend.Mix; m != nil && (m.Repeat < 0 || m.Next < 0 || m.Together < 0 || m.Repeat+m.Next+m.Together == 0) {
		v.errorf("recommend.mix", "recommend.mix: %+v needs a positive weight and no negative one", *m)
	}
	for i, c := range t.Identity.Custom {
		p := fmt.Sprintf("identity.custom[%d]", i)
		if c.Type == "" {
			v.errorf(p, "custom identifier has no type")
		}
		ok := false
		for _, prefix := range []string{"traits.", "context.traits.", "properties.", "context.extra."} {
			if strings.HasPrefix(c.Path, prefix) && len(c.Path) > len(prefix) {
				ok = true
			}
		}
		if !ok {
			v.errorf(p+".path", "custom identifier %q: path %q must be traits.X, context.traits.X, properties.X or context.extra.X", c.Type, c.Path)
		}
	}
	if fold, ok := t.Topic("features.fold"); ok {
		if res, ok := t.Topic("events.resolved"); ok && fold.Partitions != res.Partitions {
			for i, tp := range t.Topics {
				if tp.Name == "features.fold" {
					v.errorf(fmt.Sprintf("topics[%d].partitions", i), "features.fold must have as many partitions as events.resolved (%d): the features processor co-partitions them", res.Partitions)
				}
			}
		}
	}
	fset, err := definition.Compile(t.Features)
	if err != nil {
		var errs definition.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				v.errorf("features."+e.Path, "features.%s", e.Error())
			}
		} else {
			v.errorf("features", "features: %v", err)
		}
	} else {
		v.checkSegments(fset, produced)
	}
	for i, tp := range t.Topics {
		if tp.Name != "" && !produced[tp.Name] && !consumed[tp.Name] {
			v.warnf(fmt.Sprintf("topics[%d].name", i), "topic %q is neither produced nor consumed by any processor", tp.Name)
		}
	}
	return v.problems, v.warnings
}

// checkTopics validates each topic and returns the declared names with the
// line of their first declaration.
func (v *validator) checkTopics() map[string]int {
	names := map[string]int{}
	// Kafka refuses topics whose names differ only in '.' versus '_'
	// (they collide in metric names).
	normalized := map[string]string{}
	for i, tp := range v.t.Topics {
		p := fmt.Sprintf("topics[%d]", i)
		if tp.Name == "" {
			v.errorf(p, "topic has no name")
		} else {
			if msg := checkTopicName(tp.Name); msg != "" {
				v.errorf(p+".name", "%s", msg)
			}
			// An illegal name is still recorded, so processors that use
			// it do not also report it as undeclared.
			if line, dup := names[tp.Name]; dup {
				v.errorf(p+".name", "duplicate topic %q (first declared on line %d)", tp.Name, line)
			} else {
				names[tp.Name] = v.at(p + ".name").Line
				norm := strings.ReplaceAll(tp.Name, ".", "_")
				if other, ok := normalized[norm]; ok {
					v.errorf(p+".name", "topic %q collides with %q: Kafka treats '.' and '_' as the same in topic names", tp.Name, other)
				}
				normalized[norm] = tp.Name
			}
		}
		if tp.Partitions < 1 {
			v.errorf(p+".partitions", "partitions: %d for %s; must be at least 1", tp.Partitions, named("topic", tp.Name))
		}
		if tp.Retention == "" {
			v.errorf(p+".retention", "%s has no retention: add one such as `retention: 7d` (or 168h, or infinite)", named("topic", tp.Name))
		} else if _, err := tp.Retention.Millis(); err != nil {
			v.errorf(p+".retention", "%v (%s)", err, named("topic", tp.Name))
		}
		for _, k := range slices.Sorted(maps.Keys(tp.Config)) {
			cp := p + ".config[" + k + "]"
			if field, ok := managedConfigs[k]; ok {
				v.errorf(cp, "config %s: set it with the topic's %s key instead", k, field)
				continue
			}
			if !slices.Contains(kafkaTopicConfigs, k) {
				v.warnf(cp, "config %s is not an Apache Kafka topic config%s; the broker may reject it",
					k, suggest(k, kafkaTopicConfigs))
			}
			if strings.TrimSpace(tp.Config[k]) == "" {
				v.errorf(cp, "config %s has no value", k)
			}
		}
	}
	return names
}

// checkProcessors validates each processor against the declared topics and
// returns which topics some processor produces and consumes.
func (v *validator) checkProcessors(topics map[string]int) (produced, consumed map[string]bool) {
	produced, consumed = map[string]bool{}, map[string]bool{}
	topicNames := slices.Sorted(maps.Keys(topics))
	names := map[string]int{}
	for i, pr := range v.t.Processors {
		p := fmt.Sprintf("processors[%d]", i)
		switch {
		case pr.Name == "":
			v.errorf(p, "processor has no name")
		case strings.ContainsFunc(pr.Name, func(r rune) bool { return !legalNameRune(r) }):
			v.errorf(p+".name", "processor name %q may contain only ASCII letters, digits, '.', '_' and '-' (it is part of the consumer group)", pr.Name)
		default:
			if line, dup := names[pr.Name]; dup {
				v.errorf(p+".name", "duplicate processor %q (first declared on line %d)", pr.Name, line)
				break
			}
			names[pr.Name] = v.at(p + ".name").Line
		}
		refs := func(key string, list []string, mark map[string]bool) {
			seen := map[string]bool{}
			for j, name := range list {
				ep := fmt.Sprintf("%s.%s[%d]", p, key, j)
				switch {
				case seen[name]:
					v.errorf(ep, "%s of %s lists topic %q twice", key, named("processor", pr.Name), name)
				case !declared(topics, name):
					v.errorf(ep, "%s of %s: topic %q is not declared under topics%s", key, named("processor", pr.Name), name, suggest(name, topicNames))
				}
				seen[name] = true
				mark[name] = true
			}
		}
		refs("inputs", pr.Inputs, consumed)
		refs("outputs", pr.Outputs, produced)
		v.checkEnum(p+".stores", pr.Name, pr.Stores, knownStores)
		v.checkEnum(p+".sinks", pr.Name, pr.Sinks, knownSinks)
		v.checkEnum(p+".serves", pr.Name, pr.Serves, knownServes)
		if len(pr.Inputs) == 0 && len(pr.Serves) == 0 && !v.t.bad[p+".inputs"] && !v.t.bad[p+".serves"] {
			v.errorf(p, "%s has no inputs; only a server (serves: [http]) may have none", named("processor", pr.Name))
		}
	}
	return produced, consumed
}

func (v *validator) checkEnum(path, processor string, list, known []string) {
	seen := map[string]bool{}
	for j, s := range list {
		ep := fmt.Sprintf("%s[%d]", path, j)
		switch {
		case seen[s]:
			v.errorf(ep, "%s of %s lists %q twice", keyOf(path), named("processor", processor), s)
		case !slices.Contains(known, s):
			v.errorf(ep, "%s of %s: unknown %q; want one of %s", keyOf(path), named("processor", processor), s, strings.Join(known, ", "))
		}
		seen[s] = true
	}
}

// named renders `processor "identity"`, or just "processor" when the name
// is missing (that has its own problem).
func named(kind, name string) string {
	if name == "" {
		return kind
	}
	return fmt.Sprintf("%s %q", kind, name)
}

func declared(topics map[string]int, name string) bool {
	_, ok := topics[name]
	return ok
}

// checkSegments compiles the segment conditions against the features and
// checks their topics.
func (v *validator) checkSegments(fset *definition.Set, produced map[string]bool) {
	t := v.t
	if _, err := rules.Compile(t.Segments, fset); err != nil {
		var errs rules.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				v.errorf("segments."+e.Path, "segments.%s", e.Error())
			}
		} else {
			v.errorf("segments", "segments: %v", err)
		}
	}
	for i, s := range t.Segments.Definitions {
		if s.Topic == "" {
			continue
		}
		p := fmt.Sprintf("segments.definitions[%d].topic", i)
		if _, ok := t.Topic(s.Topic); !ok {
			v.errorf(p, "segment %s: topic %q is not declared under topics", s.Name, s.Topic)
		} else if !produced[s.Topic] {
			v.errorf(p, "segment %s: topic %q is not among the segments processor's outputs", s.Name, s.Topic)
		}
	}
	if t.Segments.AudienceEvents {
		if _, ok := t.Topic("segments.audiences"); !ok {
			v.errorf("segments.audience_events", "audience_events needs a segments.audiences topic")
		}
	}
}
