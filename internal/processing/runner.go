package processing

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Runner runs one Processor as one member of a consumer group.
type Runner struct {
	cfg  Config
	proc Processor
	log  *zap.Logger
	m    *Metrics
	lbl  string

	lc lifecycle

	joined  atomic.Bool
	lastErr atomic.Pointer[error]
}

// New validates cfg and returns a Runner.
func New(cfg Config, p Processor) (*Runner, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("processing: no Processor")
	}
	return &Runner{cfg: cfg, proc: p, log: cfg.Logger.With(zap.String("processor", cfg.Name)), m: cfg.Metrics, lbl: cfg.Name}, nil
}

// TransactionalID is the Kafka transactional id of this instance.
func (r *Runner) TransactionalID() string { return r.cfg.TransactionalID }

// Ready reports why the runner is not ready, or nil: it has joined its
// group, no partition is failing, and the journal's store answers.
func (r *Runner) Ready(ctx context.Context) error {
	if p := r.lastErr.Load(); p != nil {
		return fmt.Errorf("%s: %w", r.cfg.Name, *p)
	}
	if !r.joined.Load() {
		return fmt.Errorf("%s: not yet a member of consumer group %s", r.cfg.Name, r.cfg.Group)
	}
	if err := r.checkStores(ctx); err != nil {
		return fmt.Errorf("%s: %w", r.cfg.Name, err)
	}
	return nil
}

// Checker is implemented by processors whose stores can be probed (Ready,
// and telling an outage from a record's fault).
type Checker interface {
	Check(ctx context.Context) error
}

func (r *Runner) checkStores(ctx context.Context) error {
	if r.cfg.Journal != nil {
		if err := r.cfg.Journal.Check(ctx); err != nil {
			return err
		}
	}
	if c, ok := r.proc.(Checker); ok {
		return c.Check(ctx)
	}
	return nil
}

func (r *Runner) setErr(err error) {
	if err == nil {
		r.lastErr.Store(nil)
		r.m.Ready.WithLabelValues(r.lbl).Set(b2f(r.joined.Load()))
		return
	}
	r.lastErr.Store(&err)
	r.m.Ready.WithLabelValues(r.lbl).Set(0)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// errStop ends Run without an error (StopAt reached).
var errStop = errors.New("stop offsets reached")

// Run consumes until ctx ends, then commits the transaction in flight,
// closes its tasks and leaves the group. It returns an error only when
// continuing would be wrong: another instance uses the same transactional
// id (a real fence).
func (r *Runner) Run(ctx context.Context) error {
	r.m.Ready.WithLabelValues(r.lbl).Set(0)
	bo := newBackoff(r.cfg.MaxBackoff)
	for {
		err := r.session(ctx)
		r.joined.Store(false)
		r.m.Ready.WithLabelValues(r.lbl).Set(0)
		r.m.Tasks.WithLabelValues(r.lbl).Set(0)
		switch {
		case err == nil || errors.Is(err, errStop) || ctx.Err() != nil:
			r.log.Info("stopped")
			return nil
		case errors.Is(err, errRealFence):
			err = fmt.Errorf("%s: %w (is another instance running with --instance %q?)", r.cfg.Name, err, r.cfg.InstanceID)
			r.setErr(fmt.Errorf("stopped: %w", err)) // /readyz keeps saying so
			return err
		}
		r.setErr(err)
		r.m.Errors.WithLabelValues(r.lbl, "session").Inc()
		wait := bo.NextBackOff()
		r.log.Warn("Kafka session ended; starting a new one", zap.Error(err), zap.Duration("backoff", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func newBackoff(maxWait time.Duration) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = maxWait
	return bo
}

// errRealFence: the transactional id was taken by another producer.
var errRealFence = errors.New("transactional id fenced by another instance")

// lifecycle collects what the group's callbacks report; the polling
// goroutine applies it between steps, so no task ever runs concurrently
// with its own open or close.
type lifecycle struct {
	mu      sync.Mutex
	events  []lcEvent
	waiting bool // a rebalance is blocked on us
}

type lcEvent struct {
	tp     TopicPartition
	open   bool
	reason CloseReason
	offset int64 // committed offset; -1 none
	meta   string
}

func (l *lifecycle) add(evs ...lcEvent) {
	l.mu.Lock()
	l.events = append(l.events, evs...)
	l.mu.Unlock()
}

func (l *lifecycle) take() ([]lcEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs, w := l.events, l.waiting
	l.events, l.waiting = nil, false
	return evs, w
}

func (r *Runner) kafkaOpts() []kgo.Opt {
	closing := func(reason CloseReason) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			var evs []lcEvent
			for t, ps := range m {
				for _, p := range ps {
					evs = append(evs, lcEvent{tp: TopicPartition{t, p}, reason: reason})
				}
			}
			r.lc.add(evs...)
			if len(evs) > 0 {
				r.log.Info("partitions "+reason.String(), zap.Any("partitions", m))
			}
		}
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Inputs...),
		kgo.TransactionalID(r.cfg.TransactionalID),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		kgo.SessionTimeout(r.cfg.SessionTimeout),
		kgo.RebalanceTimeout(r.cfg.RebalanceTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Transaction markers come through so that the committed position
		// moves past them: a partition that is caught up then has no lag,
		// and a stop offset at the end of a transactional topic is reached.
		kgo.KeepControlRecords(),
		kgo.ProducerLinger(0),
		// A paused partition that resumes joins the next fetch to its broker
		// only when the one in flight returns: keep idle fetches short so a
		// retry is not held up for seconds.
		kgo.FetchMaxWait(500 * time.Millisecond),
		// Rebalances wait for the transaction in flight: no two members
		// process one partition at once while both are in the group.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.joined.Store(true)
			r.log.Info("partitions assigned", zap.Any("partitions", m))
		}),
		kgo.OnOffsetsFetched(func(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
			r.lc.add(fetchedEvents(resp)...)
			return nil
		}),
		kgo.OnPartitionsRevoked(closing(Revoked)),
		kgo.OnPartitionsLost(closing(Lost)),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) {
			r.lc.mu.Lock()
			r.lc.waiting = true
			r.lc.mu.Unlock()
		}),
	}
	if r.cfg.StaticMembership {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID))
	}
	return append(opts, r.cfg.KafkaOpts...)
}

