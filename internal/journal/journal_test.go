package journal_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

func randomRecords(r *rand.Rand) []*kgo.Record {
	bs := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return b
	}
	recs := make([]*kgo.Record, r.IntN(5))
	for i := range recs {
		rec := &kgo.Record{Topic: string(bs(r.IntN(12))), Value: bs(r.IntN(300)), Timestamp: time.UnixMilli(r.Int64N(4e12) - 1e12)}
		switch r.IntN(3) {
		case 0: // nil key
		case 1:
			rec.Key = []byte{}
		default:
			rec.Key = bs(1 + r.IntN(20))
		}
		for range r.IntN(3) {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: string(bs(r.IntN(8))), Value: bs(r.IntN(8))})
		}
		recs[i] = rec
	}
	return recs
}

// TestRecordsRoundTrip: what is journaled decodes to the same records,
// nil keys staying nil (a null key partitions differently from an empty
// one).
func TestRecordsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		recs := randomRecords(r)
		got, err := journal.DecodeRecords(journal.EncodeRecords(recs))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(got) != len(recs) {
			t.Fatalf("case %d: %d records back, want %d", i, len(got), len(recs))
		}
		for k, want := range recs {
			g := got[k]
			if g.Topic != want.Topic || !bytes.Equal(g.Value, want.Value) || (g.Key == nil) != (want.Key == nil) || !bytes.Equal(g.Key, want.Key) ||
				!g.Timestamp.Equal(want.Timestamp) || len(g.Headers) != len(want.Headers) {
				t.Fatalf("case %d record %d: got %+v, want %+v", i, k, g, want)
			}
			for h := range want.Headers {
				if g.Headers[h].Key != want.Headers[h].Key || !bytes.Equal(g.Headers[h].Value, want.Headers[h].Value) {
					t.Fatalf("case %d record %d header %d differs", i, k, h)
				}
			}
		}
	}
}

// FuzzDecodeRecords: no input makes the decoder panic or allocate without
// bound, and what it accepts encodes back to the same bytes.
func FuzzDecodeRecords(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(journal.EncodeRecords(randomRecords(r)))
	}
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := journal.DecodeRecords(b)
		if err != nil || len(b) == 0 {
			return
		}
		if again := journal.EncodeRecords(recs); !bytes.Equal(again, b) {
			// Varints have one canonical form each, so an accepted input is
			// the encoding of what it decodes to.
			t.Fatalf("%x decoded and encoded again to %x", b, again)
		}
	})
}

