package generate

import (
	"bufio"
	"context"
	"io"
	"time"
)

// Sink receives the generated lines in order. line is one JSON object
// without a trailing newline; it is not modified after Write returns, but a
// sink that keeps it must not modify it either. The Kafka sink plugs in here.
type Sink interface {
	Write(ctx context.Context, line []byte) error
}

// WriterSink writes JSON lines to an io.Writer through a buffer. Call Flush
// when done.
type WriterSink struct {
	w *bufio.Writer
}

// NewWriterSink returns a sink writing one line per event to w.
func NewWriterSink(w io.Writer) *WriterSink {
	return &WriterSink{w: bufio.NewWriterSize(w, 256<<10)}
}

// Write appends line and a newline.
func (s *WriterSink) Write(_ context.Context, line []byte) error {
	if _, err := s.w.Write(line); err != nil {
		return err
	}
	return s.w.WriteByte('\n')
}

// Flush writes buffered lines to the underlying writer.
func (s *WriterSink) Flush() error { return s.w.Flush() }

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, line []byte) error

// Write calls f.
func (f SinkFunc) Write(ctx context.Context, line []byte) error { return f(ctx, line) }

// Paced wraps s so that lines leave at most perSecond per second (wall
// clock), for replaying traffic at a realistic rate. It only changes timing,
// never content. perSecond <= 0 returns s unchanged.
func Paced(s Sink, perSecond float64) Sink {
	if perSecond <= 0 {
		return s
	}
	return &pacedSink{next: s, interval: time.Duration(float64(time.Second) / perSecond)}
}

type pacedSink struct {
	next     Sink
	interval time.Duration
	start    time.Time
	n        int64
}

// Write sleeps until line n is due (start + n·interval). Sleeping against
// the schedule rather than per line keeps the average rate exact even when
// the timer is coarse: short sleeps are skipped and made up later.
func (p *pacedSink) Write(ctx context.Context, line []byte) error {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	if wait := time.Until(due); wait > time.Millisecond {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return p.next.Write(ctx, line)
}