// fetchedEvents turns an OffsetFetch response into open events, whichever
// version (per group or flat) the broker answered with.
func fetchedEvents(resp *kmsg.OffsetFetchResponse) []lcEvent {
	var evs []lcEvent
	add := func(topic string, p int32, off int64, meta *string) {
		ev := lcEvent{tp: TopicPartition{topic, p}, open: true, offset: off}
		if meta != nil {
			ev.meta = *meta
		}
		if ev.offset < 0 {
			ev.offset, ev.meta = -1, ""
		}
		evs = append(evs, ev)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			add(t.Topic, p.Partition, p.Offset, p.Metadata)
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				add(t.Topic, p.Partition, p.Offset, p.Metadata)
			}
		}
	}
	return evs
}

// commitMeta is what the runner keeps in a partition's offset commit
// metadata: how far its journal is committed and its stream time.
type commitMeta struct {
	seq        int64
	streamTime int64
}

const metaPrefix = "cdp/1"

func (m commitMeta) String() string {
	return metaPrefix + " s=" + strconv.FormatInt(m.seq, 10) + " t=" + strconv.FormatInt(m.streamTime, 10)
}

// parseMeta reads commit metadata; anything else (another client's member
// id, an older runtime) reads as zero.
func parseMeta(s string) commitMeta {
	var m commitMeta
	rest, ok := strings.CutPrefix(s, metaPrefix+" ")
	if !ok {
		return m
	}
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "s":
			m.seq = n
		case "t":
			m.streamTime = n
		}
	}
	return m
}

