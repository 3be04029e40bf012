package processing

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// commitDue reports whether the open transaction should end now.
func (s *session) commitDue() bool {
	r := s.r
	return s.commitReq || len(r.cfg.StopAt) > 0 || r.cfg.Now().Sub(s.txnStart) >= r.cfg.CommitInterval ||
		s.txnRecs >= r.cfg.MaxTxnRecords || s.txnBytes >= r.cfg.MaxTxnBytes ||
		(s.caughtUp && !r.cfg.HoldWhenCaughtUp)
}

func (s *session) begin() error {
	if s.inTxn {
		return nil
	}
	if err := s.sess.Begin(); err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	s.inTxn = true
	s.txnStart = s.r.cfg.Now()
	s.txnPolls, s.txnRecs, s.txnBytes, s.commitReq = 0, 0, 0, false
	s.prodErr = nil
	s.outCount = map[string]int{}
	s.inCount = map[string]int{}
	s.latencies = s.latencies[:0]
	return nil
}

// iterate runs one round of work in the transaction: the polled records,
// due timers and pending timer replays of every task, in parallel across
// tasks; then it produces their outputs.
func (s *session) iterate(ctx context.Context, work map[*ptask][]*kgo.Record) error {
	r := s.r
	now := r.cfg.Now().UnixMilli()
	type job struct {
		pt     *ptask
		recs   []*kgo.Record
		timers bool
		err    error
	}
	var jobs []*job
	for _, pt := range s.sortedTasks() {
		if !pt.ready() {
			continue
		}
		recs := work[pt]
		timers := pt.timersDue(now)
		flush := len(pt.replay) > 0 && pt.replay[0].Kind == StepTimers && pt.replay[0].Position <= pt.position
		if len(recs) > 0 || timers || flush {
			jobs = append(jobs, &job{pt: pt, recs: recs, timers: timers})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if err := s.begin(); err != nil {
		return s.r.wrapSession(err)
	}
	bctx := context.WithoutCancel(ctx) // a step in flight finishes on SIGTERM
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(bctx, r.cfg.ProcessingTimeout)
			defer cancel()
			j.pt.tc.reset()
			if len(j.recs) > 0 {
				j.err = j.pt.stepRecords(sctx, j.recs)
			} else {
				j.err = j.pt.replayTimersBefore(j.pt.position)
			}
			if j.err == nil && j.timers {
				j.err = j.pt.fireTimers(sctx)
			}
		}()
	}
	wg.Wait()
	failed := map[*ptask]error{}
	var partial []*job
	for _, j := range jobs {
		var se *stepError
		switch {
		case j.err == nil:
		case errors.As(j.err, &se) && se.record && !errors.Is(j.err, ErrDiverged) && !errors.Is(j.err, ErrFenced):
			// One record failed, after the records before it succeeded:
			// those commit; the partition waits at the failed record.
			partial = append(partial, j)
		default:
			failed[j.pt] = j.err
		}
	}
	for _, j := range jobs {
		if len(j.recs) > 0 {
			s.txnRecs += len(j.recs)
			s.inCount[j.pt.tp.Topic] += len(j.recs)
			for _, rec := range j.recs {
				s.txnBytes += int64(len(rec.Key) + len(rec.Value))
				if !rec.Attrs.IsControl() {
					s.latencies = append(s.latencies, rec.Timestamp)
				}
			}
			j.pt.dirty = true
		}
	}
	if len(work) > 0 {
		s.txnPolls++
	}
	if len(failed) > 0 {
		return s.abort(ctx, failed)
	}
	for _, j := range jobs {
		s.produce(bctx, j.pt)
	}
	rewind := map[string]map[int32]kgo.EpochOffset{}
	for _, j := range partial {
		var se *stepError
		errors.As(j.err, &se)
		pt := j.pt
		pt.position = se.first
		addOffset(rewind, pt.tp, se.first)
		pt.lastErr = j.err.Error()
		pt.reopen = true // the failed call may have left the task's memory half changed
		s.commitReq = true
		s.fail(pt, j.err, se.first)
	}
	if len(rewind) > 0 {
		s.sess.Client().SetOffsets(rewind)
	}
	return nil
}

