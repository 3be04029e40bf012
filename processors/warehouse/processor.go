package warehouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/schemas"
)

// Topics names the warehouse's inputs (physical names). DeadLetters is
// both an input (its records become dead_letters rows) and where records
// the warehouse cannot decode go.
type Topics struct {
	Resolved, Merges, Membership, Changes, DeadLetters string
}

// inputKind says which tables a topic's records go to.
type inputKind int

const (
	kindResolved inputKind = iota
	kindMerges
	kindMembership
	kindChanges
	kindDeadLetters
)

// Processor writes the facts of its input topics to ClickHouse. It
// implements processing.Processor (a task per input partition) and
// processing.Checker.
type Processor struct {
	cfg    Config
	topics Topics
	kinds  map[string]inputKind
	conn   driver.Conn
	serde  *schemas.Serde
	log    *zap.Logger
	m      *metrics
	now    func() time.Time
}

// New wires the processor to an open ClickHouse connection whose default
// database holds the migrated tables. Metrics are registered in reg.
func New(cfg Config, topics Topics, conn driver.Conn, serde *schemas.Serde, reg prometheus.Registerer, log *zap.Logger) (*Processor, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if topics.Resolved == "" || topics.DeadLetters == "" {
		return nil, errors.New("warehouse: the resolved and dead-letter topics are required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("warehouse: registering metrics: %w", err)
	}
	p := &Processor{cfg: cfg, topics: topics, conn: conn, serde: serde, log: log, m: m, now: time.Now, kinds: map[string]inputKind{}}
	for k, t := range map[inputKind]string{kindResolved: topics.Resolved, kindMerges: topics.Merges,
		kindMembership: topics.Membership, kindChanges: topics.Changes, kindDeadLetters: topics.DeadLetters} {
		if t != "" {
			p.kinds[t] = k
		}
	}
	return p, nil
}

// Config is the processor's configuration after defaults; Tune the runtime
// with it.
func (p *Processor) Config() Config { return p.cfg }

// Check implements processing.Checker: ClickHouse answers.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ClickHouse does not answer: %w", err)
	}
	return nil
}

// NewTask implements processing.Processor.
func (p *Processor) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	kind, ok := p.kinds[tp.Topic]
	if !ok {
		return nil, fmt.Errorf("warehouse: %s is not one of its input topics", tp.Topic)
	}
	t := &task{p: p, tp: tp, kind: kind}
	switch kind {
	case kindResolved:
		t.events, t.orders, t.lines = newEventsBuffer(), newOrdersBuffer(), newLinesBuffer()
		t.bufs = []*buffer{&t.events.buffer, &t.orders.buffer, &t.lines.buffer}
	case kindMerges:
		t.merges = newMergesBuffer()
		t.bufs = []*buffer{&t.merges.buffer}
	case kindMembership:
		t.membership = newMembershipBuffer()
		t.bufs = []*buffer{&t.membership.buffer}
	case kindChanges:
		t.changes = newChangesBuffer()
		t.bufs = []*buffer{&t.changes.buffer}
	case kindDeadLetters:
		t.deadLetters = newDeadLettersBuffer()
		t.bufs = []*buffer{&t.deadLetters.buffer}
	}
	t.have = make([]offsets, len(t.bufs))
	return t, nil
}

// offsets are the input offsets at or past the committed one that a table
// already holds (inserted, but the transaction did not commit).
type offsets struct {
	set map[int64]struct{}
	max int64
}

func (o *offsets) has(off int64) bool {
	if off > o.max {
		return false
	}
	_, ok := o.set[off]
	return ok
}

// task writes one input partition's records. Rows wait in column buffers
// until PreCommit inserts them, one insert per table, before the offsets
// commit; nothing is buffered across transactions.
type task struct {
	p    *Processor
	tp   processing.TopicPartition
	kind inputKind

	bufs []*buffer
	have []offsets // per buffer

	events      *eventsBuffer
	orders      *ordersBuffer
	lines       *linesBuffer
	merges      *mergesBuffer
	membership  *membershipBuffer
	changes     *changesBuffer
	deadLetters *deadLettersBuffer

	resolved schemas.ResolvedEvent // reused across records
}

// Open reads, for every table of the partition, which offsets from the
// committed one on are in ClickHouse already: a batch inserted before a
// crash or an abort, whose offsets did not commit. Those rows are not
// inserted again, so each input record's rows are in each table once,
// however a batch was cut.
func (t *task) Open(ctx context.Context, tc *processing.TaskContext) error {
	t.reset()
	from := max(tc.Committed(), 0)
	for i, b := range t.bufs {
		have, err := t.p.inserted(ctx, b.table, t.tp, from)
		if err != nil {
			return processing.Transient(err)
		}
		t.have[i] = have
	}
	return nil
}

