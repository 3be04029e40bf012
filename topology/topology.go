// Package topology holds StreamCDP's Kafka topics and processor graph as data.
//
// The graph lives in a YAML file (the default, topology.yaml, is embedded) so
// that operators change partitions or retention without a rebuild, and so one
// file drives creating topics (Apply), drawing the data flow (Mermaid) and
// telling each processor what it reads and writes. Loading validates the whole
// file and reports every problem with its file:line:col, because a topology
// mistake found at apply time, on a production cluster, is expensive.
//
// The schema grows by adding fields to the structs below: the decoder derives
// the accepted keys from the yaml struct tags, so a new section (for example
// `identity:` rules) is accepted as soon as its field exists, while a
// misspelled key is still an error.
package topology

import (
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
)

//go:embed topology.yaml
var defaultYAML []byte

// DefaultFile is the name reported in problems found in the embedded default.
const DefaultFile = "topology.yaml (embedded)"

// Topology is the whole graph: topics, and the processors that read and write
// them.
type Topology struct {
	// Version is the schema version of the file; only 1 exists.
	Version int `yaml:"version"`
	// Topics are the Kafka topics, by logical name.
	Topics []Topic `yaml:"topics"`
	// Processors are the consumer processes and servers.
	Processors []Processor `yaml:"processors"`
	// Identity holds the identity processor's rules.
	Identity IdentitySpec `yaml:"identity"`
	// Features are the feature definitions of the features processor
	// (see processors/features/definition).
	Features definition.Spec `yaml:"features"`
	// Segments are the segment definitions of the segments processor (see
	// processors/segments/rules).
	Segments rules.Spec `yaml:"segments"`
	// Recommend tunes the recommend processor.
	Recommend RecommendSpec `yaml:"recommend"`

	// Warnings are problems that do not stop the topology from working,
	// such as a topic that nothing reads or writes.
	Warnings []Problem `yaml:"-"`

	file string
	pos  map[string]position
	bad  map[string]bool
}

// Topic is one Kafka topic.
type Topic struct {
	// Name is the logical name; the physical one is "<prefix>.<Name>".
	Name string `yaml:"name"`
	// Description says what the records are, for people and for Describe.
	Description string `yaml:"description"`
	// Key documents what the record key is; partitioning follows it.
	Key string `yaml:"key"`
	// Partitions is the partition count; Apply can raise it but never
	// lowers it, because Kafka cannot remove partitions.
	Partitions int32 `yaml:"partitions"`
	// Retention is how long records are kept (see Retention).
	Retention Retention `yaml:"retention"`
	// Compaction keeps the latest record per key (cleanup.policy compact).
	Compaction bool `yaml:"compaction"`
	// Config holds further Kafka topic configs, applied verbatim.
	Config map[string]string `yaml:"config"`
}

// IdentitySpec are the identity resolution rules (see processors/identity,
// whose Rules they become). Every field is optional: an empty spec means
// Segment's defaults.
type IdentitySpec struct {
	// Space names the identity graph: one space, one graph in Redis.
	Space string `yaml:"space"`
	// Priority lists identifier types, highest first.
	Priority []string `yaml:"priority"`
	// Limits caps identifiers of a type per profile (0: unlimited).
	Limits map[string]int `yaml:"limits"`
	// Blocked are values never used as identifiers ("*@example.com" matches
	// a suffix), in addition to the built-in junk values.
	Blocked []string `yaml:"blocked"`
	// DedupWindow is a Go duration such as 24h.
	DedupWindow string `yaml:"dedup_window"`
	// DefaultRegion is the ISO region assumed for phones without a country code.
	DefaultRegion string `yaml:"default_region"`
	// MaxIdentifiers caps one profile's identifiers of all types together
	// (default 1000; 0: no cap).
	MaxIdentifiers *int `yaml:"max_identifiers"`
	// DedupKeyIDs is the average of message ids per dedup key at which a
	// window's keys split (default 2000; a key holds up to about twice it).
	DedupKeyIDs int `yaml:"dedup_key_ids"`
	// DedupShards is the shard count the graph's dedup ran with before its
	// keys split by themselves (stops 17-19; default 256): those keys are
	// read until they expire. 0: the graph never ran that layout.
	DedupShards *int `yaml:"dedup_shards"`
	// Custom identifiers are taken from event fields.
	Custom []CustomIdentifierSpec `yaml:"custom"`
}

// RecommendSpec tunes the recommend processor (processors/recommend, which
// documents the defaults). Every field is optional.
type RecommendSpec struct {
	// K is the number of items recommended per profile.
	K int `yaml:"k"`
	// ExcludeBought leaves items the profile bought out of its list.
	ExcludeBought bool `yaml:"exclude_bought"`
	// Mix weighs repeat items, next-basket and bought-together associations.
	Mix *RecommendMix `yaml:"mix"`
	// SessionWindow is how long a product view counts as the session's
	// (a Go duration).
	SessionWindow string `yaml:"session_window"`
	// RefitInterval is how often the score models are fitted again (a Go
	// duration).
	RefitInterval string `yaml:"refit_interval"`
}

// RecommendMix weighs the parts of a recommendation score (see
// internal/ml/assoc); only their ratios matter.
type RecommendMix struct {
	Repeat   float64 `yaml:"repeat"`
	Next     float64 `yaml:"next"`
	Together float64 `yaml:"together"`
}

