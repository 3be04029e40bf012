package producer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/schemas"
)

// LineError is a line of JSON-lines input that was not delivered: invalid
// (Code is a schemas.Code* constant naming why, Field the JSON path when one
// field is at fault) or not acknowledged by Kafka (CodeDelivery).
type LineError struct {
	Line      int64  `json:"line"` // 1-based
	Code      string `json:"code"`
	Field     string `json:"field,omitempty"`
	Reason    string `json:"reason"`
	MessageID string `json:"messageId,omitempty"`
}

func (e LineError) String() string {
	s := fmt.Sprintf("line %d: %s", e.Line, e.Code)
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	return s + ": " + e.Reason
}

// CodeDelivery is the LineError code of a valid line Kafka did not
// acknowledge.
const CodeDelivery = "delivery_failed"

// CodeEncode is the LineError code of a valid line that could not be
// encoded, e.g. because the schema registry was unreachable.
const CodeEncode = "encode_failed"

// LinesOptions configures ProduceLines and NewLineWriter.
type LinesOptions struct {
	// Topic overrides the producer's topic.
	Topic string
	// Workers parse, validate and encode in parallel (default GOMAXPROCS);
	// records still leave in line order.
	Workers int
	// OnReject receives every line that is not delivered: invalid lines
	// in line order, delivery failures as they happen. Calls never overlap.
	OnReject func(LineError)
	// SendInvalid produces invalid lines anyway: Avro when they encode
	// (a track without an event name does), else the JSON bytes as they
	// are, which the pipeline dead-letters as wrong_magic. It is for test
	// traffic that must exercise the dead-letter path (cdp generate
	// --invalid-share); invalid lines are still counted and reported.
	SendInvalid bool
}

// LinesResult counts what happened to the lines.
type LinesResult struct {
	Lines   int64 // non-blank lines read
	Sent    int64 // acknowledged by Kafka (with SendInvalid, invalid ones too)
	Invalid int64 // refused by parsing or validation
	Failed  int64 // valid, but not delivered (encoding or Kafka)
	// With SendInvalid: invalid lines produced anyway, and how many of
	// those went as JSON bytes because they could not be encoded.
	InvalidSent, InvalidAsJSON int64
	Elapsed                    time.Duration
}

// PerSecond is the rate of lines read per second of Elapsed.
func (r LinesResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Lines) / r.Elapsed.Seconds()
}

// Tuning of the line pipeline: batches big enough to amortize channel
// hand-offs, small enough to keep memory flat, and a short wait so a slow
// (paced) writer's lines are not held back.
const (
	batchLines     = 512
	batchBytes     = 1 << 20
	batchLinger    = 10 * time.Millisecond
	maxReaderLine  = 1 << 20 // longer lines cannot be valid (limit 32 KB)
	readBufferSize = 1 << 20
)

// lineNamespace seeds the messageId given to lines without one.
var lineNamespace = uuid.MustParse("6f1c2a6e-8f0e-4a57-9d7c-2b1f3c9e5a10")

// LineWriter produces JSON-lines events written to it one line at a time.
// Lines are parsed, validated and encoded by several goroutines and produced
// in the order written, so one person's events keep their order. A line
// without messageId gets one derived from its bytes (a name-based UUID), so
// loading the same file twice yields the same ids and the pipeline's
// de-duplication drops the second copy.
type LineWriter struct {
	p     *Producer
	opts  LinesOptions
	topic string
	ctx   context.Context
	start time.Time

	mu     sync.Mutex
	cur    *lineBatch
	line   int64
	closed bool

	work     chan *lineBatch
	ordered  chan *lineBatch
	workers  sync.WaitGroup
	emitted  chan struct{}
	stopTick chan struct{}
	tickDone chan struct{}
	inflight sync.WaitGroup

	lines, sent, invalid, failed, invalidSent, invalidJSON atomic.Int64

	rejectMu sync.Mutex
}

