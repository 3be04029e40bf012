package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
)

// trafficDay is the event-time span of one generator run: the generator
// spreads its lines over it, and a new run (a new seed, new shoppers
// alongside returning ones) starts when it is used up.
const trafficDay = 24 * time.Hour

// traffic streams generated events into the raw topic at rate lines per
// second until ctx ends, then delivers what is queued. sent counts the
// lines handed to the producer.
func traffic(ctx context.Context, rate float64, persons int, sent *atomic.Int64, log *zap.Logger) error {
	cfg, err := producer.ConfigFromEnv()
	if err != nil {
		return err
	}
	// The writer gets its own context so that, when ctx ends, Close still
	// delivers the lines already queued.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	p, err := producer.New(wctx, cfg)
	if err != nil {
		return fmt.Errorf("starting the traffic producer: %w", err)
	}
	w := p.NewLineWriter(wctx, producer.LinesOptions{SendInvalid: true})
	sink := generate.Paced(generate.SinkFunc(func(ctx context.Context, line []byte) error {
		sent.Add(1)
		return w.WriteLine(ctx, retime(line, time.Now()))
	}), rate)
	var genErr error
	for ctx.Err() == nil {
		g := generate.DefaultConfig()
		// A seed of its own per run: a second `cdp dev` sends new events
		// (new message ids) rather than duplicates of the first run's.
		g.Seed = uint64(time.Now().UnixNano())
		g.Persons, g.Start, g.Duration = persons, time.Now().UTC(), trafficDay
		g.Events = max(1, int(rate*trafficDay.Seconds()))
		// A little noise so the dead-letter path and deduplication show.
		g.InvalidShare, g.DupShare = 0.005, 0.005
		if _, err := generate.Generate(ctx, g, sink); err != nil && ctx.Err() == nil {
			genErr = fmt.Errorf("generating traffic: %w", err)
			break
		}
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer ccancel()
	res, err := w.Close(cctx)
	err = errors.Join(genErr, err, p.Close(cctx))
	log.Info("traffic stopped", zap.Int64("lines", res.Lines), zap.Int64("sent", res.Sent), zap.Int64("failed", res.Failed), zap.Error(err))
	if genErr != nil {
		return genErr
	}
	return nil
}

// retime moves a generated line's times so that it is received now: the
// generator spreads events over a day of event time with daily rhythms,
// which would put them hours ahead of or behind the wall clock, while the
// live summary, the windowed features and the console's charts want
// traffic happening now. Every time field moves by the same amount, so a
// device's clock skew (sentAt - timestamp) is kept; the deliberately
// invalid 1970 and 2100 timestamps stay invalid.
func retime(line []byte, now time.Time) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return line
	}
	received, ok := timeField(m, "receivedAt")
	if !ok {
		return line
	}
	shift := now.Sub(received)
	for _, k := range []string{"timestamp", "sentAt", "receivedAt", "originalTimestamp"} {
		if t, ok := timeField(m, k); ok && t.Year() > 1970 && t.Year() < 2100 {
			b, _ := json.Marshal(t.Add(shift).UTC().Format(schemas.TimeLayout))
			m[k] = b
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return line
	}
	return out
}

func timeField(m map[string]json.RawMessage, k string) (time.Time, bool) {
	raw, ok := m[k]
	if !ok {
		return time.Time{}, false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}