// CustomIdentifierSpec names an identifier type and the event field it is
// read from: traits.X, context.traits.X, properties.X or context.extra.X.
type CustomIdentifierSpec struct {
	Type string `yaml:"type"`
	Path string `yaml:"path"`
}

// Processor is one consumer group (or server) of the platform.
type Processor struct {
	// Name identifies the processor (`cdp run <name>`).
	Name string `yaml:"name"`
	// Description says what the processor does.
	Description string `yaml:"description"`
	// Group is the Kafka consumer group; empty means "<prefix>-<name>"
	// (see ConsumerGroup).
	Group string `yaml:"group"`
	// Inputs are the logical topics the processor consumes.
	Inputs []string `yaml:"inputs"`
	// Outputs are the logical topics the processor produces to.
	Outputs []string `yaml:"outputs"`
	// Stores are the state stores it reads and writes (redis, clickhouse).
	Stores []string `yaml:"stores"`
	// Sinks are external systems it only writes to (clickhouse).
	Sinks []string `yaml:"sinks"`
	// Serves lists the protocols it serves (http); a server may have no
	// inputs.
	Serves []string `yaml:"serves"`
}

// Known values of Processor.Stores, Sinks and Serves.
var (
	knownStores = []string{"redis", "clickhouse"}
	knownSinks  = []string{"clickhouse"}
	knownServes = []string{"http"}
)

// ConsumerGroup returns the processor's Kafka consumer group. Without an
// explicit group it is "<prefix>-<name>" ("cdp-identity" with the default
// prefix), so two deployments or tests with different topic prefixes on one
// cluster do not share offsets.
func (p Processor) ConsumerGroup(prefix string) string {
	if p.Group != "" {
		return p.Group
	}
	if prefix == "" {
		prefix = "cdp"
	}
	return prefix + "-" + p.Name
}

// Topic returns the topic with the given logical name, or false.
func (t *Topology) Topic(name string) (Topic, bool) {
	for _, tp := range t.Topics {
		if tp.Name == name {
			return tp, true
		}
	}
	return Topic{}, false
}

// Processor returns the processor with the given name, or false.
func (t *Topology) Processor(name string) (Processor, bool) {
	for _, p := range t.Processors {
		if p.Name == name {
			return p, true
		}
	}
	return Processor{}, false
}

// Physical returns the physical topic name for a logical one, matching
// config.Services.Topic.
func Physical(prefix, logical string) string {
	if prefix == "" {
		return logical
	}
	return prefix + "." + logical
}

// Default returns the embedded default topology.
func Default() (*Topology, error) {
	return Parse(defaultYAML, DefaultFile)
}

// DefaultYAML returns the embedded default file, for users who want to start
// their own from it.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Load reads and validates the topology file at path.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading topology: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a topology. filename is used only in problem
// positions. The error, when the file is wrong, is a *ValidationError listing
// every problem found.
func Parse(data []byte, filename string) (*Topology, error) {
	t := &Topology{file: filename}
	d := &decoder{file: filename, pos: map[string]position{}, bad: map[string]bool{}}
	d.decodeDocument(data, t)
	if d.syntax {
		return nil, newValidationError(d.problems, nil)
	}
	t.pos, t.bad = d.pos, d.bad
	problems, warnings := t.validate()
	problems = append(d.problems, problems...)
	if len(problems) > 0 {
		return nil, newValidationError(problems, warnings)
	}
	t.Warnings = sortProblems(warnings)
	return t, nil
}

// Retention is how long a topic keeps records: a Go duration ("36h", "90m"),
// a whole number of days ("7d", which Go durations lack), or "infinite".
type Retention string

// Infinite is the Retention that never deletes.
const Infinite Retention = "infinite"

// Millis returns the retention as Kafka's retention.ms: -1 for infinite.
func (r Retention) Millis() (int64, error) {
	s := strings.TrimSpace(string(r))
	switch {
	case s == "":
		return 0, fmt.Errorf("retention is empty: want a duration like 168h, days like 7d, or infinite")
	case strings.EqualFold(s, string(Infinite)):
		return -1, nil
	case strings.HasSuffix(s, "d"):
		days, err := strconv.ParseInt(strings.TrimSuffix(s, "d"), 10, 64)
		if err != nil || days < 1 || days > 100*365 {
			return 0, fmt.Errorf("retention %q: days must be a whole number from 1 to 36500, like 7d", s)
		}
		return days * 24 * time.Hour.Milliseconds(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("retention %q: want a duration like 168h, days like 7d, or infinite", s)
	}
	if d < time.Millisecond {
		return 0, fmt.Errorf("retention %q: must be at least 1ms", s)
	}
	return d.Milliseconds(), nil
}

// CleanupPolicy returns the Kafka cleanup.policy the topic declares.
func (tp Topic) CleanupPolicy() string {
	if !tp.Compaction {
		return "delete"
	}
	if ms, err := tp.Retention.Millis(); err == nil && ms < 0 {
		return "compact"
	}
	return "compact,delete"
}

// KafkaConfigs returns every topic config the topic declares: retention.ms,
// cleanup.policy and the extra Config entries. The topology must have been
// validated (it has been, if it came from Parse or Load).
func (tp Topic) KafkaConfigs() map[string]string {
	out := make(map[string]string, len(tp.Config)+2)
	for k, v := range tp.Config {
		out[k] = v
	}
	ms, err := tp.Retention.Millis()
	if err == nil {
		out["retention.ms"] = strconv.FormatInt(ms, 10)
	}
	out["cleanup.policy"] = tp.CleanupPolicy()
	return out
}
