package topology_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamcdp/streamcdp/topology"
)

// valid is the smallest correct topology; the cases below break it in one
// place each, so each must produce exactly one problem.
const valid = `version: 1
topics:
  - name: in
    partitions: 1
    retention: 1d
  - name: out
    partitions: 1
    retention: 1d
processors:
  - name: p
    inputs: [in]
    outputs: [out]
`

func TestParseValid(t *testing.T) {
	top, err := topology.Parse([]byte(valid), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(top.Topics) != 2 || top.Topics[1].Name != "out" || top.Topics[1].Partitions != 1 {
		t.Errorf("topics = %+v", top.Topics)
	}
	if len(top.Warnings) != 0 {
		t.Errorf("warnings = %v, want none", top.Warnings)
	}
}

// renameIn renames topic "in" of the valid document, everywhere it is used.
func renameIn(doc, name string) string {
	return strings.ReplaceAll(strings.ReplaceAll(doc, "name: in\n", "name: "+name+"\n"), "[in]", "["+name+"]")
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		line, col int
		want      []string // fragments of the message
	}{
		{
			name: "unknown topic key with suggestion",
			yaml: `version: 1
topics:
  - name: in
    partitons: 1
    partitions: 1
    retention: 1d
processors:
  - name: p
    inputs: [in]
`,
			line: 4, col: 5,
			want: []string{`unknown key "partitons" in topics[0]`, `did you mean "partitions"?`},
		},
		{
			name: "unknown top-level key",
			yaml: valid + "segmnts: []\n",
			line: 13, col: 1,
			want: []string{`unknown key "segmnts" in the top level`, `did you mean "segments"?`, "known keys: features, identity, processors, recommend, segments, topics, version"},
		},
		{
			name: "unknown processor key",
			yaml: strings.Replace(valid, "    outputs: [out]", "    output: [out]", 1),
			line: 12, col: 5,
			want: []string{`unknown key "output" in processors[0]`, `did you mean "outputs"?`},
		},
		{
			name: "duplicate topic",
			yaml: `version: 1
topics:
  - name: in
    partitions: 1
    retention: 1d
  - name: in
    partitions: 2
    retention: 1d
processors:
  - name: p
    inputs: [in]
`,
			line: 6, col: 11,
			want: []string{`duplicate topic "in" (first declared on line 3)`},
		},
		{
			name: "duplicate processor",
			yaml: valid + "  - name: p\n    inputs: [out]\n",
			line: 13, col: 11,
			want: []string{`duplicate processor "p" (first declared on line 10)`},
		},
		{
			name: "input names an undeclared topic",
			yaml: strings.Replace(valid, "inputs: [in]", "inputs: [in, events.rwa]", 1),
			line: 11, col: 18,
			want: []string{`inputs of processor "p": topic "events.rwa" is not declared under topics`},
		},
		{
			name: "output names an undeclared topic, with suggestion",
			yaml: strings.Replace(valid, "outputs: [out]", "outputs: [outt]", 1),
			line: 12, col: 15,
			want: []string{`outputs of processor "p": topic "outt" is not declared`, `did you mean "out"?`},
		},
		{
			name: "input listed twice",
			yaml: strings.Replace(valid, "inputs: [in]", "inputs: [in, in]", 1),
			line: 11, col: 18,
			want: []string{`inputs of processor "p" lists topic "in" twice`},
		},
		{
			name: "zero partitions",
			yaml: strings.Replace(valid, "    partitions: 1\n    retention: 1d\n  - name: out", "    partitions: 0\n    retention: 1d\n  - name: out", 1),
			line: 4, col: 17,
			want: []string{`partitions: 0 for topic "in"; must be at least 1`},
		},
		{
			name: "missing partitions reported at the topic",
			yaml: strings.Replace(valid, "    partitions: 1\n    retention: 1d\n  - name: out", "    retention: 1d\n  - name: out", 1),
			line: 3, col: 5,
			want: []string{`partitions: 0 for topic "in"`},
		},
		{
			name: "partitions not a number",
			yaml: strings.Replace(valid, "partitions: 1\n    retention: 1d\n  - name: out", "partitions: six\n    retention: 1d\n  - name: out", 1),
			line: 4, col: 17,
			want: []string{`partitions: "six" is not a whole number`},
		},
		{
			name: "bad retention unit",
			yaml: strings.Replace(valid, "retention: 1d\n  - name: out", "retention: 7x\n  - name: out", 1),
			line: 5, col: 16,
			want: []string{`retention "7x": want a duration like 168h, days like 7d, or infinite`, `topic "in"`},
		},
		{
			name: "zero days",
			yaml: strings.Replace(valid, "retention: 1d\n  - name: out", "retention: 0d\n  - name: out", 1),
			line: 5, col: 16,
			want: []string{`retention "0d": days must be a whole number from 1`},
		},
		{
			name: "negative duration",
			yaml: strings.Replace(valid, "retention: 1d\n  - name: out", "retention: -5h\n  - name: out", 1),
			line: 5, col: 16,
			want: []string{`retention "-5h": must be at least 1ms`},
		},
		{
			name: "missing retention",
			yaml: strings.Replace(valid, "    retention: 1d\n  - name: out", "  - name: out", 1),
			line: 3, col: 5,
			want: []string{`topic "in" has no retention`},
		},
		{
			name: "illegal character in topic name",
			yaml: renameIn(valid, "events/raw"),
			line: 3, col: 11,
			want: []string{`topic name "events/raw" contains '/'`},
		},
		{
			name: "topic name over Kafka's limit",
			yaml: renameIn(valid, strings.Repeat("a", 250)),
			line: 3, col: 11,
			want: []string{"is 250 characters; Kafka allows at most 249"},
		},
		{
			name: "dot and underscore collide",
			yaml: `version: 1
topics:
  - name: a.b
    partitions: 1
    retention: 1d
  - name: a_b
    partitions: 1
    retention: 1d
processors:
  - name: p
    inputs: [a.b, a_b]
`,
			line: 6, col: 11,
			want: []string{`topic "a_b" collides with "a.b"`},
		},
		{
			name: "processor without inputs that serves nothing",
			yaml: valid + "  - name: idle\n    stores: [redis]\n",
			line: 13, col: 5,
			want: []string{`processor "idle" has no inputs; only a server (serves: [http]) may have none`},
		},
		{
			name: "unknown store",
			yaml: strings.Replace(valid, "outputs: [out]", "outputs: [out]\n    stores: [redis, mysql]", 1),
			line: 13, col: 21,
			want: []string{`stores of processor "p": unknown "mysql"; want one of redis, clickhouse`},
		},
		{
			name: "unknown served protocol",
			yaml: valid + "  - name: api\n    serves: [grpc]\n",
			line: 14, col: 14,
			want: []string{`serves of processor "api": unknown "grpc"; want one of http`},
		},
		{
			name: "retention.ms in config",
			yaml: strings.Replace(valid, "retention: 1d\n  - name: out", "retention: 1d\n    config:\n      retention.ms: 5\n  - name: out", 1),
			line: 7, col: 21,
			want: []string{"config retention.ms: set it with the topic's retention key instead"},
		},
		{
			name: "empty config value",
			yaml: strings.Replace(valid, "retention: 1d\n  - name: out", "retention: 1d\n    config:\n      max.message.bytes: \"\"\n  - name: out", 1),
			line: 7, col: 26,
			want: []string{"config max.message.bytes has no value"},
		},
		{
			name: "inputs is not a list",
			yaml: strings.Replace(valid, "inputs: [in]", "inputs: in", 1),
			line: 11, col: 13,
			want: []string{`inputs: want a list, got "in"`},
		},
		{
			name: "duplicate key",
			yaml: strings.Replace(valid, "    outputs: [out]", "    outputs: [out]\n    outputs: [in]", 1),
			line: 13, col: 5,
			want: []string{`duplicate key "outputs" (first on line 12)`},
		},
		{
			name: "compaction not a boolean",
			yaml: strings.Replace(valid, "retention: 1d\n  - name: out", "retention: 1d\n    compaction: maybe\n  - name: out", 1),
			line: 6, col: 17,
			want: []string{`compaction: "maybe" is not true or false`},
		},
		{
			name: "missing version",
			yaml: strings.TrimPrefix(valid, "version: 1\n"),
			line: 1, col: 1,
			want: []string{"version is missing"},
		},
		{
			name: "unsupported version",
			yaml: strings.Replace(valid, "version: 1", "version: 2", 1),
			line: 1, col: 10,
			want: []string{"version: 2 is not supported; want 1"},
		},
		{
			name: "no topics",
			yaml: "version: 1\ntopics: []\nprocessors: []\n",
			line: 2, col: 9,
			want: []string{"no topics declared"},
		},
		{
			name: "YAML syntax error",
			yaml: "version: 1\ntopics:\n  - name: [in\n",
			line: 3, col: 0,
			want: []string{"invalid YAML"},
		},
		{
			name: "not a mapping",
			yaml: "- version: 1\n",
			line: 1, col: 1,
			want: []string{"want a mapping with version, topics and processors at the top, got a list"},
		},
		{
			name: "empty file",
			yaml: "",
			line: 1, col: 1,
			want: []string{"file is empty"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := topology.Parse([]byte(tc.yaml), "t.yaml")
			var ve *topology.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			if len(ve.Problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ve.Problems), err)
			}
			p := ve.Problems[0]
			if p.File != "t.yaml" || p.Line != tc.line || p.Col != tc.col {
				t.Errorf("position = %s:%d:%d, want t.yaml:%d:%d (%s)", p.File, p.Line, p.Col, tc.line, tc.col, p.Msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(p.Msg, w) {
					t.Errorf("message %q does not contain %q", p.Msg, w)
				}
			}
		})
	}
}