// session runs one GroupTransactSession until ctx ends (nil) or Kafka
// leaves it unusable (an error: Run starts a new session, which rewinds to
// the committed offsets).
func (r *Runner) session(ctx context.Context) (err error) {
	sess, err := kgo.NewGroupTransactSession(r.kafkaOpts()...)
	if err != nil {
		return fmt.Errorf("creating Kafka session: %w", err)
	}
	s := &session{r: r, sess: sess, tasks: map[TopicPartition]*ptask{}}
	defer func() {
		s.closeAll(Shutdown)
		sess.CloseAllowingRebalance()
	}()
	// Take the transactional id now: that fences a crashed predecessor and
	// aborts its open transaction at once. Otherwise its offsets, if it died
	// while committing, would hold the group's offset fetch up until the
	// broker's transaction timeout.
	ictx, cancel := context.WithTimeout(ctx, r.cfg.TransactionTimeout)
	_, _, err = sess.Client().ProducerID(ictx)
	cancel()
	if err != nil {
		return fmt.Errorf("initializing transactional id %s: %w", r.cfg.TransactionalID, err)
	}
	r.log.Info("consuming", zap.Strings("inputs", r.cfg.Inputs), zap.String("group", r.cfg.Group),
		zap.String("transactional_id", r.cfg.TransactionalID))
	return s.loop(ctx)
}

// session is the state of one Kafka session, owned by the polling
// goroutine.
type session struct {
	r     *Runner
	sess  *kgo.GroupTransactSession
	tasks map[TopicPartition]*ptask

	// the open transaction
	inTxn     bool
	txnStart  time.Time
	txnPolls  int
	txnRecs   int
	txnBytes  int64
	commitReq bool
	caughtUp  bool // the last poll came back short: the input is drained
	prodMu    sync.Mutex
	prodErr   error
	outCount  map[string]int
	inCount   map[string]int
	latencies []time.Time // append times of the records in the transaction

	fetchBO *backoff.ExponentialBackOff
}

func (s *session) loop(ctx context.Context) error {
	r := s.r
	s.fetchBO = newBackoff(r.cfg.MaxBackoff)
	for {
		if ctx.Err() != nil {
			return s.finish(ctx)
		}
		s.lifecycle(ctx)
		if !s.inTxn && s.stopReached() {
			return errStop
		}
		if s.inTxn && s.commitDue() {
			if err := s.commit(ctx); err != nil {
				return err
			}
			if s.stopReached() {
				return errStop
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, s.pollWait())
		fetches := s.sess.PollRecords(pctx, r.cfg.MaxPollRecords)
		cancel()
		if fetches.IsClientClosed() {
			return errors.New("the Kafka client was closed")
		}
		if ctx.Err() != nil {
			// The poll may have returned records we will not process: the
			// transaction in flight commits what was processed, and the
			// consumer position of those records is not committed (they
			// come again after a restart).
			s.rewindUnprocessed(fetches)
			return s.finish(ctx)
		}
		s.lifecycle(ctx)
		s.caughtUp = fetches.NumRecords() < r.cfg.MaxPollRecords
		work, fetchErrs := s.collect(fetches)
		if fetchErrs > 0 && len(work) == 0 {
			select { // no busy loop on a broker that only answers errors
			case <-ctx.Done():
			case <-time.After(s.fetchBO.NextBackOff()):
			}
		} else if fetchErrs == 0 {
			s.fetchBO.Reset()
		}
		if err := s.iterate(ctx, work); err != nil {
			return err
		}
		if !s.inTxn {
			// Any poll, even one that only timed out, holds rebalances off
			// until AllowRebalance; with no transaction open there is
			// nothing to protect.
			s.sess.AllowRebalance()
		}
	}
}

// pollWait is how long the next poll may block: until a timer is due, the
// transaction should commit, or TimerPoll.
func (s *session) pollWait() time.Duration {
	r := s.r
	now := r.cfg.Now()
	wait := r.cfg.TimerPoll
	if s.inTxn {
		wait = min(wait, max(time.Millisecond, r.cfg.CommitInterval-now.Sub(s.txnStart)))
	}
	for _, pt := range s.tasks {
		if pt.ready() && pt.nextTimer > 0 && len(pt.replay) == 0 {
			wait = min(wait, max(time.Millisecond, time.UnixMilli(pt.nextTimer).Sub(now)))
		}
		if pt.failed {
			wait = min(wait, max(time.Millisecond, pt.retryAt.Sub(now)))
		}
	}
	return wait
}

// collect groups polled records by partition. Records of a partition whose
// task is not open (it failed to open, or was closed by a callback after
// the fetch) are not processed: their consumer position is moved back so
// that the transaction does not commit past them.
func (s *session) collect(fetches kgo.Fetches) (map[*ptask][]*kgo.Record, int) {
	r := s.r
	errs := 0
	fetches.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return // the poll's own wait ended
		}
		errs++
		r.m.Errors.WithLabelValues(r.lbl, "fetch").Inc()
		r.log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
	})
	work := map[*ptask][]*kgo.Record{}
	rewind := map[string]map[int32]kgo.EpochOffset{}
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) == 0 {
			return
		}
		tp := TopicPartition{ftp.Topic, ftp.Partition}
		pt := s.tasks[tp]
		if pt == nil || !pt.ready() {
			if pt != nil && pt.position >= 0 {
				addOffset(rewind, tp, pt.position)
			} else {
				addOffset(rewind, tp, ftp.Records[0].Offset)
			}
			return
		}
		recs := ftp.Records
		if stop, ok := r.cfg.StopAt[tp]; ok {
			n := 0
			for n < len(recs) && recs[n].Offset < stop {
				n++
			}
			if n < len(recs) {
				addOffset(rewind, tp, recs[n].Offset)
				recs = recs[:n]
			}
			if n == 0 {
				return
			}
		}
		if ftp.HighWatermark > 0 {
			last := recs[len(recs)-1].Offset
			r.m.Lag.WithLabelValues(r.lbl, tp.Topic, strconv.Itoa(int(tp.Partition))).Set(float64(max(0, ftp.HighWatermark-last-1)))
		}
		work[pt] = append(work[pt], recs...)
	})
	if len(rewind) > 0 {
		s.sess.Client().SetOffsets(rewind)
	}
	return work, errs
}

