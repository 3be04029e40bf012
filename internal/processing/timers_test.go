package processing_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// timerProc schedules timers from setup records "n start-ms span-ms":
// timers t0..t(n-1) due evenly over [start, start+span). A fired timer
// emits "key due-ms fired-ms" and counts itself in the store.
type timerProc struct{ out string }

func (p *timerProc) NewTask(processing.TopicPartition) (processing.Task, error) {
	return &timerTask{p: p}, nil
}

type timerTask struct{ p *timerProc }

func (t *timerTask) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *timerTask) Close(processing.CloseReason)                        {}

func (t *timerTask) Process(_ context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	for _, rec := range recs {
		f := strings.Fields(string(rec.Value))
		if len(f) != 3 {
			return fmt.Errorf("setup record %q", rec.Value)
		}
		n, _ := strconv.Atoi(f[0])
		start, _ := strconv.ParseInt(f[1], 10, 64)
		span, _ := strconv.ParseInt(f[2], 10, 64)
		for i := range n {
			tc.SetTimer(fmt.Sprintf("%s-t%d", rec.Key, i), time.UnixMilli(start+span*int64(i)/int64(n)))
		}
	}
	return nil
}

func (t *timerTask) OnTimer(_ context.Context, tc *processing.TaskContext, due []processing.Timer) error {
	now := time.Now().UnixMilli()
	for _, d := range due {
		tc.Write("HINCRBY", tc.Key("fired"), d.Key, 1)
		tc.Emit(&kgo.Record{Topic: t.p.out, Key: []byte(d.Key), Value: []byte(fmt.Sprintf("%s %d %d", d.Key, d.At.UnixMilli(), now))})
	}
	return nil
}

type firing struct {
	key         string
	due, fired  int64
	occurrences int
}

func readFirings(t *testing.T, env *testkit.Env, topic string, want int, within time.Duration) map[string]*firing {
	t.Helper()
	seen := readCommitted(t, env, topic, want, within)
	out := map[string]*firing{}
	for v, c := range seen {
		f := strings.Fields(v)
		due, _ := strconv.ParseInt(f[1], 10, 64)
		fired, _ := strconv.ParseInt(f[2], 10, 64)
		if x, ok := out[f[0]]; ok {
			x.occurrences += c
			continue
		}
		out[f[0]] = &firing{key: f[0], due: due, fired: fired, occurrences: c}
	}
	return out
}

// TestTimersFireOnTimeWithoutTraffic schedules 1,000 timers due over 10 s
// from one record and sends nothing else: every timer must fire once,
// within 1 s of its due time (see checkFirings for the bound under load).
func TestTimersFireOnTimeWithoutTraffic(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in := env.Topic(t, "in", 1)
	out := env.Topic(t, "out", 2)
	start := time.Now().Add(2 * time.Second).UnixMilli()
	cl := env.Kafka(t)
	if err := cl.ProduceSync(testkit.Context(t), &kgo.Record{Topic: in, Key: []byte("a"), Value: []byte(fmt.Sprintf("1000 %d 10000", start))}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, env, "timers", in)
	cfg.Journal = newJournal(env, rdb, "timers")
	m := processing.NewMetrics(nil)
	cfg.Metrics = m
	r := mustRunner(t, cfg, &timerProc{out: out})
	ctx, stop := context.WithCancel(context.Background())
	var rs runners
	rs.start(ctx, r)
	firings := readFirings(t, env, out, 1000, 40*time.Second)
	stop()
	for _, err := range rs.wait() {
		t.Error(err)
	}
	checkFirings(t, firings, 1000, nil)
}