// TestParseReportsEveryProblem checks that validation does not stop at the
// first problem and that Error prints one problem per line, in file order.
func TestParseReportsEveryProblem(t *testing.T) {
	src := `version: 1
topics:
  - name: in
    partitions: 0
    retention: forever
    colour: blue
processors:
  - name: p
    inputs: [nowhere]
`
	_, err := topology.Parse([]byte(src), "bad.yaml")
	var ve *topology.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error = %v, want a *ValidationError", err)
	}
	want := []string{
		`bad.yaml:4:17: partitions: 0 for topic "in"; must be at least 1`,
		`bad.yaml:5:16: retention "forever": want a duration like 168h, days like 7d, or infinite (topic "in")`,
		`bad.yaml:6:5: unknown key "colour" in topics[0]`,
		`bad.yaml:9:14: inputs of processor "p": topic "nowhere" is not declared under topics`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Error() has %d lines, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
		}
	}
}

func TestUnusedTopicIsAWarning(t *testing.T) {
	// Topics in and out are used; add one that nothing touches.
	src := strings.Replace(valid, "processors:", "  - name: orphan\n    partitions: 1\n    retention: 1d\nprocessors:", 1)
	top, err := topology.Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(top.Warnings) != 1 {
		t.Fatalf("warnings = %v, want 1", top.Warnings)
	}
	w := top.Warnings[0]
	if w.Line != 9 || !strings.Contains(w.Msg, `topic "orphan" is neither produced nor consumed`) {
		t.Errorf("warning = %s", w)
	}
}