type lineBatch struct {
	first   int64 // number of the batch's first line
	data    []byte
	ends    []int
	pre     map[int]*LineError // lines refused before parsing
	started time.Time
	out     []lineOut
	done    chan struct{}
}

type lineOut struct {
	rec       *kgo.Record
	messageID string
	reject    *LineError
	invalid   bool
	asJSON    bool
}

// NewLineWriter starts the pipeline. ctx bounds all of its work; Close it
// to deliver the rest and get the counts.
func (p *Producer) NewLineWriter(ctx context.Context, opts LinesOptions) *LineWriter {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	w := &LineWriter{
		p: p, opts: opts, topic: opts.Topic, ctx: ctx, start: time.Now(),
		work:     make(chan *lineBatch, 2*opts.Workers),
		ordered:  make(chan *lineBatch, 4*opts.Workers),
		emitted:  make(chan struct{}),
		stopTick: make(chan struct{}),
		tickDone: make(chan struct{}),
	}
	if w.topic == "" {
		w.topic = p.cfg.Topic
	}
	for range opts.Workers {
		w.workers.Add(1)
		go func() {
			defer w.workers.Done()
			for b := range w.work {
				w.process(b)
			}
		}()
	}
	go w.emit()
	go w.tick()
	return w
}

// WriteLine queues one line (without its newline); the bytes are copied. It
// blocks while the pipeline is full. Line numbers count every call, blank
// lines included.
func (w *LineWriter) WriteLine(ctx context.Context, line []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("producer: write to a closed LineWriter")
	}
	b := w.batchLocked()
	b.data = append(b.data, line...)
	b.ends = append(b.ends, len(b.data))
	if len(b.ends) >= batchLines || len(b.data) >= batchBytes {
		return w.dispatchLocked(ctx)
	}
	return nil
}

// rejectLine counts a line that is refused without being stored (too long
// to hold), keeping its report in line order.
func (w *LineWriter) rejectLine(ctx context.Context, e LineError) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("producer: write to a closed LineWriter")
	}
	b := w.batchLocked()
	i := len(b.ends)
	b.ends = append(b.ends, len(b.data))
	if b.pre == nil {
		b.pre = map[int]*LineError{}
	}
	e.Line = b.first + int64(i)
	b.pre[i] = &e
	if len(b.ends) >= batchLines {
		return w.dispatchLocked(ctx)
	}
	return nil
}

func (w *LineWriter) batchLocked() *lineBatch {
	w.line++
	if w.cur == nil {
		w.cur = &lineBatch{first: w.line, started: time.Now(), done: make(chan struct{})}
	}
	return w.cur
}

