package identity_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/dlq/replay"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/topology"
)

// abortOnce wraps the identity processor so that the first Process call
// that journaled its records then fails: the transaction aborts with the
// decisions in the journal and nothing in Kafka.
type abortOnce struct {
	*identity.Processor
	done atomic.Bool
}

func (a *abortOnce) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	t, err := a.Processor.NewTask(tp)
	if err != nil {
		return nil, err
	}
	return &abortTask{Task: t, a: a}, nil
}

type abortTask struct {
	processing.Task
	a *abortOnce
}

func (t *abortTask) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	if err := t.Task.Process(ctx, tc, recs); err != nil {
		return err
	}
	if t.a.done.CompareAndSwap(false, true) {
		return errors.New("injected failure after the step was journaled")
	}
	return nil
}

func (t *abortTask) Replay(ctx context.Context, tc *processing.TaskContext, rec *kgo.Record, receipt []byte) error {
	return t.Task.(processing.Replayer).Replay(ctx, tc, rec, receipt)
}

// runIdentity runs one identity runner with spec's rules until stop.
func (s *stage) runIdentity(t *testing.T, svc config.Services, spec topology.IdentitySpec, wrap func(*identity.Processor) processing.Processor) (*identity.Processor, *processing.Metrics, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := processing.NewMetrics(nil)
	p, closeFn, err := identity.Open(ctx, svc, spec, m, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	var proc processing.Processor = p
	if wrap != nil {
		proc = wrap(p)
	}
	log := zap.NewNop()
	if os.Getenv("CDP_TEST_LOG") != "" {
		log, _ = zap.NewDevelopment()
	}
	r, err := processing.New(processing.Config{Name: "identity", Brokers: svc.KafkaBrokers, Group: s.group, Inputs: []string{s.raw},
		InstanceID: s.env.ID, Metrics: m, MaxBackoff: 200 * time.Millisecond, Journal: p.Journal(), DeadLetterTopic: s.dlqT, Logger: log}, proc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("runner: %v", err)
		}
	}()
	return p, m, func() { cancel(); wg.Wait() }
}

