// Package processing is the consume-process-produce loop every StreamCDP
// processor runs on. One Runner is one member of a Kafka consumer group; per
// poll it
//
//  1. begins a Kafka transaction,
//  2. hands each partition's records to the Handler (in parallel across
//     partitions, in offset order within one),
//  3. produces the Handler's output records in that transaction, and
//  4. commits the input offsets in the same transaction (GroupTransactSession).
//
// So outputs read with read_committed reflect each input exactly once. When
// anything fails — a store is down, a produce fails, the group rebalances —
// the transaction aborts, the consumer rewinds to the last committed offsets
// and the same records come again after a backoff. Effects outside Kafka
// (Redis) must therefore be idempotent per (topic, partition, offset) and
// give the same outputs when replayed; the identity processor does this by
// storing the last applied offset atomically with each effect.
package processing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Handler turns one partition's input records into output records.
type Handler interface {
	// Process handles the records of one partition, in offset order, and
	// returns the records to produce (each with its Topic set). It runs
	// inside the transaction that commits the input offsets. When that
	// transaction aborts, the same records are processed again, so effects
	// outside Kafka must be idempotent per (topic, partition, offset) and
	// return the same outputs on replay. A returned error aborts the batch;
	// it is retried with backoff and no offsets are committed meanwhile.
	Process(ctx context.Context, topic string, partition int32, recs []*kgo.Record) ([]*kgo.Record, error)
}

// Committer is implemented by handlers that keep per-offset state until the
// transaction carrying it commits (for replays); Committed says that all
// records of the partition before next are committed.
type Committer interface {
	Committed(ctx context.Context, topic string, partition int32, next int64) error
}

// Checker is implemented by handlers whose stores can be probed; /readyz
// calls it.
type Checker interface {
	Check(ctx context.Context) error
}

// Config configures a Runner. Name, Brokers, Group and Inputs are required.
type Config struct {
	// Name is the processor's name, used in metrics, logs and the
	// transactional id.
	Name    string
	Brokers []string
	// Group is the consumer group; all instances of a processor share it.
	Group  string
	Inputs []string
	// InstanceID distinguishes instances of one processor. It must be
	// stable across restarts of the same instance and unique among running
	// ones: it names the transactional id, so a restarted instance fences
	// its crashed predecessor and aborts its open transaction at once
	// instead of after the transaction timeout. Default: the host name.
	InstanceID string
	// StaticMembership makes InstanceID the consumer group's static member
	// id (KIP-345) as well. A restarted instance then takes its partitions
	// back at once instead of waiting for its dead predecessor to time out
	// of the group, but an instance that stops for good keeps its partitions
	// until the session timeout. Use it when instance ids are stable
	// (a StatefulSet, a fixed --instance); `cdp run` turns it on when
	// --instance is given.
	StaticMembership bool
	// MaxPollRecords bounds one batch (default 5000).
	MaxPollRecords int
	// TransactionTimeout bounds how long a crashed instance's open
	// transaction blocks readers when no instance with the same InstanceID
	// restarts (default 30s).
	TransactionTimeout time.Duration
	// MaxBackoff caps the wait between retries of a failing batch
	// (default 5s).
	MaxBackoff time.Duration
	Logger     *zap.Logger
	Metrics    *Metrics
	// KafkaOpts are appended to the client options (SASL, TLS, ...).
	KafkaOpts []kgo.Opt
}

func (c *Config) defaults() error {
	switch {
	case c.Name == "":
		return errors.New("processing: Config.Name is required")
	case len(c.Brokers) == 0:
		return errors.New("processing: Config.Brokers is required")
	case c.Group == "":
		return errors.New("processing: Config.Group is required")
	case len(c.Inputs) == 0:
		return errors.New("processing: Config.Inputs is required")
	}
	if c.InstanceID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("processing: no InstanceID and no host name: %w", err)
		}
		c.InstanceID = h
	}
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = 5000
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 30 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// Runner runs one Handler in one consumer-group member.
type Runner struct {
	cfg     Config
	h       Handler
	log     *zap.Logger
	m       *Metrics
	lastErr atomic.Pointer[error] // nil when the last batch succeeded
}

