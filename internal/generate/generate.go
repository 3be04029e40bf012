package generate

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Seed stream numbers: each concern draws from its own PCG stream so that,
// for example, a different dup-share does not change which products people
// view.
const (
	streamPopulation = iota + 1
	streamTraffic
	streamIDs
	streamNoise
)

// Invalid-event reasons as recorded in the truth.
const (
	ReasonMissingEventName = "missing_event_name"
	ReasonNoIdentifier     = "no_identifier"
	ReasonTimestamp1970    = "timestamp_1970"
	ReasonTimestamp2100    = "timestamp_2100"
	ReasonOversize         = "oversize"
)

// invalidReasons and their weights; order fixes the draw.
var invalidReasons = []struct {
	reason string
	w      float64
}{
	{ReasonMissingEventName, 0.3},
	{ReasonNoIdentifier, 0.3},
	{ReasonTimestamp1970, 0.15},
	{ReasonTimestamp2100, 0.15},
	{ReasonOversize, 0.1},
}

var invalidWeights = func() []float64 {
	w := make([]float64, len(invalidReasons))
	for i, x := range invalidReasons {
		w[i] = x.w
	}
	return w
}()

// OversizeBytes is the size an oversize invalid event exceeds: the event
// size limit of the validation stage.
const OversizeBytes = 32 * 1024

type lineKind uint8

const (
	lineValid lineKind = iota
	lineDup
	lineInvalid
)

// rec is one event on its way to the output, with what the truth needs to
// know about it.
type rec struct {
	ev            *event
	at            time.Time // true event time (before any device clock skew)
	sent, recv    time.Time // true send and receive times
	p             *person
	d             *device // nil for server-side events
	lastInSession bool
	seq           uint64
}

type recHeap []*rec