// dispatchLocked hands the current batch to the emitter (which keeps the
// order) and then to a worker. Once the emitter has it, the worker hand-off
// must happen too, or the emitter would wait forever; workers always drain,
// so that send only waits for progress.
func (w *LineWriter) dispatchLocked(ctx context.Context) error {
	b := w.cur
	if b == nil {
		return nil
	}
	select {
	case w.ordered <- b:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
	w.cur = nil
	w.work <- b
	return nil
}

// tick sends a partial batch that has waited batchLinger, for writers that
// write slowly (cdp generate --rate).
func (w *LineWriter) tick() {
	defer close(w.tickDone)
	t := time.NewTicker(batchLinger)
	defer t.Stop()
	for {
		select {
		case <-w.stopTick:
			return
		case <-w.ctx.Done():
			return
		case <-t.C:
			w.mu.Lock()
			if !w.closed && w.cur != nil && time.Since(w.cur.started) >= batchLinger {
				_ = w.dispatchLocked(w.ctx) // fails only when w.ctx ends, which Close reports
			}
			w.mu.Unlock()
		}
	}
}

// process parses, validates and encodes a batch. Encoded values share one
// arena per batch: a value is a capacity-limited slice of it, which stays
// valid when a later append moves the arena.
func (w *LineWriter) process(b *lineBatch) {
	defer close(b.done)
	b.out = make([]lineOut, len(b.ends))
	arena := make([]byte, 0, len(b.data))
	start := 0
	for i, end := range b.ends {
		line := b.data[start:end]
		start = end
		if e := b.pre[i]; e != nil {
			w.lines.Add(1)
			b.out[i] = lineOut{reject: e, invalid: true}
			continue
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		w.lines.Add(1)
		b.out[i] = w.encodeLine(b.first+int64(i), line, &arena)
	}
}

func (w *LineWriter) encodeLine(n int64, line []byte, arena *[]byte) lineOut {
	ev, err := schemas.ParseJSON(line)
	if err != nil {
		return w.invalidLine(n, line, nil, err, arena)
	}
	if ev.MessageID == "" {
		ev.MessageID = uuid.NewSHA1(lineNamespace, line).String()
	}
	now := w.p.now()
	if err := w.p.rules.Check(&ev, len(line), now); err != nil {
		return w.invalidLine(n, line, &ev, err, arena)
	}
	value, err := w.encode(&ev, arena)
	if err != nil {
		return lineOut{reject: lineError(n, ev.MessageID, CodeEncode, err)}
	}
	if len(value) > w.p.rules.MaxBytes {
		return w.invalidLine(n, line, &ev, w.p.rules.Check(&ev, len(value), now), arena)
	}
	return lineOut{rec: &kgo.Record{Topic: w.topic, Key: Key(&ev), Value: value}, messageID: ev.MessageID}
}

func (w *LineWriter) encode(ev *schemas.Event, arena *[]byte) ([]byte, error) {
	start := len(*arena)
	out, err := w.p.serde.AppendEncode(w.ctx, *arena, w.topic, ev)
	if err != nil {
		return nil, err
	}
	*arena = out
	return out[start:len(out):len(out)], nil
}

// invalidLine reports an invalid line and, with SendInvalid, still produces
// it: encoded when it encodes, else as the JSON bytes.
func (w *LineWriter) invalidLine(n int64, line []byte, ev *schemas.Event, err error, arena *[]byte) lineOut {
	msgID := ""
	if ev != nil {
		msgID = ev.MessageID
	}
	out := lineOut{reject: lineError(n, msgID, "", err), invalid: true, messageID: msgID}
	if !w.opts.SendInvalid {
		return out
	}
	out.rec = &kgo.Record{Topic: w.topic, Value: line}
	if ev != nil {
		out.rec.Key = Key(ev)
		if value, err := w.encode(ev, arena); err == nil {
			out.rec.Value = value
			return out
		}
	}
	out.asJSON = true
	return out
}

// lineError describes err as a LineError, taking code and field from the
// error when it has them.
func lineError(n int64, msgID, code string, err error) *LineError {
	e := &LineError{Line: n, Code: code, Reason: err.Error(), MessageID: msgID}
	var fe *schemas.FieldError
	var de *schemas.DecodeError
	switch {
	case errors.As(err, &fe):
		e.Code, e.Field, e.Reason = fe.Code, fe.Field, fe.Reason
	case errors.As(err, &de) && code == "":
		e.Code, e.Field = de.Code, de.Field
	}
	if e.Code == "" {
		e.Code = CodeEncode
	}
	return e
}

// emit produces the batches' records in line order and reports rejects.
func (w *LineWriter) emit() {
	defer close(w.emitted)
	for b := range w.ordered {
		<-b.done
		for i := range b.out {
			o := &b.out[i]
			if o.invalid {
				w.invalid.Add(1)
			}
			if o.reject != nil {
				if !o.invalid {
					w.failed.Add(1)
				}
				w.report(*o.reject)
			}
			if o.rec != nil {
				w.produce(b.first+int64(i), o)
			}
		}
	}
}

func (w *LineWriter) produce(n int64, o *lineOut) {
	if o.invalid {
		w.invalidSent.Add(1)
		if o.asJSON {
			w.invalidJSON.Add(1)
		}
	}
	w.inflight.Add(1)
	w.p.produce(w.ctx, o.rec, o.messageID, func(r Result) {
		defer w.inflight.Done()
		if r.Err == nil {
			w.sent.Add(1)
			return
		}
		w.failed.Add(1)
		w.report(LineError{Line: n, Code: CodeDelivery, Reason: r.Err.Error(), MessageID: r.MessageID})
	})
}

func (w *LineWriter) report(e LineError) {
	if w.opts.OnReject == nil {
		return
	}
	w.rejectMu.Lock()
	defer w.rejectMu.Unlock()
	w.opts.OnReject(e)
}

// Close sends the remaining lines, waits for every delivery and returns the
// counts. The error is about the pipeline (ctx ended), not about lines:
// those are in the result and were passed to OnReject.
func (w *LineWriter) Close(ctx context.Context) (LinesResult, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.result(), errors.New("producer: LineWriter closed twice")
	}
	err := w.dispatchLocked(ctx)
	w.closed = true
	close(w.stopTick)
	w.mu.Unlock()
	<-w.tickDone
	close(w.ordered)
	close(w.work)
	w.workers.Wait()
	<-w.emitted

	delivered := make(chan struct{})
	go func() {
		w.inflight.Wait()
		close(delivered)
	}()
	_ = w.p.client.Flush(ctx) // sends lingering batches now; errors show in the promises
	select {
	case <-delivered:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("producer: waiting for deliveries: %w", ctx.Err()))
	}
	if err == nil && w.ctx.Err() != nil {
		err = fmt.Errorf("producer: producing lines: %w", w.ctx.Err())
	}
	return w.result(), err
}