func TestUnknownKafkaConfigIsAWarning(t *testing.T) {
	src := strings.Replace(valid, "retention: 1d\n  - name: out", "retention: 1d\n    config:\n      max.mesage.bytes: 10\n  - name: out", 1)
	top, err := topology.Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(top.Warnings) != 1 || top.Warnings[0].Line != 7 ||
		!strings.Contains(top.Warnings[0].Msg, `did you mean "max.message.bytes"?`) {
		t.Errorf("warnings = %v", top.Warnings)
	}
	if got := top.Topics[0].Config["max.mesage.bytes"]; got != "10" {
		t.Errorf("config value = %q, want the integer kept as the string \"10\"", got)
	}
}

func TestServerNeedsNoInputs(t *testing.T) {
	src := valid + "  - name: api\n    stores: [redis]\n    serves: [http]\n"
	top, err := topology.Parse([]byte(src), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	api, ok := top.Processor("api")
	if !ok || len(api.Serves) != 1 || api.Serves[0] != "http" {
		t.Errorf("api = %+v, %v", api, ok)
	}
}

func TestRetentionMillis(t *testing.T) {
	tests := []struct {
		in   topology.Retention
		want int64
	}{
		{"7d", 7 * 24 * 3600 * 1000},
		{"36h", 36 * 3600 * 1000},
		{"90m", 90 * 60 * 1000},
		{"1ms", 1},
		{"infinite", -1},
		{"Infinite", -1},
	}
	for _, tc := range tests {
		got, err := tc.in.Millis()
		if err != nil || got != tc.want {
			t.Errorf("%q.Millis() = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []topology.Retention{"", "7", "d", "1.5d", "-1d", "0s", "1us", "forever"} {
		if got, err := bad.Millis(); err == nil {
			t.Errorf("%q.Millis() = %d, want an error", bad, got)
		}
	}
}

func TestCleanupPolicyAndConfigs(t *testing.T) {
	tests := []struct {
		tp   topology.Topic
		want map[string]string
	}{
		{topology.Topic{Retention: "1d"}, map[string]string{"cleanup.policy": "delete", "retention.ms": "86400000"}},
		{topology.Topic{Retention: "1d", Compaction: true}, map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "86400000"}},
		{topology.Topic{Retention: "infinite", Compaction: true}, map[string]string{"cleanup.policy": "compact", "retention.ms": "-1"}},
		{topology.Topic{Retention: "infinite", Config: map[string]string{"max.message.bytes": "2"}},
			map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "max.message.bytes": "2"}},
	}
	for _, tc := range tests {
		got := tc.tp.KafkaConfigs()
		if len(got) != len(tc.want) {
			t.Errorf("%+v: configs = %v, want %v", tc.tp, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%+v: %s = %q, want %q", tc.tp, k, got[k], v)
			}
		}
	}
}

func TestConsumerGroup(t *testing.T) {
	p := topology.Processor{Name: "identity"}
	if got := p.ConsumerGroup("cdp"); got != "cdp-identity" {
		t.Errorf("default group = %q, want cdp-identity", got)
	}
	if got := p.ConsumerGroup("t1234"); got != "t1234-identity" {
		t.Errorf("group with prefix t1234 = %q", got)
	}
	p.Group = "custom"
	if got := p.ConsumerGroup("cdp"); got != "custom" {
		t.Errorf("explicit group = %q, want custom", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := topology.Load(t.TempDir() + "/nope.yaml")
	if err == nil || !strings.Contains(err.Error(), "reading topology") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// sectionCase is a YAML section appended to a minimal valid topology and
// the problem it must cause on line.
type sectionCase struct {
	name, yaml string
	line       int
	want       string
}

func checkSectionProblems(t *testing.T, cases []sectionCase) {
	t.Helper()
	base := "version: 1\ntopics:\n  - {name: a, partitions: 1, retention: 1d}\nprocessors:\n  - {name: p, inputs: [a]}\n"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := topology.Parse([]byte(base+tc.yaml), "t.yaml")
			var ve *topology.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v, want a ValidationError", err)
			}
			found := false
			for _, p := range ve.Problems {
				if p.Line == tc.line && strings.Contains(p.Msg, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem on line %d containing %q in:\n%v", tc.line, tc.want, err)
			}
		})
	}
}

func TestIdentitySectionProblems(t *testing.T) {
	checkSectionProblems(t, []sectionCase{
		{"bad window", "identity:\n  dedup_window: soon\n", 7, "dedup_window"},
		{"short window", "identity:\n  dedup_window: 10ms\n", 7, "at least 1s"},
		{"bad custom path", "identity:\n  custom:\n    - {type: loyalty_id, path: loyalty}\n", 8, "must be traits.X"},
		{"typo", "identity:\n  priorty: [user_id]\n", 7, `did you mean "priority"`},
	})
	tp, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	if tp.Identity.DedupWindow != "24h" || tp.Identity.Limits["user_id"] != 1 {
		t.Errorf("default identity section = %+v", tp.Identity)
	}
}

func TestRecommendSectionProblems(t *testing.T) {
	checkSectionProblems(t, []sectionCase{
		{"bad refit interval", "recommend:\n  refit_interval: hourly\n", 7, "recommend.refit_interval"},
		{"short session window", "recommend:\n  session_window: 5ms\n", 7, "at least 1s"},
		{"negative k", "recommend:\n  k: -1\n", 7, "must not be negative"},
		{"empty mix", "recommend:\n  mix: {repeat: 0, next: 0}\n", 7, "positive weight"},
		{"typo", "recommend:\n  exclude_boght: true\n", 7, `did you mean "exclude_bought"`},
	})
	tp, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	if r := tp.Recommend; r.K != 10 || r.ExcludeBought || r.RefitInterval != "1h" {
		t.Errorf("default recommend section = %+v", r)
	}
}