func TestScriptKeepsTheShebangFirst(t *testing.T) {
	s := journal.Script("#!lua flags=no-writes\nreturn 1\n")
	if !strings.HasPrefix(s, "#!lua flags=no-writes\n") || !strings.Contains(s, "function J.begin") || !strings.HasSuffix(s, "return 1\n") {
		t.Fatalf("Script with a shebang:\n%s", s)
	}
	if s := journal.Script("return 2"); !strings.HasPrefix(s, "-- The journal library") {
		t.Fatalf("Script without a shebang starts %q", s[:40])
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want error
	}{
		{"ERR user_script:12: FENCED: partition epoch is 3, this writer has 2", processing.ErrFenced},
		{"ERR user_script:15: DIVERGED: the journal is at step 4, this writer expected 5", processing.ErrDiverged},
		{"dial tcp: connection refused", nil},
	} {
		err := journal.Classify(errors.New(tc.msg))
		if tc.want == nil {
			if errors.Is(err, processing.ErrFenced) || errors.Is(err, processing.ErrDiverged) {
				t.Errorf("%q classified as %v", tc.msg, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%q classified as %v, want %v", tc.msg, err, tc.want)
		}
	}
}

// TestStepsTimersAndTrimming drives the Redis journal as the runtime
// does: steps with writes and timers, timers moving between clocks and
// firing, entries trimmed once committed, and every refusal leaving the
// store as it was.
func TestStepsTimersAndTrimming(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	ctx := testkit.Context(t)
	j := journal.New(rdb, env.RedisPrefix(), "test")
	tp := processing.TopicPartition{Topic: "in", Partition: 3}
	st, err := j.Open(ctx, tp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Exists || st.Epoch != 1 || st.Seq != 0 || st.Applied != -1 || len(st.Pending) != 0 {
		t.Fatalf("fresh journal: %+v", st)
	}
	key := j.Key(tp, "count")
	t0 := time.UnixMilli(1_800_000_000_000)
	out := []*kgo.Record{{Topic: "out", Key: []byte("k"), Value: []byte("v1"), Timestamp: t0}}
	step1 := &processing.Step{Kind: processing.StepRecords, Seq: 1, PrevSeq: 0, Epoch: st.Epoch, First: 10, Last: 12, Position: 10,
		Outputs: out, Writes: []processing.Write{{Cmd: "HINCRBY", Key: key, Args: []any{"n", 3}}},
		SetTimers: []processing.Timer{{Key: "a", At: t0.Add(time.Second), Kind: processing.WallClock}, {Key: "b", At: t0.Add(2 * time.Second), Kind: processing.StreamTime}}}
	if err := j.Apply(ctx, tp, step1); err != nil {
		t.Fatal(err)
	}
	// Move "a" to stream time and "b" to the wall clock, cancel nothing.
	step2 := &processing.Step{Kind: processing.StepRecords, Seq: 2, PrevSeq: 1, Epoch: st.Epoch, First: 13, Last: 13, Position: 13,
		SetTimers: []processing.Timer{{Key: "a", At: t0.Add(3 * time.Second), Kind: processing.StreamTime}, {Key: "b", At: t0.Add(500 * time.Millisecond), Kind: processing.WallClock}}}
	if err := j.Apply(ctx, tp, step2); err != nil {
		t.Fatal(err)
	}
	due, nw, ns, err := j.DueTimers(ctx, tp, t0.Add(time.Second).UnixMilli(), t0.Add(time.Second).UnixMilli(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].Key != "b" || due[0].Kind != processing.WallClock || nw != 0 || ns != t0.Add(3*time.Second).UnixMilli() {
		t.Fatalf("due timers %+v, next wall %d stream %d", due, nw, ns)
	}
	fire := &processing.Step{Kind: processing.StepTimers, Seq: 3, PrevSeq: 2, Epoch: st.Epoch, First: -1, Last: -1, Position: 14, Fired: due,
		Outputs: []*kgo.Record{{Topic: "out", Value: []byte("fired b")}}}
	if err := j.Apply(ctx, tp, fire); err != nil {
		t.Fatal(err)
	}

	// Reopened with step 1 committed: steps 2 and 3 are pending, with their
	// outputs; the timer that fired is gone; the writes are there once.
	st2, err := j.Open(ctx, tp, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Epoch != 2 || st2.Seq != 3 || st2.Applied != 13 || len(st2.Pending) != 2 || st2.NextTimer != 0 || st2.NextStreamTimer != t0.Add(3*time.Second).UnixMilli() {
		t.Fatalf("reopened: %+v", st2)
	}
	if p := st2.Pending[1]; p.Kind != processing.StepTimers || p.Position != 14 || len(p.Outputs) != 1 || string(p.Outputs[0].Value) != "fired b" {
		t.Fatalf("pending timer entry %+v", p)
	}
	if n, _ := rdb.XLen(ctx, j.Keys(tp)[1]).Result(); n != 2 {
		t.Errorf("%d entries kept after the commit of step 1, want 2", n)
	}
	if v, _ := rdb.HGet(ctx, key, "n").Int(); v != 3 {
		t.Errorf("write applied %d, want 3", v)
	}

	// Refusals: the old epoch, a broken chain, an applied offset.
	before := dumpKeys(t, env)
	for name, s := range map[string]*processing.Step{
		"old epoch":      {Kind: processing.StepRecords, Seq: 4, PrevSeq: 3, Epoch: st.Epoch, First: 20, Last: 20},
		"broken chain":   {Kind: processing.StepRecords, Seq: 4, PrevSeq: 2, Epoch: st2.Epoch, First: 20, Last: 20},
		"applied offset": {Kind: processing.StepRecords, Seq: 4, PrevSeq: 3, Epoch: st2.Epoch, First: 13, Last: 14},
	} {
		s.Writes = []processing.Write{{Cmd: "HINCRBY", Key: key, Args: []any{"n", 100}}}
		err := j.Apply(ctx, tp, s)
		want := processing.ErrDiverged
		if name == "old epoch" {
			want = processing.ErrFenced
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	if after := dumpKeys(t, env); !reflect.DeepEqual(before, after) {
		t.Errorf("refused steps changed the store:\n%v\n%v", before, after)
	}
}

func dumpKeys(t *testing.T, env *testkit.Env) map[string]string {
	t.Helper()
	rdb := env.Redis(t)
	ctx := context.Background()
	out := map[string]string{}
	keys, err := rdb.Keys(ctx, env.RedisPrefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// TestReceiptsRoundTrip journals a Replayer's receipts with J.receipt and
// reads them back with Open, byte for byte.
func TestReceiptsRoundTrip(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	ctx := testkit.Context(t)
	j := journal.New(rdb, env.RedisPrefix(), "receipts")
	tp := processing.TopicPartition{Topic: "in", Partition: 0}
	st, err := j.Open(ctx, tp, 0)
	if err != nil {
		t.Fatal(err)
	}
	script := redis.NewScript(journal.Script(`
local i = J.begin(1, 1)
for k = i, #ARGV, 2 do J.receipt(ARGV[k], ARGV[k + 1]) end
J.finish()
return 1`))
	steps := []map[int64]string{
		{10: "P1\x1fa,b", 11: "", 12: "D", 13: "P2\x1e M\x1fx:y"},
		{20: "has a \x00 NUL byte", 21: "P3"},
		{30: "P4"},
	}
	for i, want := range steps {
		s := &processing.Step{Kind: processing.StepRecords, Seq: int64(i + 1), PrevSeq: int64(i), Epoch: st.Epoch,
			First: int64(10 * (i + 1)), Last: int64(10*(i+1) + len(want) - 1), Position: int64(10 * (i + 1))}
		args := journal.StepArgs(s)
		for off := s.First; off <= s.Last; off++ {
			args = append(args, off, want[off])
		}
		if err := script.Run(ctx, rdb, j.Keys(tp), args...).Err(); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
	reopened, err := j.Open(ctx, tp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(reopened.Pending) != len(steps) {
		t.Fatalf("%d pending entries, want %d", len(reopened.Pending), len(steps))
	}
	for i, e := range reopened.Pending {
		got := map[int64]string{}
		for off, r := range e.Receipts {
			got[off] = string(r)
		}
		if !reflect.DeepEqual(got, steps[i]) {
			t.Errorf("step %d receipts %v, want %v", i+1, got, steps[i])
		}
	}
}