// New validates cfg and returns a Runner.
func New(cfg Config, h Handler) (*Runner, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, h: h, log: cfg.Logger.With(zap.String("processor", cfg.Name)), m: cfg.Metrics}
	return r, nil
}

// TransactionalID is the Kafka transactional id of this instance.
func (r *Runner) TransactionalID() string {
	return "cdp-" + r.cfg.Name + "-" + r.cfg.InstanceID
}

// Ready reports why the runner is not ready, or nil.
func (r *Runner) Ready(ctx context.Context) error {
	if p := r.lastErr.Load(); p != nil {
		return fmt.Errorf("%s: last batch failed: %w", r.cfg.Name, *p)
	}
	if c, ok := r.h.(Checker); ok {
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("%s: %w", r.cfg.Name, err)
		}
	}
	return nil
}

// Run consumes until ctx ends, then finishes the batch in flight and leaves
// the group. It returns an error only when Kafka leaves no way to continue
// (for example a fenced transactional id).
func (r *Runner) Run(ctx context.Context) error {
	lbl := r.cfg.Name
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Inputs...),
		kgo.TransactionalID(r.TransactionalID()),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(0),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.log.Info("partitions assigned", zap.Any("partitions", m))
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.log.Info("partitions revoked", zap.Any("partitions", m))
			for t, ps := range m {
				for _, p := range ps {
					r.m.Lag.DeleteLabelValues(lbl, t, strconv.Itoa(int(p)))
				}
			}
		}),
	}, r.cfg.KafkaOpts...)
	if r.cfg.StaticMembership {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID))
	}
	r.m.Ready.WithLabelValues(lbl).Set(1)
	bo := r.newBackoff()
	for {
		err := r.session(ctx, opts)
		if err == nil || ctx.Err() != nil {
			r.log.Info("stopped")
			return nil
		}
		// A fenced transactional id means another instance runs with the
		// same --instance: restarting would fence it in turn.
		if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			return fmt.Errorf("%s: %w (is another instance running with the same --instance %q?)", r.cfg.Name, err, r.cfg.InstanceID)
		}
		r.lastErr.Store(&err)
		r.m.Ready.WithLabelValues(lbl).Set(0)
		r.m.Errors.WithLabelValues(lbl, "session").Inc()
		wait := bo.NextBackOff()
		r.log.Error("Kafka session failed; starting a new one", zap.Error(err), zap.Duration("backoff", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (r *Runner) newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = r.cfg.MaxBackoff
	return bo
}

// session runs one GroupTransactSession until ctx ends (nil) or Kafka
// leaves it unusable (an error; Run then starts a new session, which
// rewinds to the last committed offsets).
func (r *Runner) session(ctx context.Context, opts []kgo.Opt) error {
	lbl := r.cfg.Name
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("creating Kafka session: %w", err)
	}
	defer sess.Close()
	r.log.Info("consuming", zap.Strings("inputs", r.cfg.Inputs), zap.String("group", r.cfg.Group),
		zap.String("transactional_id", r.TransactionalID()))

	bo := r.newBackoff()
	for ctx.Err() == nil {
		fetches := sess.PollRecords(ctx, r.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			break
		}
		errs := 0
		fetches.EachError(func(t string, p int32, err error) {
			errs++
			r.m.Errors.WithLabelValues(lbl, "fetch").Inc()
			r.log.Warn("fetch error", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		if fetches.NumRecords() == 0 {
			if errs > 0 { // no busy loop on a broker that only answers errors
				select {
				case <-ctx.Done():
				case <-time.After(bo.NextBackOff()):
				}
			}
			continue
		}
		err := r.batch(ctx, sess, fetches)
		if err == nil {
			r.lastErr.Store(nil)
			r.m.Ready.WithLabelValues(lbl).Set(1)
			bo.Reset()
			continue
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return err
		}
		r.lastErr.Store(&err)
		r.m.Ready.WithLabelValues(lbl).Set(0)
		wait := bo.NextBackOff()
		r.log.Warn("batch aborted; retrying the same records", zap.Error(err), zap.Duration("backoff", wait))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	r.log.Info("leaving the group")
	return nil
}

type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// batch processes one poll in one transaction. A nil return means the
// transaction committed; any other outcome aborted it and the consumer was
// rewound to the last committed offsets.
func (r *Runner) batch(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) error {
	lbl := r.cfg.Name
	start := time.Now()
	// The batch in flight finishes even when ctx ends (SIGTERM): a clean
	// commit is cheaper than a replay.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
	defer cancel()

	if err := sess.Begin(); err != nil {
		return &fatalError{fmt.Errorf("beginning transaction: %w", err)}
	}
	type part struct {
		topic string
		p     int32
		recs  []*kgo.Record
		hw    int64
		out   []*kgo.Record
		err   error
	}
	var parts []*part
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			parts = append(parts, &part{topic: ftp.Topic, p: ftp.Partition, recs: ftp.Records, hw: ftp.HighWatermark})
		}
	})
	var wg sync.WaitGroup
	for _, pt := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt.out, pt.err = r.h.Process(bctx, pt.topic, pt.p, pt.recs)
		}()
	}
	wg.Wait()

	var procErr error
	for _, pt := range parts {
		if pt.err != nil {
			r.m.Errors.WithLabelValues(lbl, "process").Inc()
			procErr = fmt.Errorf("processing %s[%d] from offset %d: %w", pt.topic, pt.p, pt.recs[0].Offset, pt.err)
			break
		}
	}

	var prodErr error
	var prodMu sync.Mutex
	outCount := map[string]int{}
	if procErr == nil {
		for _, pt := range parts {
			for _, rec := range pt.out {
				outCount[rec.Topic]++
				sess.Produce(bctx, rec, func(_ *kgo.Record, err error) {
					if err != nil {
						prodMu.Lock()
						if prodErr == nil {
							prodErr = err
						}
						prodMu.Unlock()
					}
				})
			}
		}
	}
	// End flushes the produces before committing; a failed produce makes
	// us ask for an abort.
	if err := sess.Client().Flush(bctx); err != nil && procErr == nil {
		prodErr = err
	}
	prodMu.Lock()
	pe := prodErr
	prodMu.Unlock()
	if pe != nil {
		r.m.Errors.WithLabelValues(lbl, "produce").Inc()
	}
	want := kgo.TransactionEndTry(procErr == nil && pe == nil)
	committed, err := sess.End(bctx, want)
	if err != nil {
		r.m.Errors.WithLabelValues(lbl, "commit").Inc()
		r.m.Transactions.WithLabelValues(lbl, "failed").Inc()
		return &fatalError{fmt.Errorf("ending transaction: %w", err)}
	}
	if !committed {
		r.m.Transactions.WithLabelValues(lbl, "aborted").Inc()
		switch {
		case procErr != nil:
			return procErr
		case pe != nil:
			return fmt.Errorf("producing outputs: %w", pe)
		default:
			return errors.New("transaction aborted by a rebalance")
		}
	}
	r.m.Transactions.WithLabelValues(lbl, "committed").Inc()
	now := time.Now()
	r.m.BatchDuration.WithLabelValues(lbl).Observe(now.Sub(start).Seconds())
	lat := r.m.Latency.WithLabelValues(lbl)
	for t, n := range outCount {
		r.m.RecordsOut.WithLabelValues(lbl, t).Add(float64(n))
	}
	committer, _ := r.h.(Committer)
	for _, pt := range parts {
		r.m.RecordsIn.WithLabelValues(lbl, pt.topic).Add(float64(len(pt.recs)))
		for _, rec := range pt.recs {
			lat.Observe(now.Sub(rec.Timestamp).Seconds())
		}
		last := pt.recs[len(pt.recs)-1].Offset
		if pt.hw > 0 {
			r.m.Lag.WithLabelValues(lbl, pt.topic, strconv.Itoa(int(pt.p))).Set(float64(max(0, pt.hw-last-1)))
		}
		if committer != nil {
			if err := committer.Committed(bctx, pt.topic, pt.p, last+1); err != nil {
				// Only cleanup is lost: the state is trimmed after the next commit.
				r.log.Warn("post-commit cleanup failed", zap.Error(err))
			}
		}
	}
	return nil
}