// produce sends a task's buffered outputs in the transaction, in order.
func (s *session) produce(ctx context.Context, pt *ptask) {
	tc := pt.tc
	for _, rec := range tc.out {
		s.outCount[rec.Topic]++
		s.sess.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				s.prodMu.Lock()
				if s.prodErr == nil {
					s.prodErr = err
				}
				s.prodMu.Unlock()
			}
		})
	}
	if tc.commitReq {
		s.commitReq = true
	}
	tc.out = tc.out[:0]
	tc.commitReq = false
}

// commit ends the transaction: PreCommit on every task with work, then the
// outputs, offsets and journal positions commit together.
func (s *session) commit(ctx context.Context) error {
	r := s.r
	bctx := context.WithoutCancel(ctx)
	var dirty []*ptask
	for _, pt := range s.sortedTasks() {
		if pt.dirty && pt.task != nil {
			dirty = append(dirty, pt)
		}
	}
	failed := map[*ptask]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pt := range dirty {
		if _, ok := pt.task.(PreCommitter); !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(bctx, r.cfg.ProcessingTimeout)
			defer cancel()
			pt.tc.reset()
			if err := pt.preCommit(sctx); err != nil {
				mu.Lock()
				failed[pt] = fmt.Errorf("PreCommit: %w", err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		return s.abort(ctx, failed)
	}
	for _, pt := range dirty {
		s.produce(bctx, pt)
	}
	ectx, cancel := context.WithTimeout(bctx, r.cfg.TransactionTimeout)
	defer cancel()
	if err := s.sess.Client().Flush(ectx); err != nil {
		s.setProdErr(err)
	}
	s.prodMu.Lock()
	prodErr := s.prodErr
	s.prodMu.Unlock()
	if prodErr != nil {
		r.m.Errors.WithLabelValues(r.lbl, "produce").Inc()
		r.log.Warn("producing outputs failed; aborting", zap.Error(prodErr))
		return s.abort(ctx, nil)
	}

	// The journal's committed step and the stream time go with the
	// offsets, atomically with the outputs.
	metas := map[TopicPartition]string{}
	add := map[TopicPartition]int64{}
	for _, pt := range s.tasks {
		if pt.task == nil {
			continue
		}
		m := commitMeta{seq: pt.doneSeq, streamTime: pt.streamTime}
		metas[pt.tp] = m.String()
		if pt.position >= 0 && (m.seq != pt.committedSeq || m.streamTime != pt.committedST) {
			add[pt.tp] = pt.position
		}
	}
	ectx = kgo.PreTxnCommitFnContext(ectx, func(req *kmsg.TxnOffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for k := range t.Partitions {
				p := &t.Partitions[k]
				tp := TopicPartition{t.Topic, p.Partition}
				if m, ok := metas[tp]; ok {
					p.Metadata = &m
				}
				delete(add, tp)
			}
		}
		// Partitions whose offset did not move but whose journal did (timers
		// fired): commit the same offset with the new metadata.
		for tp, off := range add {
			m := metas[tp]
			idx := -1
			for i := range req.Topics {
				if req.Topics[i].Topic == tp.Topic {
					idx = i
				}
			}
			if idx < 0 {
				rt := kmsg.NewTxnOffsetCommitRequestTopic()
				rt.Topic = tp.Topic
				req.Topics = append(req.Topics, rt)
				idx = len(req.Topics) - 1
			}
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = tp.Partition, off, -1, &m
			req.Topics[idx].Partitions = append(req.Topics[idx].Partitions, rp)
		}
		return nil
	})
	committed, err := s.sess.End(ectx, kgo.TryCommit)
	s.inTxn = false
	if err != nil {
		r.m.Errors.WithLabelValues(r.lbl, "commit").Inc()
		r.m.Transactions.WithLabelValues(r.lbl, "failed").Inc()
		s.reopenDirty(ctx)
		s.sess.AllowRebalance()
		return r.wrapSession(s.classifyKafka(fmt.Errorf("ending the transaction: %w", err)))
	}
	if !committed {
		r.m.Transactions.WithLabelValues(r.lbl, "aborted").Inc()
		r.log.Info("transaction aborted by a rebalance; the records come again")
		s.reopenDirty(ctx)
		s.sess.AllowRebalance()
		return nil
	}
	now := r.cfg.Now()
	r.m.Transactions.WithLabelValues(r.lbl, "committed").Inc()
	r.m.BatchDuration.WithLabelValues(r.lbl).Observe(now.Sub(s.txnStart).Seconds())
	r.m.PollsPerTxn.WithLabelValues(r.lbl).Observe(float64(s.txnPolls))
	lat := r.m.Latency.WithLabelValues(r.lbl)
	for _, ts := range s.latencies {
		lat.Observe(now.Sub(ts).Seconds())
	}
	for t, n := range s.outCount {
		r.m.RecordsOut.WithLabelValues(r.lbl, t).Add(float64(n))
	}
	for t, n := range s.inCount {
		r.m.RecordsIn.WithLabelValues(r.lbl, t).Add(float64(n))
	}
	for _, pt := range s.sortedTasks() {
		if pt.task == nil {
			continue
		}
		if pt.dirty {
			pt.committed = pt.position
			if pc, ok := pt.task.(PostCommitter); ok {
				pc.PostCommit(pt.tc)
			}
		}
		pt.committedSeq, pt.committedST = pt.doneSeq, pt.streamTime
		pt.dirty = false
		if pt.failures > 0 && pt.singleTo < 0 && !pt.failed {
			pt.failures = 0
		}
		if pt.reopen {
			pt.reopen = false
			s.open(ctx, pt)
		}
	}
	s.sess.AllowRebalance()
	return nil
}

func (s *session) setProdErr(err error) {
	s.prodMu.Lock()
	if s.prodErr == nil {
		s.prodErr = err
	}
	s.prodMu.Unlock()
}

// abort ends the transaction without committing, reopens every task that
// took part (nothing buffered before an abort is trusted), and pauses the
// failed ones for a retry.
func (s *session) abort(ctx context.Context, failed map[*ptask]error) error {
	r := s.r
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
	defer cancel()
	_, err := s.sess.End(ectx, kgo.TryAbort)
	s.inTxn = false
	r.m.Transactions.WithLabelValues(r.lbl, "aborted").Inc()
	var fenced error
	for pt, ferr := range failed {
		pt.lastErr = ferr.Error()
		if errors.Is(ferr, ErrFenced) {
			r.m.Fenced.WithLabelValues(r.lbl).Inc()
			fenced = fmt.Errorf("%s: %w", pt.tp, ferr)
		}
	}
	if err != nil {
		s.sess.AllowRebalance()
		return r.wrapSession(s.classifyKafka(fmt.Errorf("aborting the transaction: %w", err)))
	}
	if fenced != nil {
		// Another instance opened one of our partitions: we lost it without
		// being told. Rejoin rather than take the fence back.
		s.sess.AllowRebalance()
		return fmt.Errorf("a journal write was fenced, so this member lost a partition without noticing; rejoining the group: %w", fenced)
	}
	for pt, ferr := range failed {
		var se *stepError
		offset := int64(-1)
		if errors.As(ferr, &se) {
			if se.record {
				offset = se.first
			} else if !IsTransient(ferr) && !errors.Is(ferr, ErrDiverged) {
				pt.singleTo = max(pt.singleTo, se.last)
			}
		}
		pt.closeTask(Aborted)
		pt.dirty = false
		pt.replay = nil
		s.fail(pt, ferr, offset)
	}
	s.reopenDirty(ctx)
	s.sess.AllowRebalance()
	return nil
}

// reopenDirty reopens the tasks that took part in an aborted transaction:
// the consumer was rewound to the committed offsets, and their state is
// read from the store again.
func (s *session) reopenDirty(ctx context.Context) {
	for _, pt := range s.sortedTasks() {
		if pt.task != nil && pt.dirty {
			pt.dirty, pt.reopen = false, false
			s.open(ctx, pt)
		}
	}
}

func (r *Runner) wrapSession(err error) error {
	if errors.Is(err, errRealFence) {
		return err
	}
	return fmt.Errorf("kafka session: %w", err)
}
