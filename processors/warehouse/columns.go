package warehouse

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A table's rows are buffered column by column, in the Go types
// clickhouse-go appends without conversion, so an insert hands each column
// over as one slice instead of converting row by row.

type column interface {
	name() string
	values() any
	truncate(n int)
	length() int
}

type col[T any] struct {
	n string
	v []T
}

func (c *col[T]) name() string   { return c.n }
func (c *col[T]) values() any    { return c.v }
func (c *col[T]) length() int    { return len(c.v) }
func (c *col[T]) truncate(n int) { clear(c.v[n:]); c.v = c.v[:n] }
func (c *col[T]) add(v T)        { c.v = append(c.v, v) }

// buffer is the pending rows of one table of one task. Every table ends
// with the Kafka position of the record a row came from.
type buffer struct {
	table     string
	cols      []column
	topic     *col[string]
	partition *col[int32]
	offset    *col[int64]
	insert    string // the INSERT statement, columns named
}

func newCol[T any](b *buffer, name string) *col[T] {
	c := &col[T]{n: name}
	b.cols = append(b.cols, c)
	return c
}

// finish adds the position columns and builds the statement.
func (b *buffer) finish() {
	b.topic = newCol[string](b, "topic")
	b.partition = newCol[int32](b, "partition")
	b.offset = newCol[int64](b, "offset")
	names := make([]string, len(b.cols))
	for i, c := range b.cols {
		names[i] = c.name()
	}
	b.insert = "INSERT INTO " + b.table + " (" + strings.Join(names, ", ") + ")"
}

// rows is how many rows are buffered.
func (b *buffer) rows() int { return len(b.offset.v) }

// position ends a row: every column must have had one value added.
func (b *buffer) position(topic string, partition int32, offset int64) {
	b.topic.add(topic)
	b.partition.add(partition)
	b.offset.add(offset)
}

// rollback drops a half-built row (a record that failed to map part way).
func (b *buffer) rollback(n int) {
	for _, c := range b.cols {
		c.truncate(min(n, c.length()))
	}
}

func (b *buffer) reset() {
	for _, c := range b.cols {
		c.truncate(0)
	}
}

// token is the insert's deduplication token: the table, the input
// partition, the offset range, and a digest of exactly which offsets the
// batch holds. Sending the same batch again (a retry after a lost answer)
// gives the same token, so ClickHouse drops it; a batch with other rows
// never shares a token, even over the same range.
func (b *buffer) token() string {
	h := fnv.New64a()
	var buf [8]byte
	last := int64(-1)
	for _, o := range b.offset.v {
		if o == last {
			continue // the lines of one order share their offset
		}
		last = o
		for i := range buf {
			buf[i] = byte(o >> (8 * i))
		}
		h.Write(buf[:])
	}
	return fmt.Sprintf("%s/%s/%d/%d-%d/%d/%x", b.table, b.topic.v[0], b.partition.v[0], b.offset.v[0], last, b.rows(), h.Sum64())
}

// send inserts the buffered rows in one batch with the given token.
func (b *buffer) send(ctx context.Context, conn driver.Conn, token string) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": token}))
	batch, err := conn.PrepareBatch(ctx, b.insert)
	if err != nil {
		return fmt.Errorf("preparing the insert into %s: %w", b.table, err)
	}
	defer func() { _ = batch.Abort() }()
	for i, c := range b.cols {
		if err := batch.Column(i).Append(c.values()); err != nil {
			return fmt.Errorf("column %s.%s: %w", b.table, c.name(), err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d rows into %s: %w", b.rows(), b.table, err)
	}
	return nil
}
