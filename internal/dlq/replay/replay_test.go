package replay

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

type dlqFixture struct {
	code, stage string
	age         time.Duration // how long ago it was dead-lettered
}

// fillDLQ writes dead-letter records for fixtures in one transaction (as
// the processors do, so the topic ends with a commit marker) plus, with
// junk, one record that is not in the dead-letter format. The value of
// fixture i is "v-<code>-<i>", read from raw partition i%2 at offset 100+i.
func fillDLQ(t *testing.T, env *testkit.Env, dlqTopic, rawTopic string, fixtures []dlqFixture, first int, junk bool) []string {
	t.Helper()
	ctx := testkit.Context(t)
	cl := env.Kafka(t, kgo.TransactionalID("fill-"+dlqTopic+fmt.Sprint(first)), kgo.DefaultProduceTopic(dlqTopic))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var values []string
	for j, f := range fixtures {
		i := first + j
		src := &kgo.Record{
			Topic: rawTopic, Partition: int32(i % 2), Offset: int64(100 + i),
			Key: fmt.Appendf(nil, "user-%d", i), Value: fmt.Appendf(nil, "v-%s-%d", f.code, i),
			Headers:   []kgo.RecordHeader{{Key: "trace", Value: fmt.Appendf(nil, "t-%d", i)}},
			Timestamp: now.Add(-f.age),
		}
		rec := dlq.New(src, dlqTopic, dlq.Failure{Code: f.code, Stage: f.stage, Reason: fmt.Sprintf("%s reason %d", f.code, i%4)}, now.Add(-f.age))
		values = append(values, string(src.Value))
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if junk {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("not a dead letter")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	return values
}

// Old ones first: offsets-after-time assumes time order within a partition.
var dlqFixtures = []dlqFixture{
	{"missing_identifier", "validate", 2 * time.Hour},
	{"missing_identifier", "validate", 2 * time.Hour},
	{"missing_identifier", "validate", 0},
	{"bad_avro", "decode", 0},
	{"missing_identifier", "validate", 0},
	{"wrong_magic", "decode", 0},
	{"bad_avro", "decode", 0},
	{"missing_identifier", "validate", 0},
	{"wrong_magic", "decode", 0},
	{"bad_avro", "decode", 0},
}

func TestDLQInspectGroups(t *testing.T) {
	env := testkit.New(t)
	dlqTopic := env.Topic(t, "events.dlq", 2)
	raw := env.Topic(t, "events.raw", 2)
	fillDLQ(t, env, dlqTopic, raw, dlqFixtures, 0, true)
	ctx := testkit.Context(t)
	brokers := env.Services.KafkaBrokers

	type group struct {
		code, stage string
		count       int64
	}
	for _, tc := range []struct {
		name                  string
		opts                  InspectOptions
		read, matched, unread int64
		truncated             bool
		groups                []group
		entries               int
		entryCode             string
	}{
		{"all", InspectOptions{}, 11, 10, 1, false,
			[]group{{"missing_identifier", "validate", 5}, {"bad_avro", "decode", 3}, {"wrong_magic", "decode", 2}}, 0, ""},
		{"since 1h", InspectOptions{Since: time.Hour}, 9, 8, 1, false,
			[]group{{"bad_avro", "decode", 3}, {"missing_identifier", "validate", 3}, {"wrong_magic", "decode", 2}}, 0, ""},
		{"limit", InspectOptions{Limit: 4}, 4, 4, 0, true, nil, 0, ""},
		{"code and show", InspectOptions{Filter: Filter{Code: "wrong_magic"}, Show: 5}, 11, 2, 1, false,
			[]group{{"wrong_magic", "decode", 2}}, 2, "wrong_magic"},
		{"stage", InspectOptions{Filter: Filter{Stage: "decode"}, Show: 1}, 11, 5, 1, false,
			[]group{{"bad_avro", "decode", 3}, {"wrong_magic", "decode", 2}}, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Topic, tc.opts.Now = dlqTopic, time.Now()
			sum, err := Inspect(ctx, brokers, tc.opts)
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			if sum.Read != tc.read || sum.Matched != tc.matched || sum.Unreadable != tc.unread || sum.Truncated != tc.truncated {
				t.Errorf("read %d matched %d unreadable %d truncated %v; want %d %d %d %v",
					sum.Read, sum.Matched, sum.Unreadable, sum.Truncated, tc.read, tc.matched, tc.unread, tc.truncated)
			}
			if tc.groups != nil {
				var got []group
				for _, g := range sum.Groups {
					got = append(got, group{g.Code, g.Stage, g.Count})
					if g.Sources[raw] != g.Count || len(g.Sources) != 1 {
						t.Errorf("%s: sources %v, want all %d from %s", g.Code, g.Sources, g.Count, raw)
					}
					if len(g.Reasons) == 0 || len(g.Reasons) > MaxExamples || !strings.HasPrefix(g.Reasons[0], g.Code+" reason ") {
						t.Errorf("%s: reasons %q", g.Code, g.Reasons)
					}
					if len(g.At) != int(min(g.Count, MaxExamples)) || !strings.HasPrefix(g.At[0], raw+"/") {
						t.Errorf("%s: positions %q", g.Code, g.At)
					}
				}
				if !slices.Equal(got, tc.groups) {
					t.Errorf("groups %v, want %v", got, tc.groups)
				}
			}
			if len(sum.Entries) != tc.entries {
				t.Fatalf("%d entries, want %d", len(sum.Entries), tc.entries)
			}
			for _, e := range sum.Entries {
				if tc.entryCode != "" && e.Code != tc.entryCode {
					t.Errorf("entry %+v, want code %s", e, tc.entryCode)
				}
				if !strings.HasPrefix(e.Preview, `"v-`+e.Code) || !strings.HasPrefix(e.Key, "user-") {
					t.Errorf("entry preview %s key %q", e.Preview, e.Key)
				}
			}
		})
	}
}

// readTopic returns the values of every committed data record in topic.
func readTopic(t *testing.T, env *testkit.Env, topic string) map[string]*kgo.Record {
	t.Helper()
	ctx := testkit.Context(t)
	adm := kadm.NewClient(env.Kafka(t))
	ends, err := StableEnds(ctx, adm, topic)
	if err != nil {
		t.Fatal(err)
	}
	starts, err := StartOffsets(ctx, adm, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*kgo.Record{}
	err = Scan(ctx, env.Services.KafkaBrokers, topic, starts, ends, func(r *kgo.Record) bool {
		if out[string(r.Value)] != nil {
			t.Errorf("value %q is in %s twice", r.Value, topic)
		}
		out[string(r.Value)] = r
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDLQReplayOnceAndByCode(t *testing.T) {
	env := testkit.New(t)
	dlqTopic := env.Topic(t, "events.dlq", 2)
	raw := env.Topic(t, "events.raw", 2)
	values := fillDLQ(t, env, dlqTopic, raw, dlqFixtures, 0, true)
	ctx := testkit.Context(t)
	log := zaptest.NewLogger(t)
	prefix := "t" + env.ID + "-replay"

	replay := func(code string, dry bool) *Result {
		t.Helper()
		res, err := Run(ctx, env.Services.KafkaBrokers, Options{Topic: dlqTopic, Code: code, DryRun: dry, Group: prefix, Batch: 3, Logger: log})
		if err != nil {
			t.Fatalf("replay --code %q dry=%v: %v", code, dry, err)
		}
		return res
	}
	valuesOf := func(code string) []string {
		var out []string
		for _, v := range values {
			if code == "" || strings.HasPrefix(v, "v-"+code+"-") {
				out = append(out, v)
			}
		}
		return out
	}
	expectRaw := func(want []string) {
		t.Helper()
		got := readTopic(t, env, raw)
		var keys []string
		for v := range got {
			keys = append(keys, v)
		}
		slices.Sort(keys)
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(keys, want) {
			t.Fatalf("raw topic holds %v, want %v", keys, want)
		}
	}
	for _, step := range []struct {
		name                                 string
		code                                 string
		dry                                  bool
		read, replayed, skipped, other, junk int64
		raw                                  []string // raw topic content after the step
	}{
		{"dry run sends nothing", "bad_avro", true, 11, 3, 0, 7, 1, nil},
		{"replay one code", "bad_avro", false, 11, 3, 0, 7, 1, valuesOf("bad_avro")},
		{"again: nothing left for that code", "bad_avro", false, 0, 0, 0, 0, 0, valuesOf("bad_avro")},
		{"all codes skip the replayed ones", "", false, 11, 7, 3, 0, 1, valuesOf("")},
		{"all again: nothing", "", false, 0, 0, 0, 0, 0, valuesOf("")},
		{"a code never replayed alone was replayed by all", "wrong_magic", false, 11, 0, 2, 8, 1, valuesOf("")},
	} {
		t.Run(step.name, func(t *testing.T) {
			res := replay(step.code, step.dry)
			if res.Read != step.read || res.Replayed != step.replayed || res.Skipped != step.skipped || res.Other != step.other || res.Unreadable != step.junk {
				t.Errorf("read %d replayed %d skipped %d other %d unreadable %d; want %d %d %d %d %d",
					res.Read, res.Replayed, res.Skipped, res.Other, res.Unreadable,
					step.read, step.replayed, step.skipped, step.other, step.junk)
			}
			if step.replayed > 0 && res.ByTarget[raw] != step.replayed {
				t.Errorf("by target %v, want %d to %s", res.ByTarget, step.replayed, raw)
			}
			expectRaw(step.raw)
		})
	}

	// The replayed records are the originals plus the replay headers.
	for v, r := range readTopic(t, env, raw) {
		var i int
		fmt.Sscanf(v[strings.LastIndexByte(v, '-')+1:], "%d", &i)
		hdr := map[string]string{}
		for _, h := range r.Headers {
			hdr[h.Key] = string(h.Value)
		}
		if string(r.Key) != fmt.Sprintf("user-%d", i) || hdr["trace"] != fmt.Sprintf("t-%d", i) ||
			!strings.HasPrefix(hdr[HeaderReplayOf], dlqTopic+"/") || hdr[HeaderReplayTime] == "" || hdr[dlq.HeaderCode] != "" {
			t.Errorf("replayed %s: key %q headers %v", v, r.Key, hdr)
		}
	}

	// A new dead letter of a replayed code is replayed by the next run of
	// that code, once.
	values = append(values, fillDLQ(t, env, dlqTopic, raw, []dlqFixture{{"bad_avro", "decode", 0}}, len(values), false)...)
	if res := replay("bad_avro", false); res.Replayed != 1 || res.Read != 1 { // only the new one: the group is past the rest
		t.Errorf("new entry: read %d replayed %d, want 1 and 1", res.Read, res.Replayed)
	}
	if res := replay("", false); res.Replayed != 0 || res.Skipped != 1 {
		t.Errorf("all after new entry: replayed %d skipped %d, want 0 and 1", res.Replayed, res.Skipped)
	}
	expectRaw(values)
}

func TestReplayedBelow(t *testing.T) {
	rb := ReplayedBelow{"r": {0: 10}, "r.bad_avro": {0: 20, 1: 5}}
	for _, tc := range []struct {
		code      string
		partition int32
		offset    int64
		want      bool
	}{
		{"bad_avro", 0, 15, true},
		{"bad_avro", 0, 20, false},
		{"wrong_magic", 0, 9, true},
		{"wrong_magic", 0, 15, false},
		{"bad_avro", 1, 4, true},
		{"wrong_magic", 1, 0, false},
	} {
		if got := rb.Done("r", tc.code, tc.partition, tc.offset); got != tc.want {
			t.Errorf("done(%s, %d, %d) = %v, want %v", tc.code, tc.partition, tc.offset, got, tc.want)
		}
	}
}
