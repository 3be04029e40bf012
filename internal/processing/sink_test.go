package processing_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// sinkProc is the shape of a warehouse: it holds records across polls and
// writes them to ClickHouse in PreCommit, before the offsets commit. Its
// effects are idempotent by construction: a row carries its topic,
// partition and offset, Open skips what the table already has, and every
// insert carries a deduplication token of its offset range.
type sinkProc struct {
	conn     driver.Conn
	table    string
	failures atomic.Int64 // PreCommit fails this many times, after its insert
	inserts  atomic.Int64
	maxRows  atomic.Int64 // largest insert
	maxPolls atomic.Int64 // most Process calls in one committed transaction
}

func (p *sinkProc) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	return &sinkTask{p: p, tp: tp}, nil
}

type sinkTask struct {
	p     *sinkProc
	tp    processing.TopicPartition
	done  int64 // the table has every offset up to it
	buf   []*kgo.Record
	polls int64
}

func (t *sinkTask) Open(ctx context.Context, _ *processing.TaskContext) error {
	var n uint64
	var last int64
	row := t.p.conn.QueryRow(ctx, fmt.Sprintf("SELECT count(), max(offset) FROM %s WHERE topic = ? AND partition = ?", t.p.table), t.tp.Topic, t.tp.Partition)
	if err := row.Scan(&n, &last); err != nil {
		return fmt.Errorf("reading how far %s got: %w", t.p.table, err)
	}
	t.done = -1
	if n > 0 {
		t.done = last
	}
	t.buf, t.polls = nil, 0
	return nil
}

func (t *sinkTask) Close(processing.CloseReason) {}

func (t *sinkTask) Process(_ context.Context, _ *processing.TaskContext, recs []*kgo.Record) error {
	t.polls++
	for _, r := range recs {
		if r.Offset > t.done {
			t.buf = append(t.buf, r)
		}
	}
	return nil
}

func (t *sinkTask) PreCommit(ctx context.Context, _ *processing.TaskContext) error {
	if len(t.buf) == 0 {
		return nil
	}
	first, last := t.buf[0].Offset, t.buf[len(t.buf)-1].Offset
	token := fmt.Sprintf("%s/%d/%d-%d", t.tp.Topic, t.tp.Partition, first, last)
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": token}))
	b, err := t.p.conn.PrepareBatch(ctx, "INSERT INTO "+t.p.table)
	if err != nil {
		return err
	}
	for _, r := range t.buf {
		if err := b.Append(r.Topic, r.Partition, r.Offset, string(r.Value)); err != nil {
			return err
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("inserting %s: %w", token, err)
	}
	t.p.inserts.Add(1)
	if n := int64(len(t.buf)); n > t.p.maxRows.Load() {
		t.p.maxRows.Store(n)
	}
	t.done, t.buf = last, nil
	if t.p.failures.Add(-1) >= 0 {
		return errors.New("injected failure after the insert, before the commit")
	}
	return nil
}

func (t *sinkTask) PostCommit(*processing.TaskContext) {
	if t.polls > t.p.maxPolls.Load() {
		t.p.maxPolls.Store(t.polls)
	}
	t.polls = 0
}

// TestSinkBatchesAcrossPollsExactlyOnce feeds a ClickHouse sink that
// batches across polls (a transaction of up to 1 s or 600 records, polls
// of 100) and fails three times after an insert, before the commit. Every
// record must be in the table exactly once, transactions must have
// spanned polls, and no insert may exceed the bound.
func TestSinkBatchesAcrossPollsExactlyOnce(t *testing.T) {
	env := testkit.New(t)
	conn := env.ClickHouse(t)
	ctx := testkit.Context(t)
	if err := conn.Exec(ctx, `CREATE TABLE sink (topic String, partition Int32, offset Int64, value String)
		ENGINE = MergeTree ORDER BY (topic, partition, offset) SETTINGS non_replicated_deduplication_window = 1000`); err != nil {
		t.Fatal(err)
	}
	in := env.Topic(t, "in", 2)
	const n = 3000
	produceN(t, env, in, n)
	p := &sinkProc{conn: conn, table: "sink"}
	p.failures.Store(3)
	cfg := baseConfig(t, env, "sink", in)
	cfg.CommitInterval, cfg.MaxTxnRecords, cfg.MaxPollRecords = time.Second, 600, 100
	cfg.HoldWhenCaughtUp = true // a batch grows to its bounds, not to the end of the input
	rctx, stop := context.WithCancel(context.Background())
	var rs runners
	rs.start(rctx, mustRunner(t, cfg, p))
	var rows, distinct uint64
	waitFor(t, time.Minute, "every record in ClickHouse", func() bool {
		if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(topic, partition, offset) FROM sink").Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		return distinct >= n
	})
	time.Sleep(2 * time.Second) // a duplicate insert would land now
	stop()
	for _, err := range rs.wait() {
		t.Error(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(topic, partition, offset) FROM sink").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Errorf("ClickHouse holds %d rows, %d distinct, want %d exactly once", rows, distinct, n)
	}
	if p.failures.Load() >= 0 {
		t.Errorf("the injected failures did not all happen (%d left)", p.failures.Load()+1)
	}
	if mp := p.maxPolls.Load(); mp < 2 {
		t.Errorf("at most %d poll(s) per committed transaction: batches did not span polls", mp)
	}
	if mr := p.maxRows.Load(); mr > 600+100 {
		t.Errorf("an insert of %d rows: the transaction bound (600 records, polls of 100) did not hold", mr)
	}
	t.Logf("%d inserts, up to %d rows and %d polls each, 3 failures after an insert", p.inserts.Load(), p.maxRows.Load(), p.maxPolls.Load())
}