func addOffset(m map[string]map[int32]kgo.EpochOffset, tp TopicPartition, off int64) {
	if m[tp.Topic] == nil {
		m[tp.Topic] = map[int32]kgo.EpochOffset{}
	}
	m[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
}

// rewindUnprocessed moves the consumer position of polled but unprocessed
// records back, so that a final commit does not cover them.
func (s *session) rewindUnprocessed(fetches kgo.Fetches) {
	rewind := map[string]map[int32]kgo.EpochOffset{}
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			addOffset(rewind, TopicPartition{ftp.Topic, ftp.Partition}, ftp.Records[0].Offset)
		}
	})
	if len(rewind) > 0 {
		s.sess.Client().SetOffsets(rewind)
	}
}

// lifecycle applies what the group callbacks reported: closes revoked and
// lost tasks, opens assigned ones, resumes partitions whose retry is due.
func (s *session) lifecycle(ctx context.Context) {
	r := s.r
	evs, waiting := r.lc.take()
	if waiting {
		s.commitReq = true
	}
	for _, ev := range evs {
		pt := s.tasks[ev.tp]
		if !ev.open {
			if pt != nil {
				s.closeTask(pt, ev.reason)
				delete(s.tasks, ev.tp)
			}
			continue
		}
		if pt != nil {
			s.closeTask(pt, Revoked)
		}
		meta := parseMeta(ev.meta)
		s.tasks[ev.tp] = &ptask{r: r, s: s, tp: ev.tp, committed: ev.offset, position: ev.offset,
			committedSeq: meta.seq, committedST: meta.streamTime, applied: -1, failOffset: -1, singleTo: -1,
			log: r.log.With(zap.Stringer("partition", ev.tp))}
	}
	now := r.cfg.Now()
	for _, pt := range s.sortedTasks() {
		switch {
		case pt.task == nil && !pt.failed:
			s.open(ctx, pt)
		case pt.failed && !now.Before(pt.retryAt):
			pt.failed = false
			if pt.task == nil {
				s.open(ctx, pt) // fails again, or the task is ready
			}
			if !pt.failed {
				s.resume(pt)
			}
		}
	}
	r.m.Tasks.WithLabelValues(r.lbl).Set(float64(len(s.tasks)))
	failing := 0
	for _, pt := range s.tasks {
		if pt.failed {
			failing++
		}
	}
	r.m.Paused.WithLabelValues(r.lbl).Set(float64(failing))
	if failing == 0 {
		r.setErr(nil)
	}
}