func (w *LineWriter) result() LinesResult {
	return LinesResult{
		Lines: w.lines.Load(), Sent: w.sent.Load(), Invalid: w.invalid.Load(), Failed: w.failed.Load(),
		InvalidSent: w.invalidSent.Load(), InvalidAsJSON: w.invalidJSON.Load(),
		Elapsed: time.Since(w.start),
	}
}

// ProduceLines reads JSON lines from r (the form `cdp generate --out`
// writes and docs/EVENT_JSON.md describes) and produces every valid one. It
// never stops at a bad line: each is passed to opts.OnReject with its line
// number, code, field and reason, and counted. It returns when r is
// exhausted and every record is acknowledged or failed; the error is about
// reading or ctx, never about a line.
func (p *Producer) ProduceLines(ctx context.Context, r io.Reader, opts LinesOptions) (LinesResult, error) {
	w := p.NewLineWriter(ctx, opts)
	readErr := readLines(ctx, r, w)
	res, err := w.Close(ctx)
	if readErr != nil {
		return res, readErr
	}
	return res, err
}

func readLines(ctx context.Context, r io.Reader, w *LineWriter) error {
	br := bufio.NewReaderSize(r, readBufferSize)
	var long []byte // a line longer than the buffer, being assembled
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !tooLong {
				long = append(long, chunk...)
				if len(long) > maxReaderLine {
					tooLong, long = true, nil
				}
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return fmt.Errorf("reading line %d: %w", w.line+1, err)
		}
		eof := err != nil
		line := chunk
		if long != nil {
			line = append(long, chunk...)
			long = nil
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
		var werr error
		switch {
		case tooLong:
			tooLong = false
			werr = w.rejectLine(ctx, LineError{Code: schemas.CodeOversize,
				Reason: fmt.Sprintf("line is longer than %d bytes; an event may be at most %d", maxReaderLine, w.p.rules.MaxBytes)})
		case eof && len(line) == 0:
			// no final line after the last newline
		default:
			werr = w.WriteLine(ctx, line)
		}
		if werr != nil {
			return werr
		}
		if eof {
			return nil
		}
	}
}