func (s *stage) deadLetters(t *testing.T) []dlq.Entry {
	t.Helper()
	var out []dlq.Entry
	for _, r := range s.readAll(t, s.dlqT) {
		e, err := dlq.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func withoutBlocking(t *testing.T) topology.IdentitySpec {
	spec := defaultSpec(t)
	spec.Blocked = nil
	return spec
}

// TestDeadLetterDecisionIsRepeatedAfterARuleChange: an event whose only
// identifier is blocked is dead-lettered, the transaction aborts after the
// decision was journaled, and the processor restarts with the block
// removed before the record comes again. The journaled decision is
// repeated (the rule change applies to new events, not to a replay): the
// record is dead-lettered once, not resolved, and the partition moves on.
// Then `cdp dlq replay --code no_usable_identifier` sends it again, and
// under the new rules it is resolved.
func TestDeadLetterDecisionIsRepeatedAfterARuleChange(t *testing.T) {
	s := newStage(t, 1)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	s.write(t, [][]byte{
		[]byte(`{"type":"identify","messageId":"before","userId":"u-1","timestamp":"` + now + `"}`),
		[]byte(`{"type":"identify","messageId":"flip","timestamp":"` + now + `","traits":{"email":"x@mailinator.com"}}`),
		[]byte(`{"type":"identify","messageId":"after","userId":"u-2","timestamp":"` + now + `"}`),
	})
	a := &abortOnce{}
	_, _, stop := s.runIdentity(t, s.env.Services, defaultSpec(t), func(p *identity.Processor) processing.Processor {
		a.Processor = p
		return a
	})
	waitUntil(t, 30*time.Second, "the first attempt journaled and aborted", a.done.Load)
	stop()

	// Restarted with the rule removed.
	_, m, stop := s.runIdentity(t, s.env.Services, withoutBlocking(t), nil)
	s.waitConsumed(t, time.Minute)
	stop()
	if got := testutil.ToFloat64(m.Replayed.WithLabelValues("identity")); got < 3 {
		t.Errorf("%.0f records replayed from the journal, want 3: the abort did not leave them applied", got)
	}
	resolved := s.resolvedByMessage(t)
	if len(resolved) != 2 || len(resolved["before"]) != 1 || len(resolved["after"]) != 1 || resolved["flip"] != nil {
		t.Fatalf("resolved after the restart: %v; want before and after once, flip not at all", resolved)
	}
	letters := s.deadLetters(t)
	if len(letters) != 1 || letters[0].Code != identity.CodeNoIdentifier || !strings.Contains(letters[0].Reason, "mailinator") {
		t.Fatalf("dead letters %+v; want the flip event once, code %s", letters, identity.CodeNoIdentifier)
	}

	// The operator replays it after the fix: resolved now, not a duplicate.
	res, err := replay.Run(testkit.Context(t), s.env.Services.KafkaBrokers, replay.Options{
		Topic: s.dlqT, Code: identity.CodeNoIdentifier, Group: s.env.Services.TopicPrefix + "-dlq-replay"})
	if err != nil || res.Replayed != 1 {
		t.Fatalf("dlq replay: %+v, %v", res, err)
	}
	_, m, stop = s.runIdentity(t, s.env.Services, withoutBlocking(t), nil)
	s.waitConsumed(t, time.Minute)
	stop()
	resolved = s.resolvedByMessage(t)
	if len(resolved["flip"]) != 1 {
		t.Fatalf("the replayed event: resolved %v times, want once (dropped as duplicate %.0f)", resolved["flip"],
			testutil.ToFloat64(m.Dropped.WithLabelValues("identity", "duplicate")))
	}
	if n := len(s.deadLetters(t)); n != 1 {
		t.Errorf("%d dead letters after the replay, want still 1", n)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisLosingItsLastWritesIsRepaired runs identity on a Redis with
// appendfsync everysec, SIGKILLs Redis under load and cuts its
// append-only file back to an earlier size, as a machine crash would lose
// the writes that were not yet fsynced. Kafka committed offsets for
// effects the store no longer has: the runtime must notice (the journal's
// chain breaks) and repair the store from Kafka. The graph must then equal
// that of an uninterrupted run, and every valid event be resolved exactly
// once.
//
// A SIGKILL of redis-server alone loses nothing with everysec (its writes
// are in the page cache); cutting the file is what makes the loss.
func TestRedisLosingItsLastWritesIsRepaired(t *testing.T) {
	t.Parallel() // its own Redis
	rds := startPrivateRedisWith(t, "everysec")
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 300, 10000, 21
	cfg.DupShare, cfg.InvalidShare = 0.02, 0.01
	lines, truth := generateLines(t, cfg)

	ref := newStage(t, 1)
	ref.write(t, lines)
	refProc, _, stop := ref.runIdentity(t, ref.env.Services, defaultSpec(t), nil)
	ref.waitConsumed(t, 2*time.Minute)
	stop()

	s := newStage(t, 1)
	svc := s.env.Services
	svc.RedisURL = rds.url()
	half := len(lines) / 2
	s.write(t, lines[:half])
	proc, m, stop := s.runIdentity(t, svc, defaultSpec(t), nil)
	defer stop()
	s.waitConsumed(t, time.Minute)
	adm := s.env.Admin(t)
	cut := rds.aofSize(t)
	before := s.committedTotal(t, adm)
	wrote := make(chan error, 1)
	go func() { wrote <- s.writeErr(testkit.Context(t), lines[half:]) }()
	waitUntil(t, 3*time.Minute, "the second half is being committed", func() bool { return s.committedTotal(t, adm) > before+2000 })
	rds.kill()
	lost := rds.truncateAOF(t, cut)
	t.Logf("Redis killed after %d records committed; its append-only file cut back by %d bytes, to where %d were", s.committedTotal(t, adm), lost, before)
	rds.start()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	s.waitConsumed(t, 2*time.Minute)
	stop()

	s.resolvedEachOnce(t, truth)
	a, b := grouping(t, refProc.Graph(), truth), grouping(t, proc.Graph(), truth)
	differ := 0
	for k, p := range a {
		if b[k] != p {
			if differ++; differ <= 3 {
				t.Errorf("identifier %s: profile %s uninterrupted, %s after the repair", k, p, b[k])
			}
		}
	}
	if !slices.Equal(partitionOf(a), partitionOf(b)) {
		t.Errorf("groupings differ")
	}
	if got := testutil.ToFloat64(m.Repaired.WithLabelValues("identity")); got == 0 {
		t.Errorf("no record repaired: the lost writes were not detected")
	} else {
		t.Logf("%.0f records applied again to repair the store", got)
	}
}

// aofSize is the size of the private Redis' incremental append-only file.
func (r *privateRedis) aofSize(t *testing.T) int64 {
	t.Helper()
	st, err := os.Stat(r.incrAOF(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func (r *privateRedis) incrAOF(t *testing.T) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(r.dir, "appendonlydir", "*.incr.aof"))
	if err != nil || len(m) != 1 {
		t.Fatalf("incremental AOF in %s: %v %v", r.dir, m, err)
	}
	return m[0]
}

func (r *privateRedis) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// truncateAOF cuts the incremental AOF back to size and returns how many
// bytes it dropped.
func (r *privateRedis) truncateAOF(t *testing.T, size int64) int64 {
	t.Helper()
	path := r.incrAOF(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(fmt.Errorf("truncating %s: %w", path, err))
	}
	return st.Size() - size
}

// TestFailureWithAChunkInFlight fails a Process call while it emits the
// outputs of its first chunk, when the next chunk's script call is already
// in flight (Process overlaps them): by an error, after which Process
// waits for the call, and by a panic, which the runtime recovers while the
// call may still run (the reopen's new journal epoch then fences it). The
// transaction aborts; after the reopen the applied records are replayed
// from the journal. Every valid event must come out resolved exactly once
// and every invalid one dead-lettered once.
func TestFailureWithAChunkInFlight(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run(map[bool]string{false: "error", true: "panic"}[panics], func(t *testing.T) {
			failureWithAChunkInFlight(t, panics)
		})
	}
}

func failureWithAChunkInFlight(t *testing.T, panics bool) {
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 100, 3500, 11
	cfg.DupShare, cfg.InvalidShare = 0.03, 0.02
	s := newStage(t, 1)
	_, truth := s.produce(t, cfg)
	var failed atomic.Bool
	_, m, stop := s.runIdentity(t, s.env.Services, defaultSpec(t), func(p *identity.Processor) processing.Processor {
		identity.SetEmitHook(p, func(offset int64) error {
			if offset == 500 && failed.CompareAndSwap(false, true) {
				if panics {
					panic("injected panic while emitting offset 500")
				}
				return errors.New("injected failure while emitting offset 500")
			}
			return nil
		})
		return p
	})
	s.waitConsumed(t, 2*time.Minute)
	stop()
	if !failed.Load() {
		t.Fatal("the failure was not injected")
	}
	// Offsets 0-999 are the failing call's first chunk; more replayed
	// records mean the chunk in flight was applied before the abort (with
	// a panic, it may also have been fenced: then it is processed again).
	replayed := testutil.ToFloat64(m.Replayed.WithLabelValues("identity"))
	if !panics && replayed <= 1000 {
		t.Errorf("%.0f records replayed from the journal, want more than the failed chunk's 1000", replayed)
	}
	if panics && replayed < 1000 {
		t.Errorf("%.0f records replayed from the journal, want at least the failed chunk's 1000", replayed)
	}
	s.resolvedEachOnce(t, truth)
	if n := len(s.deadLetters(t)); n != truth.Counts.Invalid {
		t.Errorf("%d dead letters, truth has %d invalid lines", n, truth.Counts.Invalid)
	}
}
