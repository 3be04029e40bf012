package topology_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/topology"
)

// TestApply runs Apply against the real broker: create everything, change
// nothing the second time, grow partitions and change a config when the data
// says so, and refuse to shrink.
func TestApply(t *testing.T) {
	env := testkit.New(t)
	adm := env.Admin(t)
	ctx := testkit.Context(t)
	prefix := env.Services.TopicPrefix

	top := mustDefault(t)
	var physical []string
	for _, tp := range top.Topics {
		physical = append(physical, topology.Physical(prefix, tp.Name))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, physical...); err != nil {
			t.Logf("deleting test topics: %v", err)
		}
	})

	// A dry run on an empty namespace plans one create per topic and
	// creates nothing.
	plan, err := top.Plan(ctx, adm, prefix)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if len(plan) != len(top.Topics) {
		t.Fatalf("plan has %d changes, want %d creates: %v", len(plan), len(top.Topics), plan)
	}
	assertMissing(ctx, t, adm, physical)

	changes, err := top.Apply(ctx, adm, prefix)
	if err != nil {
		t.Fatalf("first Apply: %v", err)
	}
	if len(changes) != len(top.Topics) {
		t.Fatalf("first Apply made %d changes, want %d: %v", len(changes), len(top.Topics), changes)
	}
	for i, c := range changes {
		if c.Action != topology.CreateTopic || c.Topic != physical[i] || c.Replication < 1 {
			t.Errorf("change %d = %+v, want create of %s", i, c, physical[i])
		}
	}
	assertMatches(ctx, t, adm, prefix, top)

	changes, err = top.Apply(ctx, adm, prefix)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if len(changes) != 0 {
		t.Fatalf("second Apply made changes, want none: %v", changes)
	}

	// Grow events.raw and shorten its retention in the data.
	raw := &top.Topics[0]
	rawName := physical[0]
	raw.Partitions += 2
	raw.Retention = "2d"
	plan, err = top.Plan(ctx, adm, prefix)
	if err != nil {
		t.Fatalf("Plan after growing: %v", err)
	}
	want := []string{
		"add partitions to " + rawName + ": 6 -> 8",
		"set " + rawName + " retention.ms: 604800000 -> 172800000",
	}
	if got := changeStrings(plan); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan = %q, want %q", got, want)
	}
	changes, err = top.Apply(ctx, adm, prefix)
	if err != nil {
		t.Fatalf("Apply after growing: %v", err)
	}
	if got := changeStrings(changes); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes = %q, want %q", got, want)
	}
	assertMatches(ctx, t, adm, prefix, top)
	if changes, err := top.Apply(ctx, adm, prefix); err != nil || len(changes) != 0 {
		t.Errorf("Apply after growing, again: %v, %v; want no changes", changes, err)
	}

	// Shrinking is refused, names the topic and both counts, and changes
	// nothing else in the same run.
	raw.Partitions = 4
	raw.Retention = "3d"
	changes, err = top.Apply(ctx, adm, prefix)
	if err == nil {
		t.Fatalf("Apply with fewer partitions succeeded: %v", changes)
	}
	for _, frag := range []string{"topic " + rawName, "has 8 partitions", "declares 4", "cannot remove partitions"} {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("shrink error %q lacks %q", err, frag)
		}
	}
	if len(changes) != 0 {
		t.Errorf("shrink made changes: %v", changes)
	}
	raw.Partitions, raw.Retention = 8, "2d"
	assertMatches(ctx, t, adm, prefix, top)

	if _, err := top.Plan(ctx, adm, prefix, topology.WithReplicationFactor(1000)); err == nil ||
		!strings.Contains(err.Error(), "replication factor 1000 is impossible") {
		t.Errorf("Plan with replication 1000: %v", err)
	}
	long := strings.Repeat("p", 240)
	if _, err := top.Plan(ctx, adm, long); err == nil || !strings.Contains(err.Error(), "Kafka allows at most 249") {
		t.Errorf("Plan with a %d-character prefix: %v", len(long), err)
	}
}

// assertMissing fails unless none of the topics exist.
func assertMissing(ctx context.Context, t *testing.T, adm *kadm.Client, topics []string) {
	t.Helper()
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), topics...) // uncached, see Plan
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	for _, name := range topics {
		if d, ok := details[name]; ok && d.Err == nil {
			t.Errorf("topic %s exists after a dry run", name)
		}
	}
}

// assertMatches checks the partitions and every declared config of each
// topic on the broker.
func assertMatches(ctx context.Context, t *testing.T, adm *kadm.Client, prefix string, top *topology.Topology) {
	t.Helper()
	var names []string
	for _, tp := range top.Topics {
		names = append(names, topology.Physical(prefix, tp.Name))
	}
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...) // uncached, see Plan
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs: %v", err)
	}
	for i, tp := range top.Topics {
		name := names[i]
		d, ok := details[name]
		if !ok || d.Err != nil {
			t.Errorf("topic %s: missing (%v)", name, d.Err)
			continue
		}
		if got := len(d.Partitions); got != int(tp.Partitions) {
			t.Errorf("topic %s has %d partitions, want %d", name, got, tp.Partitions)
		}
		rc, err := configs.On(name, nil)
		if err != nil || rc.Err != nil {
			t.Errorf("configs of %s: %v %v", name, err, rc.Err)
			continue
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		ms, _ := tp.Retention.Millis()
		want := map[string]string{"retention.ms": strconv.FormatInt(ms, 10), "cleanup.policy": tp.CleanupPolicy()}
		for k, v := range tp.Config {
			want[k] = v
		}
		for k, v := range want {
			if have[k] != v {
				t.Errorf("topic %s: %s = %q, want %q", name, k, have[k], v)
			}
		}
	}
}

func changeStrings(cs []topology.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}