func (h recHeap) Len() int { return len(h) }
func (h recHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h recHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recHeap) Push(x any)   { *h = append(*h, x.(*rec)) }
func (h *recHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// outLine is one output line and what the truth records about it.
type outLine struct {
	line   []byte
	r      *rec
	kind   lineKind
	reason string // invalid lines
	msgID  string
	late   bool
}

type pendingDup struct {
	due int // write once this many lines are out
	out outLine
}

// gen holds the state of one run.
type gen struct {
	cfg                  Config
	pop, traffic, ids    *rand.Rand
	noise                *rand.Rand
	persons              []*person
	personCum            []float64
	devices              []*device
	zipf                 *rand.Zipf
	queue                recHeap
	seq                  uint64
	orderSeq             int
	end                  time.Time
	durationOnly         bool
	busySkips            int
	scratchW             []float64
	scratchIDs           []ident
	baseQueued           int // device and server events generated so far
	sessionsStarted      int
	dupRate, invalidRate float64 // per valid event, before gating
	pending              []pendingDup
	late, held           int
	sink                 Sink
	ctx                  context.Context
	truth                *truthBuilder
}

// errDone stops the pipeline once Config.Events lines are written.
var errDone = errors.New("done")

// Generate simulates the traffic described by cfg, writes every line to sink
// (one JSON object, no trailing newline) and returns the ground truth of what
// it wrote. Output and truth depend on cfg only.
func Generate(ctx context.Context, cfg Config, sink Sink) (*Truth, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	g := &gen{
		cfg:     cfg,
		pop:     rand.New(rand.NewPCG(cfg.Seed, streamPopulation)),
		traffic: rand.New(rand.NewPCG(cfg.Seed, streamTraffic)),
		ids:     rand.New(rand.NewPCG(cfg.Seed, streamIDs)),
		noise:   rand.New(rand.NewPCG(cfg.Seed, streamNoise)),
		end:     cfg.Start.Add(cfg.Duration),
		sink:    sink,
		ctx:     ctx,
	}
	g.durationOnly = cfg.Events == 0
	clean := 1 - cfg.DupShare - cfg.InvalidShare
	g.dupRate = min(1, 2*cfg.DupShare/clean)
	g.invalidRate = min(1, 2*cfg.InvalidShare/clean)
	g.zipf = rand.NewZipf(g.traffic, 1.07, 2, uint64(len(cfg.Catalog)-1))
	g.buildPopulation()
	g.truth = newTruthBuilder(g)
	if err := g.run(); err != nil && !errors.Is(err, errDone) {
		return nil, err
	}
	return g.truth.finish(), nil
}

// Hour-of-day and day-of-week weights of session starts (UTC, the shop's
// time zone): quiet nights, an evening peak, busier weekends.
var (
	hourWeight = [24]float64{0.35, 0.2, 0.12, 0.08, 0.07, 0.1, 0.25, 0.45, 0.6, 0.7, 0.8, 0.85,
		1.0, 0.95, 0.85, 0.85, 0.9, 1.0, 1.2, 1.5, 1.75, 1.8, 1.4, 0.8}
	dayWeight = [7]float64{time.Sunday: 1.35, time.Monday: 0.9, time.Tuesday: 0.9,
		time.Wednesday: 0.95, time.Thursday: 1.0, time.Friday: 1.05, time.Saturday: 1.3}
)

func rhythm(t time.Time) float64 { return hourWeight[t.Hour()] * dayWeight[t.Weekday()] }

func meanRhythm() float64 {
	var h, d float64
	for _, x := range hourWeight {
		h += x
	}
	for _, x := range dayWeight {
		d += x
	}
	return h / 24 * d / 7
}

// run advances event time a minute at a time: it starts the sessions of the
// minute (a Poisson process with the rhythm's intensity), then passes on
// every queued event before the minute's end, which no later session can
// precede.
func (g *gen) run() error {
	cfg := g.cfg
	// suffix[h] is the summed rhythm weight of span hours h.. (in
	// minute units), used to spread the remaining events over the
	// remaining time.
	hours := int(math.Ceil(cfg.Duration.Hours()))
	suffix := make([]float64, hours+1)
	for h := hours - 1; h >= 0; h-- {
		suffix[h] = suffix[h+1] + 60*rhythm(cfg.Start.Add(time.Duration(h)*time.Hour))
	}
	clean := 1 - cfg.DupShare - cfg.InvalidShare
	targetBase := float64(cfg.Events) * clean
	perMinute := float64(cfg.Persons) * sessionsPerPersonDay / (24 * 60) / meanRhythm()
	for m := 0; ; m++ {
		t0 := cfg.Start.Add(time.Duration(m) * time.Minute)
		t1 := t0.Add(time.Minute)
		if g.durationOnly && !t0.Before(g.end) {
			break
		}
		w := rhythm(t0)
		var rate float64 // sessions per minute
		if g.durationOnly {
			rate = perMinute * w
		} else {
			// Spread what is still to come over the weight still ahead.
			perSession := 10.0
			if g.sessionsStarted > 20 {
				perSession = float64(g.baseQueued) / float64(g.sessionsStarted)
			}
			remaining := max(targetBase-float64(g.baseQueued), perSession)
			h := m / 60
			ahead := 60 * w // past the span: an hour's worth at a time
			if h < hours {
				ahead = suffix[h+1] + float64(60-m%60)*w
			}
			rate = w * remaining / (perSession * ahead)
		}
		if rate > 0 {
			for t := g.traffic.ExpFloat64() / rate; t < 1; t += g.traffic.ExpFloat64() / rate {
				g.sessionsStarted++
				g.startSession(t0.Add(time.Duration(t * float64(time.Minute))).Truncate(time.Millisecond))
			}
		}
		for len(g.queue) > 0 && g.queue[0].at.Before(t1) {
			if err := g.process(heap.Pop(&g.queue).(*rec)); err != nil {
				return err
			}
		}
		if m%64 == 0 {
			if err := g.ctx.Err(); err != nil {
				return err
			}
		}
	}
	// Duration mode: let the last sessions finish, deliver what is held back
	// and the duplicates still due.
	for len(g.queue) > 0 {
		if err := g.process(heap.Pop(&g.queue).(*rec)); err != nil {
			return err
		}
	}
	for _, d := range g.devices {
		if h := d.held; h != nil {
			d.held = nil
			g.held--
			if err := g.emitValid(h, false); err != nil {
				return err
			}
		}
	}
	for len(g.pending) > 0 {
		p := g.pending[0]
		g.pending = g.pending[1:]
		if err := g.writeLine(p.out); err != nil {
			return err
		}
	}
	return nil
}

func (g *gen) push(r *rec) {
	g.seq++
	r.seq = g.seq
	g.baseQueued++
	heap.Push(&g.queue, r)
}

// process takes the next clean event in event-time order and decides whether
// it is delivered now or held back to arrive after its device's next event.
func (g *gen) process(r *rec) error {
	d := r.d
	if d != nil && d.held != nil {
		h := d.held
		d.held = nil
		g.held--
		if err := g.emitValid(r, false); err != nil {
			return err
		}
		// The held event was buffered offline: sent after the event that
		// overtook it, with its original timestamp.
		h.recv = r.recv.Add(time.Duration(200+g.noise.IntN(3000)) * time.Millisecond)
		h.sent = h.recv.Add(-time.Duration(30+g.noise.IntN(220)) * time.Millisecond)
		return g.emitValid(h, true)
	}
	if d != nil && !r.lastInSession && g.cfg.LateShare > 0 &&
		g.noise.Float64() < 2*g.cfg.LateShare &&
		float64(g.late+g.held) < g.cfg.LateShare*float64(g.truth.valid+1) {
		d.held = r
		g.held++
		return nil
	}
	return g.emitValid(r, false)
}

// emitValid writes a clean event and, at the requested shares, an invalid
// copy of it and a later duplicate.
func (g *gen) emitValid(r *rec, late bool) error {
	e := r.ev
	skew := time.Duration(0)
	if r.d != nil {
		skew = r.d.skew
	}
	e.Timestamp = formatTS(r.at.Add(skew))
	e.SentAt = formatTS(r.sent.Add(skew))
	e.ReceivedAt = formatTS(r.recv)
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if late {
		g.late++
	}
	if err := g.writeLine(outLine{line: line, r: r, kind: lineValid, late: late, msgID: e.MessageID}); err != nil {
		return err
	}
	lines := float64(g.truth.lines)
	if g.invalidRate > 0 && g.noise.Float64() < g.invalidRate &&
		float64(g.truth.invalid+1) <= g.cfg.InvalidShare*(lines+1) {
		if err := g.writeLine(g.makeInvalid(r)); err != nil {
			return err
		}
	}
	if g.dupRate > 0 && g.noise.Float64() < g.dupRate &&
		float64(g.truth.dups+len(g.pending)+1) <= g.cfg.DupShare*(lines+1) {
		due := g.truth.lines + 1 + g.noise.IntN(30)
		i := len(g.pending)
		for i > 0 && g.pending[i-1].due > due {
			i--
		}
		g.pending = append(g.pending, pendingDup{})
		copy(g.pending[i+1:], g.pending[i:])
		g.pending[i] = pendingDup{due: due, out: outLine{line: line, r: r, kind: lineDup, msgID: e.MessageID}}
	}
	return nil
}

// makeInvalid breaks a copy of r's event in one way, chosen by weight, and
// gives it its own messageId.
func (g *gen) makeInvalid(r *rec) outLine {
	reason := invalidReasons[pickWeighted(g.noise, invalidWeights)].reason
	e := r.ev.clone()
	e.MessageID = uuid4(g.noise)
	switch reason {
	case ReasonMissingEventName:
		e.Type, e.Event, e.Name = "track", "", ""
	case ReasonNoIdentifier:
		e.UserID, e.AnonymousID, e.Traits = "", "", nil
		if e.Context != nil {
			e.Context.Device, e.Context.Traits = nil, nil
		}
	case ReasonTimestamp1970:
		// The device clock says 1970 while sentAt is right, so skew
		// correction cannot rescue it: the corrected time stays in
		// early January 1970 whatever the device's own skew.
		skew := time.Duration(0)
		if r.d != nil {
			skew = r.d.skew
		}
		t := time.Unix(0, 0).Add(72*time.Hour + time.Duration(g.noise.IntN(86400))*time.Second + skew)
		e.Timestamp = formatTS(t)
	case ReasonTimestamp2100:
		skew := time.Duration(0)
		if r.d != nil {
			skew = r.d.skew
		}
		e.Timestamp = formatTS(r.at.AddDate(2100-r.at.Year(), 0, 0).Add(72*time.Hour + skew))
	case ReasonOversize:
		if e.Properties == nil {
			e.Properties = &properties{Currency: currency}
		}
		line, _ := json.Marshal(e)
		size := len(line)
		// Twice the limit in JSON, so the event's far more compact Avro
		// encoding, which is what the pipeline measures, is over it too.
		for size <= 2*OversizeBytes {
			p := &g.cfg.Catalog[g.noise.IntN(len(g.cfg.Catalog))]
			ep := evProduct{ProductID: p.ID, SKU: p.SKU, Category: p.Category, Name: p.Name,
				Price: pounds(p.PriceCents), Quantity: 1}
			b, _ := json.Marshal(ep)
			size += len(b) + 1
			e.Properties.Products = append(e.Properties.Products, ep)
		}
	}
	line, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("generate: marshal invalid event: %v", err)) // plain structs cannot fail
	}
	return outLine{line: line, r: r, kind: lineInvalid, reason: reason, msgID: e.MessageID}
}

// writeLine hands one line to the sink, records it, and then writes the
// duplicates that have become due.
func (g *gen) writeLine(o outLine) error {
	if !g.durationOnly && g.truth.lines >= g.cfg.Events {
		return errDone
	}
	if err := g.sink.Write(g.ctx, o.line); err != nil {
		return fmt.Errorf("writing event %d: %w", g.truth.lines+1, err)
	}
	g.truth.addLine(o)
	if g.truth.lines&1023 == 0 {
		if err := g.ctx.Err(); err != nil {
			return err
		}
	}
	for len(g.pending) > 0 && g.pending[0].due <= g.truth.lines {
		p := g.pending[0]
		g.pending = g.pending[1:]
		if err := g.writeLine(p.out); err != nil {
			return err
		}
	}
	if !g.durationOnly && g.truth.lines >= g.cfg.Events {
		return errDone
	}
	return nil
}