// inserted reads the offsets of tp at or past from in table.
func (p *Processor) inserted(ctx context.Context, table string, tp processing.TopicPartition, from int64) (offsets, error) {
	o := offsets{set: map[int64]struct{}{}, max: -1}
	rows, err := p.conn.Query(ctx, "SELECT DISTINCT offset FROM "+table+" WHERE topic = ? AND partition = ? AND offset >= ?", tp.Topic, tp.Partition, from)
	if err != nil {
		return o, fmt.Errorf("reading which offsets of %s from %d are in %s: %w", tp, from, table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var off int64
		if err := rows.Scan(&off); err != nil {
			return o, fmt.Errorf("reading offsets of %s in %s: %w", tp, table, err)
		}
		o.set[off] = struct{}{}
		o.max = max(o.max, off)
	}
	if err := rows.Err(); err != nil {
		return o, fmt.Errorf("reading offsets of %s in %s: %w", tp, table, err)
	}
	if len(o.set) > 0 {
		p.log.Info("rows of an uncommitted batch are in ClickHouse; they will not be inserted again",
			zap.Stringer("partition", tp), zap.String("table", table), zap.Int("offsets", len(o.set)), zap.Int64("from", from), zap.Int64("to", o.max))
	}
	return o, nil
}

func (t *task) reset() {
	n := 0
	for _, b := range t.bufs {
		n += b.rows()
		b.reset()
	}
	t.p.m.buffered.Sub(float64(n))
}

func (t *task) Close(processing.CloseReason) { t.reset() }

// Process decodes the records into rows. A record that cannot be decoded is
// dead-lettered with the reason; a schema registry outage fails the step,
// which the runtime retries.
func (t *task) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	before := t.buffered()
	defer func() { t.p.m.buffered.Add(float64(t.buffered() - before)) }()
	for _, rec := range recs {
		pos := position{rec.Topic, rec.Partition, rec.Offset}
		err := t.add(ctx, rec, pos)
		if err == nil {
			continue
		}
		if schemas.IsTransient(err) {
			return processing.Transient(fmt.Errorf("decoding %s@%d: %w", t.tp, rec.Offset, err))
		}
		t.p.m.undecoded.WithLabelValues(rec.Topic).Inc()
		if t.kind == kindDeadLetters {
			// Never dead-letter a dead letter: that could loop.
			t.p.log.Error("a record of the dead-letter topic is not a dead letter; not stored", zap.Stringer("partition", t.tp),
				zap.Int64("offset", rec.Offset), zap.Error(err))
			continue
		}
		t.p.log.Warn("record cannot be decoded; dead-lettered", zap.Stringer("partition", t.tp), zap.Int64("offset", rec.Offset), zap.Error(err))
		tc.Emit(dlq.New(rec, t.p.topics.DeadLetters, dlq.FailureOf("warehouse", err), t.p.now()))
	}
	return nil
}

func (t *task) buffered() int {
	n := 0
	for _, b := range t.bufs {
		n += b.rows()
	}
	return n
}

// readerSchemas are the schemas records of the other topics are read with.
var readerSchemas = map[inputKind]string{kindMerges: schemas.IdentityMergeSchema,
	kindMembership: schemas.SegmentMembershipSchema, kindChanges: schemas.ProfileChangeSchema}

// add maps one record to the rows of its tables, skipping tables that
// have its offset already.
func (t *task) add(ctx context.Context, rec *kgo.Record, pos position) error {
	switch t.kind {
	case kindResolved:
		if err := t.p.serde.DecodeResolved(ctx, rec.Value, &t.resolved); err != nil {
			return err
		}
		if !t.skip(0, pos.offset) {
			t.events.add(&t.resolved, rec.Timestamp, pos)
		}
		addOrder(t.orders, t.lines, &t.resolved, pos, t.skip(1, pos.offset), t.skip(2, pos.offset))
		return nil
	case kindDeadLetters:
		e, err := dlq.Parse(rec)
		if err != nil {
			return err
		}
		if !t.skip(0, pos.offset) {
			t.deadLetters.add(&e, pos)
		}
		return nil
	}
	v, err := t.p.serde.DecodeNative(ctx, rec.Value, readerSchemas[t.kind])
	if err != nil {
		return err
	}
	n, err := asNative(v)
	if err != nil || t.skip(0, pos.offset) {
		return err
	}
	b := t.bufs[0]
	mark := b.rows()
	switch t.kind {
	case kindMerges:
		err = t.merges.add(n, pos)
	case kindMembership:
		err = t.membership.add(n, pos)
	case kindChanges:
		err = t.changes.add(n, pos)
	}
	if err != nil {
		b.rollback(mark)
		return &schemas.DecodeError{Code: schemas.CodeWrongType, Err: err}
	}
	return nil
}

func (t *task) skip(buf int, off int64) bool {
	if t.have[buf].has(off) {
		t.p.m.skipped.WithLabelValues(t.bufs[buf].table).Inc()
		return true
	}
	return false
}

// PreCommit inserts every table's rows, each batch with its deduplication
// token, retrying with backoff for up to RetryFor. An error aborts the
// transaction: the offsets do not commit, and the records come again.
func (t *task) PreCommit(ctx context.Context, _ *processing.TaskContext) error {
	for _, b := range t.bufs {
		if b.rows() == 0 {
			continue
		}
		if err := t.p.insert(ctx, b); err != nil {
			return fmt.Errorf("writing %s to ClickHouse: %w", t.tp, err)
		}
		n := b.rows()
		b.reset()
		t.p.m.buffered.Sub(float64(n))
	}
	return nil
}

func (p *Processor) insert(ctx context.Context, b *buffer) error {
	token := b.token()
	start := time.Now()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, time.Second
	for attempt := 1; ; attempt++ {
		err := b.send(ctx, p.conn, token)
		if err == nil {
			break
		}
		wait := bo.NextBackOff()
		if time.Since(start)+wait > p.cfg.RetryFor || ctx.Err() != nil {
			return processing.Transient(fmt.Errorf("giving up after %d attempts in %s: %w", attempt, time.Since(start).Round(time.Millisecond), err))
		}
		p.m.retries.WithLabelValues(b.table).Inc()
		p.log.Warn("insert failed; retrying the same batch", zap.String("table", b.table), zap.String("token", token),
			zap.Int("attempt", attempt), zap.Duration("backoff", wait), zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	p.m.inserted.WithLabelValues(b.table).Add(float64(b.rows()))
	p.m.batchRows.WithLabelValues(b.table).Observe(float64(b.rows()))
	p.m.latency.WithLabelValues(b.table).Observe(time.Since(start).Seconds())
	return nil
}