func (s *session) sortedTasks() []*ptask {
	out := make([]*ptask, 0, len(s.tasks))
	for _, pt := range s.tasks {
		out = append(out, pt)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].tp, out[j].tp
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return out
}

func (s *session) open(ctx context.Context, pt *ptask) {
	octx, cancel := context.WithTimeout(ctx, max(s.r.cfg.ProcessingTimeout, 30*time.Second))
	defer cancel()
	if err := pt.open(octx); err != nil {
		pt.closeTask(Aborted)
		s.fail(pt, fmt.Errorf("opening the task of %s: %w", pt.tp, err), -1)
	}
}

func (s *session) closeTask(pt *ptask, reason CloseReason) {
	pt.closeTask(reason)
	if pt.paused {
		s.resume(pt)
	}
	s.r.m.Lag.DeleteLabelValues(s.r.lbl, pt.tp.Topic, strconv.Itoa(int(pt.tp.Partition)))
}

func (s *session) closeAll(reason CloseReason) {
	for tp, pt := range s.tasks {
		s.closeTask(pt, reason)
		delete(s.tasks, tp)
	}
}

func (s *session) pause(pt *ptask) {
	if !pt.paused {
		s.sess.Client().PauseFetchPartitions(map[string][]int32{pt.tp.Topic: {pt.tp.Partition}})
		pt.paused = true
	}
}

func (s *session) resume(pt *ptask) {
	if pt.paused {
		s.sess.Client().ResumeFetchPartitions(map[string][]int32{pt.tp.Topic: {pt.tp.Partition}})
		pt.paused = false
	}
}

// fail pauses pt after a failure and schedules its retry. offset is the
// record that failed (-1: not a record's fault, or unknown).
func (s *session) fail(pt *ptask, err error, offset int64) {
	r := s.r
	transient := IsTransient(err)
	if !transient {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		transient = r.checkStores(cctx) != nil // a store is down: not the record's fault
		cancel()
	}
	if !transient && offset >= 0 {
		if offset == pt.failOffset {
			pt.attempts++
		} else {
			pt.failOffset, pt.attempts = offset, 1
		}
	}
	pt.failures++
	wait := pt.retryBackoff()
	pt.failed = true
	pt.retryAt = r.cfg.Now().Add(wait)
	s.pause(pt)
	r.setErr(err)
	r.m.Errors.WithLabelValues(r.lbl, "process").Inc()
	r.log.Warn("partition failed; paused, will retry", zap.Stringer("partition", pt.tp), zap.Error(err),
		zap.Bool("transient", transient), zap.Int64("record", offset), zap.Int("attempts", pt.attempts), zap.Duration("backoff", wait))
}

// finish commits the transaction in flight on shutdown.
func (s *session) finish(ctx context.Context) error {
	if s.inTxn {
		if err := s.commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// stopReached reports whether every StopAt partition committed its target.
func (s *session) stopReached() bool {
	if len(s.r.cfg.StopAt) == 0 {
		return false
	}
	for tp, target := range s.r.cfg.StopAt {
		pt := s.tasks[tp]
		// A partition that never had a commit is done when it starts at or
		// past its target.
		if pt == nil || pt.task == nil || (pt.committed < target && (pt.dirty || pt.position < target)) {
			return false
		}
	}
	return true
}

// classifyKafka turns an error from Kafka's transaction calls into what
// to do: a fence whose transaction is younger than the transaction timeout
// is another instance with our id; an older one is the broker having timed
// our transaction out, which a new session survives.
func (s *session) classifyKafka(err error) error {
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		age := s.r.cfg.Now().Sub(s.txnStart)
		if !s.txnStart.IsZero() && age >= s.r.cfg.TransactionTimeout*9/10 {
			return fmt.Errorf("transaction open for %s timed out at the broker (TransactionTimeout %s): %w", age.Round(time.Millisecond), s.r.cfg.TransactionTimeout, err)
		}
		return fmt.Errorf("%w: %w", errRealFence, err)
	}
	return err
}
