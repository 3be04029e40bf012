package topology_test

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/streamcdp/streamcdp/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func mustDefault(t *testing.T) *topology.Topology {
	t.Helper()
	top, err := topology.Default()
	if err != nil {
		t.Fatalf("the embedded default topology does not validate:\n%v", err)
	}
	return top
}

func TestDefaultValidates(t *testing.T) {
	top := mustDefault(t)
	if len(top.Warnings) != 0 {
		t.Errorf("default topology has warnings: %v", top.Warnings)
	}
	var names []string
	for _, tp := range top.Topics {
		names = append(names, tp.Name)
	}
	want := []string{"events.raw", "events.resolved", "identity.merges", "events.dlq", "profiles.changes", "features.fold", "segments.membership", "segments.audiences",
		"recommendations", "profiles.scores", "recommend.orders"}
	if !slices.Equal(names, want) {
		t.Errorf("topics = %v, want %v", names, want)
	}
	var procs []string
	for _, p := range top.Processors {
		procs = append(procs, p.Name)
	}
	if want := []string{"identity", "features", "segments", "warehouse", "recommend", "api"}; !slices.Equal(procs, want) {
		t.Errorf("processors = %v, want %v", procs, want)
	}

	resolved, _ := top.Topic("events.resolved")
	if resolved.Key != "profile_id" || resolved.Partitions != 6 {
		t.Errorf("events.resolved = %+v, want keyed by profile_id with 6 partitions", resolved)
	}
	merges, _ := top.Topic("identity.merges")
	if got := merges.KafkaConfigs(); got["retention.ms"] != "-1" || got["cleanup.policy"] != "delete" {
		t.Errorf("identity.merges configs = %v, want kept forever without compaction", got)
	}
	membership, _ := top.Topic("segments.membership")
	if got := membership.CleanupPolicy(); got != "compact" {
		t.Errorf("segments.membership cleanup.policy = %q, want compact", got)
	}
	identity, _ := top.Processor("identity")
	if !slices.Equal(identity.Outputs, []string{"events.resolved", "identity.merges", "events.dlq"}) ||
		identity.ConsumerGroup("cdp") != "cdp-identity" {
		t.Errorf("identity = %+v", identity)
	}
	warehouse, _ := top.Processor("warehouse")
	if !slices.Equal(warehouse.Sinks, []string{"clickhouse"}) || len(warehouse.Inputs) != 5 || !slices.Equal(warehouse.Outputs, []string{"events.dlq"}) {
		t.Errorf("warehouse = %+v", warehouse)
	}
	api, _ := top.Processor("api")
	if len(api.Inputs) != 0 || !slices.Equal(api.Serves, []string{"http"}) {
		t.Errorf("api = %+v", api)
	}
}

// TestDefaultYAMLRoundTrips checks that the file `cdp topology default`
// prints is the one Default parses, so a user's copy starts out valid.
func TestDefaultYAMLRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(path, topology.DefaultYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	top, err := topology.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(top.Topics) != len(mustDefault(t).Topics) {
		t.Errorf("loaded %d topics", len(top.Topics))
	}
}

func TestMermaidGolden(t *testing.T) {
	got := mustDefault(t).Mermaid()
	golden := filepath.Join("testdata", "default.mmd")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./topology/ -run TestMermaidGolden -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("Mermaid output differs from %s (rerun with -update if the change is intended):\n%s", golden, got)
	}
}

func TestMermaidEdges(t *testing.T) {
	got := mustDefault(t).Mermaid()
	if !strings.HasPrefix(got, "flowchart LR\n") {
		t.Fatalf("does not start with flowchart LR:\n%s", got)
	}
	for _, line := range []string{
		`topic_events_raw[["events.raw"]]`,
		`proc_identity("identity")`,
		`ext_redis[("Redis")]`,
		"producers --> topic_events_raw",
		"topic_events_raw --> proc_identity",
		"proc_identity --> topic_events_dlq",
		"proc_identity -.- ext_redis",
		"topic_segments_membership --> proc_warehouse",
		"proc_warehouse --> ext_clickhouse",
		"proc_api -->|http| ext_http",
	} {
		if !strings.Contains(got, "    "+line+"\n") {
			t.Errorf("Mermaid lacks %q:\n%s", line, got)
		}
	}
	// Only events.raw comes from outside the graph.
	if n := strings.Count(got, "producers -->"); n != 1 {
		t.Errorf("%d edges from producers, want 1", n)
	}
}

func TestText(t *testing.T) {
	got := mustDefault(t).Text("acme")
	for _, row := range [][]string{
		{"events.resolved", "acme.events.resolved", "6", "7d", "delete", "profile_id"},
		{"segments.membership", "acme.segments.membership", "3", "infinite", "compact"},
		{"identity", "acme-identity", "events.raw", "events.resolved, identity.merges, events.dlq", "redis"},
		{"api", "-", "-", "-", "redis", "-", "http"},
	} {
		found := false
		for line := range strings.SplitSeq(got, "\n") {
			if fieldsInOrder(line, row) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no line with %q in:\n%s", row, got)
		}
	}
}

// fieldsInOrder reports whether line starts with row[0] and holds the other
// cells in order.
func fieldsInOrder(line string, row []string) bool {
	if !strings.HasPrefix(line, row[0]+" ") {
		return false
	}
	rest := line[len(row[0]):]
	for _, cell := range row[1:] {
		i := strings.Index(rest, cell)
		if i < 0 {
			return false
		}
		rest = rest[i+len(cell):]
	}
	return true
}
