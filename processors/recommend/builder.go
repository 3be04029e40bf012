package recommend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// orderRecord is one record of the orders changelog (topic
// recommend.orders, keyed by profile): an order with everything the global
// models learn from, taken from the profile's journaled state when the
// order was processed. It is the processor's internal format (JSON), not a
// published contract.
type orderRecord struct {
	Profile string   `json:"p"`
	Message string   `json:"m"`
	Order   string   `json:"o,omitempty"`
	Time    int64    `json:"t"` // event time, Unix ms
	Items   []string `json:"i"`
	// Prev is the profile's previous basket (for the next-basket table),
	// Viewed the session's views before the order (viewed → bought).
	Prev    []string `json:"pv,omitempty"`
	Viewed  []string `json:"v,omitempty"`
	Revenue float64  `json:"r"`
	// Summary is the profile's orders after this one (for the customer
	// base the score models are fitted on).
	Summary summary `json:"s"`
}

// builder keeps one instance's Shared state up to date with the orders
// changelog: it reads every partition from the start, read_committed, for
// as long as the instance runs.
type builder struct {
	cl     *kgo.Client
	topic  string
	shared *Shared
	log    *zap.Logger

	target   map[int32]int64 // end offsets when the builder started
	caughtUp chan struct{}
	once     sync.Once
	done     chan struct{}
}

// startBuilder starts reading topic into shared until run ends or Close;
// ctx bounds the start. Wait blocks until what the topic held at the start
// is applied.
func startBuilder(ctx, run context.Context, brokers []string, topic string, shared *Shared, log *zap.Logger, opts ...kgo.Opt) (*builder, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers move the position to the end offset, so a
		// topic that ends with a marker is caught up.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("orders changelog client: %w", err)
	}
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("listing the end of the orders changelog %s (does it exist? `cdp topology apply` creates it): %w", topic, err)
	}
	if _, ok := ends[topic]; !ok {
		cl.Close()
		return nil, fmt.Errorf("the orders changelog %s does not exist: `cdp topology apply` creates it", topic)
	}
	b := &builder{cl: cl, topic: topic, shared: shared, log: log, target: map[int32]int64{},
		caughtUp: make(chan struct{}), done: make(chan struct{})}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			b.target[o.Partition] = o.Offset
		}
	})
	go b.run(run)
	return b, nil
}

// Wait blocks until the builder applied the changelog as it was at the
// start, or ctx ends; it logs progress while a long changelog replays.
func (b *builder) Wait(ctx context.Context) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.caughtUp:
			return nil
		case <-b.done:
			return errors.New("the orders changelog reader stopped")
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_, orders := b.shared.Stats()
			b.log.Info("rebuilding the item associations from the orders changelog", zap.Int64("orders", orders))
		}
	}
}

// Close stops the builder.
func (b *builder) Close() {
	b.cl.Close()
	<-b.done
}

func (b *builder) run(ctx context.Context) {
	defer close(b.done)
	pos := map[int32]int64{}
	b.checkCaughtUp(pos)
	var batch []orderRecord
	for {
		fs := b.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			b.log.Warn("reading the orders changelog", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		batch = batch[:0]
		var lag int64
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				pos[fp.Partition] = r.Offset + 1
				if r.Attrs.IsControl() {
					continue
				}
				var o orderRecord
				if err := json.Unmarshal(r.Value, &o); err != nil {
					// Only this processor writes the topic: a record it cannot
					// read is a bug, and skipping it costs one order's
					// associations, not the instance.
					b.log.Error("skipping an unreadable orders changelog record", zap.Int32("partition", fp.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
					continue
				}
				batch = append(batch, o)
			}
			if n := len(fp.Records); n > 0 {
				lag += max(0, fp.HighWatermark-pos[fp.Partition])
			}
		})
		b.shared.Apply(batch)
		b.shared.m.modelLag.Set(float64(lag))
		b.checkCaughtUp(pos)
	}
}

func (b *builder) checkCaughtUp(pos map[int32]int64) {
	for p, end := range b.target {
		if pos[p] < end {
			return
		}
	}
	b.once.Do(func() { close(b.caughtUp) })
}
