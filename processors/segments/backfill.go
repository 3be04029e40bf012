package segments

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/processing"
)

// The backfill evaluates every profile of the feature store that belongs to
// the task's partition when the definitions changed (a new segment, an
// edited condition or param, a removed segment) or on a first start after
// retention deleted the start of the changes topic (see Open). It
// runs on the runtime's timers, a slice every backfillEvery, at most
// BackfillRate profiles per second per partition, journaled like any step,
// so it survives restarts and resumes where it was. Its progress is in the
// partition's meta hash (see Status).
const backfillEvery = 250 * time.Millisecond

// OnTimer implements processing.TimerHandler: the backfill's next slice.
func (t *task) OnTimer(ctx context.Context, tc *processing.TaskContext, due []processing.Timer) error {
	p := t.p
	fired := false
	for _, d := range due {
		fired = fired || d.Key == backfillTimer
	}
	if !fired {
		return nil
	}
	meta, err := p.rdb.HGetAll(ctx, t.metaKey).Result()
	if err != nil {
		return processing.Transient(fmt.Errorf("reading the backfill state of %s: %w", t.tp, err))
	}
	target := strconv.FormatUint(uint64(p.rules.ID), 10)
	now := p.now()
	cursor, scanned, started := meta["cursor"], meta["scanned"], meta["started"]
	if meta["target"] != target || cursor == "" {
		cursor, scanned, started = "0:0", "0", strconv.FormatInt(now.UnixMilli(), 10)
		p.log.Info("backfilling segments", zap.Stringer("partition", t.tp), zap.Int("segments", len(p.rules.Segments)))
	}
	hashes := t.storeHashes()
	idx, cur, err := parseCursor(cursor)
	if err != nil {
		return err
	}
	n, _ := strconv.ParseInt(scanned, 10, 64)
	budget := max(1, p.rules.BackfillRate*int(backfillEvery/time.Millisecond)/1000)
	var ids []string
	done := false
	for budget > 0 {
		if idx >= len(hashes) {
			done = true
			break
		}
		kv, next, err := p.rdb.HScan(ctx, hashes[idx], cur, "", int64(budget)).Result()
		if err != nil {
			return processing.Transient(fmt.Errorf("scanning the feature store for the backfill of %s: %w", t.tp, err))
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if p.layout.Partition(kv[i]) == t.tp.Partition {
				ids = append(ids, kv[i])
			}
		}
		n += int64(len(kv) / 2)
		budget -= max(1, len(kv)/2)
		if next == 0 {
			idx, cur = idx+1, 0
		} else {
			cur = next
		}
	}
	st := &step{work: map[string]*State{}, sizes: map[string]int64{}}
	if err := t.load(ctx, ids, st); err != nil {
		return err
	}
	for _, id := range ids {
		s := st.work[id]
		if s.MergedInto != "" || (s.FVersion > 0 && s.Defs == p.rules.ID) {
			continue
		}
		reason := "backfill"
		if s.FVersion > 0 {
			reason = "definition changed"
		}
		if err := t.bootstrap(ctx, tc, st, id, s, reason); err != nil {
			return err
		}
		p.m.backfill.Inc()
	}
	t.write(tc, st)
	fields := []any{"target", target, "cursor", fmt.Sprintf("%d:%d", idx, cur), "scanned", n, "started", started}
	if done {
		fields = append(fields, "defs", target, "done", now.UnixMilli(), "cursor", "")
		p.log.Info("segments backfilled", zap.Stringer("partition", t.tp), zap.Int64("profiles scanned", n))
	} else {
		tc.SetTimer(backfillTimer, now.Add(backfillEvery))
	}
	tc.Write("HSET", t.metaKey, fields...)
	return nil
}

// storeHashes are the feature store's hashes that hold this partition's
// profiles: the one of the same number when the two topics are
// partitioned alike, else all.
func (t *task) storeHashes() []string {
	l := t.p.store.Layout()
	if l.Partitions() == t.p.cfg.Partitions {
		return []string{l.Key(t.tp.Partition, "s")}
	}
	out := make([]string, l.Partitions())
	for i := range out {
		out[i] = l.Key(int32(i), "s")
	}
	return out
}

func parseCursor(s string) (int, uint64, error) {
	a, b, ok := strings.Cut(s, ":")
	i, err1 := strconv.Atoi(a)
	c, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("backfill cursor %q is not hash:cursor", s)
	}
	return i, c, nil
}

// PartitionStatus is one partition's backfill progress.
type PartitionStatus struct {
	Partition int32
	// Done: every profile was evaluated with the current definitions.
	Done bool
	// Scanned profiles of the feature store so far (of all partitions
	// when the topics are partitioned differently).
	Scanned int64
	Started time.Time
}

// Status reports the backfill of every partition.
func (r *Reader) Status(ctx context.Context) ([]PartitionStatus, error) {
	target := strconv.FormatUint(uint64(r.rules.ID), 10)
	out := make([]PartitionStatus, r.layout.Partitions())
	for i := range out {
		m, err := r.rdb.HGetAll(ctx, r.layout.Key(int32(i), metaSuffix)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("reading the backfill state of partition %d: %w", i, err)
		}
		n, _ := strconv.ParseInt(m["scanned"], 10, 64)
		ms, _ := strconv.ParseInt(m["started"], 10, 64)
		out[i] = PartitionStatus{Partition: int32(i), Done: m["defs"] == target, Scanned: n}
		if ms > 0 {
			out[i].Started = time.UnixMilli(ms).UTC()
		}
	}
	return out, nil
}