// checkFirings asserts n timers fired exactly once, and that those not due
// within the skip interval fired within a second of their due time.
func checkFirings(t *testing.T, firings map[string]*firing, n int, skip func(due int64) bool) {
	t.Helper()
	if len(firings) != n {
		t.Errorf("%d timers fired, want %d", len(firings), n)
	}
	var late []time.Duration
	skipped := 0
	for _, f := range firings {
		if f.occurrences != 1 {
			t.Errorf("timer %s fired %d times", f.key, f.occurrences)
		}
		if skip != nil && skip(f.due) {
			skipped++
			continue
		}
		late = append(late, time.Duration(f.fired-f.due)*time.Millisecond)
	}
	slices.Sort(late)
	if len(late) == 0 {
		t.Fatal("no timer to measure")
	}
	p := func(q float64) time.Duration { return late[int(q*float64(len(late)-1))] }
	t.Logf("%d timers: lateness p50 %s p99 %s max %s (%d due during the restart not measured)", len(late), p(.5), p(.99), late[len(late)-1], skipped)
	// Within a second is the requirement; a machine loaded far past its
	// two cores (CI runs packages side by side) can stall the process for a
	// moment, so the bound is on 99% of the timers, and nothing may be
	// seconds late.
	onTime := 0
	for _, d := range late {
		if d <= time.Second {
			onTime++
		}
	}
	if share := float64(onTime) / float64(len(late)); share < 0.99 {
		t.Errorf("%.1f%% of the timers fired within 1s of their due time, want at least 99%%", 100*share)
	}
	if worst := late[len(late)-1]; worst > 5*time.Second {
		t.Errorf("a timer fired %s after its due time", worst)
	}
	if first := late[0]; first < 0 {
		t.Errorf("a timer fired %s before its due time", -first)
	}
}

// TestTimersExactlyOnceAcrossSIGKILL runs the timer processor in a child
// process, kills it with SIGKILL half way through 1,000 timers due over
// 10 s, and restarts it under the same instance id. Every timer must fire
// exactly once (outputs read_committed, effects in the store); those due
// while the processor was running must fire within 1 s.
func TestTimersExactlyOnceAcrossSIGKILL(t *testing.T) {
	env := testkit.New(t)
	rdb := env.Redis(t)
	in := env.Topic(t, "in", 1)
	out := env.Topic(t, "out", 2)
	start := time.Now().Add(4 * time.Second).UnixMilli()
	cl := env.Kafka(t)
	if err := cl.ProduceSync(testkit.Context(t), &kgo.Record{Topic: in, Key: []byte("a"), Value: []byte(fmt.Sprintf("1000 %d 10000", start))}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec{Kind: "timers", Brokers: env.Services.KafkaBrokers, RedisURL: env.Services.RedisURL, Prefix: env.RedisPrefix(),
		Group: env.Services.Topic("timers"), Inputs: []string{in}, Out: out, Instance: env.ID + "-timers", Static: true}
	logPath := filepath.Join(t.TempDir(), "timers.log")
	c := startChild(t, spec, logPath)
	time.Sleep(time.Until(time.UnixMilli(start + 5000)))
	c.signal(syscall.SIGKILL)
	killed := time.Now()
	_ = c.cmd.Wait()
	startChild(t, spec, logPath)
	// The restarted process is back when it fires again.
	firings := readFirings(t, env, out, 1000, 60*time.Second)
	var resumed int64
	for _, f := range firings {
		if f.fired > killed.UnixMilli() && (resumed == 0 || f.fired < resumed) {
			resumed = f.fired
		}
	}
	t.Logf("killed at +%s, first firing after the restart at +%s", killed.Sub(time.UnixMilli(start)), time.UnixMilli(resumed).Sub(time.UnixMilli(start)))
	checkFirings(t, firings, 1000, func(due int64) bool { return due >= killed.UnixMilli() && due <= resumed })
	eff := effects2(t, env, rdb, "fired")
	if len(eff) != 1000 {
		t.Errorf("store counted %d timers, want 1000", len(eff))
	}
	for k, n := range eff {
		if n != 1 {
			t.Errorf("store counted timer %s %d times", k, n)
		}
	}
	if t.Failed() {
		t.Logf("child log:\n%s", tailFile(logPath, 40))
	}
}
