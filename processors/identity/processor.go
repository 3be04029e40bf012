package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

// CodeNoIdentifier is the dead-letter code of a valid event none of whose
// identifiers survived the rules (all blocked or invalid).
const CodeNoIdentifier = "no_usable_identifier"

// HeaderRejected is set on a resolved record when some of the event's
// identifiers were not linked; its value is a JSON array of
// {"type","value","rule","reason"} objects. This is where merge-protection
// decisions are recorded for downstream audit (and in the
// cdp_identity_rejections_total metric).
const HeaderRejected = "cdp.identity.rejected"

// CustomIdentifier names an identifier type taken from a field of the event:
// Path is "traits.X", "context.traits.X", "properties.X" or
// "context.extra.X" (top-level keys of those maps).
type CustomIdentifier struct {
	Type string `yaml:"type"`
	Path string `yaml:"path"`
}

// ProcessorConfig are the identity processor's topics and extraction rules.
type ProcessorConfig struct {
	ResolvedTopic, MergesTopic, DLQTopic string
	Custom                               []CustomIdentifier
}

// Processor is the identity stage: raw events in, resolved events, merges
// and dead letters out. It implements processing.Processor (a task per
// raw partition, journaled in the graph's slot) and processing.Checker.
type Processor struct {
	cfg        ProcessorConfig
	serde      *schemas.Serde
	graph      *Graph
	journal    *journal.Redis
	rdb        redis.UniversalClient
	log        *zap.Logger
	dropped    *prometheus.CounterVec
	rejections *prometheus.CounterVec
	merges     prometheus.Counter
	now        func() time.Time
	// emitHook, for tests, runs before each record's outputs are emitted;
	// an error fails the Process call there.
	emitHook func(offset int64) error
}

// NewProcessor wires the stage. m provides the dropped counter; the
// identity-specific metrics are registered in reg.
func NewProcessor(cfg ProcessorConfig, serde *schemas.Serde, g *Graph, rdb redis.UniversalClient, m *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, error) {
	if cfg.ResolvedTopic == "" || cfg.MergesTopic == "" || cfg.DLQTopic == "" {
		return nil, fmt.Errorf("identity: resolved, merges and DLQ topics are required")
	}
	for _, c := range cfg.Custom {
		if _, _, ok := splitPath(c.Path); !ok {
			return nil, fmt.Errorf("identity: custom identifier %s: path %q must be traits.X, context.traits.X, properties.X or context.extra.X", c.Type, c.Path)
		}
	}
	p := &Processor{
		cfg: cfg, serde: serde, graph: g, rdb: rdb, log: log, now: time.Now,
		journal: journal.New(rdb, g.prefix, "identity", journal.WithTag(func(processing.TopicPartition) string { return g.space })),
		dropped: m.Dropped,
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "identity", Name: "rejections_total",
			Help: "Identifiers not linked, by rule (blocked, invalid, limit, merge_protection, ...)."}, []string{"rule"}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "identity", Name: "merges_total",
			Help: "Profile merges emitted."}),
	}
	if reg != nil {
		if err := reg.Register(p.rejections); err != nil {
			return nil, err
		}
		if err := reg.Register(p.merges); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Identifiers extracts an event's identifiers: user id, anonymous id (and
// an alias call's previous id, which names an earlier anonymous identity),
// email and phone from traits or context.traits, the device id, and the
// configured custom identifiers. Normalisation and blocking happen in the
// graph.
func Identifiers(ev *schemas.Event, custom []CustomIdentifier) []Identifier {
	ids := make([]Identifier, 0, 6)
	add := func(t, v string) {
		if v != "" {
			ids = append(ids, Identifier{t, v})
		}
	}
	add(TypeUserID, ev.UserID)
	add(TypeAnonymousID, ev.AnonymousID)
	if ev.Type == schemas.Alias && ev.PreviousID != ev.AnonymousID {
		add(TypeAnonymousID, ev.PreviousID)
	}
	for _, m := range []map[string]json.RawMessage{ev.Traits, ev.Context.Traits} {
		if v, ok := schemas.StringValue(m["email"]); ok {
			add(TypeEmail, v)
		}
		if v, ok := schemas.StringValue(m["phone"]); ok {
			add(TypePhone, v)
		}
	}
	add(TypeDeviceID, ev.Context.Device.ID)
	for _, c := range custom {
		field, key, _ := splitPath(c.Path)
		var m map[string]json.RawMessage
		switch field {
		case "traits":
			m = ev.Traits
		case "context.traits":
			m = ev.Context.Traits
		case "properties":
			m = ev.Properties
		case "context.extra":
			m = ev.Context.Extra
		}
		if v, ok := schemas.StringValue(m[key]); ok {
			add(c.Type, v)
		} else if raw := m[key]; len(raw) > 0 && raw[0] != '"' && string(raw) != "null" {
			add(c.Type, string(raw)) // a number: keep its JSON text
		}
	}
	return ids
}

func splitPath(p string) (field, key string, ok bool) {
	for _, f := range []string{"context.traits", "context.extra", "traits", "properties"} {
		if k, found := strings.CutPrefix(p, f+"."); found && k != "" {
			return f, k, true
		}
	}
	return "", "", false
}

// NewTask implements processing.Processor: identity keeps no state per
// partition besides the journal, which the runtime reads.
func (p *Processor) NewTask(tp processing.TopicPartition) (processing.Task, error) {
	if p.journal == nil {
		return nil, fmt.Errorf("identity: the processor has no journal (use Open, or WithJournal)")
	}
	return &task{p: p, tp: tp}, nil
}

// task is the identity work of one partition of the raw topic.
type task struct {
	p  *Processor
	tp processing.TopicPartition
}

func (t *task) Open(context.Context, *processing.TaskContext) error { return nil }
func (t *task) Close(processing.CloseReason)                        {}

// Process decodes, validates and resolves one partition's records, every
// decision journaled with the graph's changes. Decode and validation
// failures become dead letters; a registry or Redis outage returns a
// transient error so the records come again after a backoff.
//
// The records go to the graph in chunks (Graph.ChunkSize), one script call
// each, and the task works on its side of the neighbouring chunks while
// Redis runs one: it decodes and prepares chunk i+1 during chunk i's call,
// and encodes chunk i's outputs during chunk i+1's. The calls themselves
// stay one after another, in offset order, as the journal's chain needs.
// Redis is the stage's limit, and without the overlap it would wait for
// the client's share of every poll.
func (t *task) Process(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) error {
	p := t.p
	now := p.now()
	size := p.graph.ChunkSize()
	type flight struct {
		recs    []*kgo.Record
		events  []schemas.Event
		results []Result
		err     error
		done    chan struct{}
	}
	var inFlight *flight
	// wait ends the call in flight: its results, or its error.
	wait := func() (*flight, error) {
		f := inFlight
		inFlight = nil
		if f == nil {
			return nil, nil
		}
		<-f.done
		if f.err != nil {
			return nil, fmt.Errorf("resolving identities of %s from offset %d: %w", t.tp, f.recs[0].Offset, f.err)
		}
		return f, nil
	}
	emit := func(f *flight) error {
		for i, res := range f.results {
			if p.emitHook != nil {
				if err := p.emitHook(f.recs[i].Offset); err != nil {
					return err
				}
			}
			if err := p.emit(ctx, tc, f.recs[i], &f.events[i], res, now); err != nil {
				return err
			}
		}
		return nil
	}
	for start := 0; start < len(recs); start += size {
		part := recs[start:min(start+size, len(recs))]
		events, b, err := t.prepare(ctx, tc, part)
		if err != nil {
			_, _ = wait() // nothing may be in flight when Process returns
			return err
		}
		done, err := wait()
		if err != nil {
			return err
		}
		f := &flight{recs: part, events: events, done: make(chan struct{})}
		inFlight = f
		go func() {
			defer close(f.done)
			defer func() { // as the runtime does for Process itself
				if v := recover(); v != nil {
					f.err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
				}
			}()
			f.results, f.err = p.graph.Apply(ctx, b)
		}()
		if done != nil {
			if err := emit(done); err != nil {
				_, _ = wait()
				return err
			}
		}
	}
	last, err := wait()
	if err != nil {
		return err
	}
	return emit(last)
}

// prepare decodes and validates a chunk of records and prepares them for
// the graph, taking the chunk's journal step.
func (t *task) prepare(ctx context.Context, tc *processing.TaskContext, recs []*kgo.Record) ([]schemas.Event, *Batch, error) {
	p := t.p
	inputs := make([]Input, len(recs))
	events := make([]schemas.Event, len(recs))
	for i, rec := range recs {
		ev := &events[i]
		inputs[i].Offset = rec.Offset
		if err := p.serde.DecodeInto(ctx, rec.Value, ev); err != nil {
			if schemas.IsTransient(err) {
				return nil, nil, processing.Transient(fmt.Errorf("decoding %s@%d: %w", t.tp, rec.Offset, err))
			}
			inputs[i].Decided = DeadLetterReceipt(dlq.FailureOf(dlq.StageDecode, err))
			continue
		}
		if err := validate.Event(ev, len(rec.Value), rec.Timestamp); err != nil {
			inputs[i].Decided = DeadLetterReceipt(dlq.FailureOf(dlq.StageValidate, err))
			continue
		}
		inputs[i].MessageID = ev.MessageID
		inputs[i].Identifiers = Identifiers(ev, p.cfg.Custom)
		inputs[i].Time = ev.EventTime(rec.Timestamp)
	}
	j := p.journal
	b, err := p.graph.Prepare(inputs, func(first, last int64) ([]string, []any) {
		return j.Keys(t.tp), journal.StepArgs(tc.BeginStep(first, last))
	})
	if err != nil {
		return nil, nil, fmt.Errorf("resolving identities of %s from offset %d: %w", t.tp, recs[0].Offset, err)
	}
	return events, b, nil
}

// Replay implements processing.Replayer: the outputs of a record whose
// effects are in the graph, rebuilt from its receipt.
func (t *task) Replay(ctx context.Context, tc *processing.TaskContext, rec *kgo.Record, receipt []byte) error {
	p := t.p
	var ev schemas.Event
	blob := string(receipt)
	if blob != "D" && !strings.HasPrefix(blob, "Q") {
		// The event decoded when it was resolved, so it decodes now: the
		// writer schema of an id never changes.
		if err := p.serde.DecodeInto(ctx, rec.Value, &ev); err != nil {
			return processing.Transient(fmt.Errorf("decoding %s@%d again: %w", t.tp, rec.Offset, err))
		}
	}
	res, err := p.graph.Decode(blob, ev.MessageID, ev.EventTime(rec.Timestamp))
	if err != nil {
		return fmt.Errorf("receipt of %s@%d: %w", t.tp, rec.Offset, err)
	}
	return p.emit(ctx, tc, rec, &ev, res, p.now())
}

// emit produces what one event's result says: a resolved event and its
// merges, a dead letter, or nothing (a duplicate).
func (p *Processor) emit(ctx context.Context, tc *processing.TaskContext, rec *kgo.Record, ev *schemas.Event, res Result, now time.Time) error {
	for _, r := range res.Rejected {
		p.rejections.WithLabelValues(r.Rule).Inc()
	}
	switch {
	case res.Duplicate:
		p.dropped.WithLabelValues("identity", "duplicate").Inc()
		return nil
	case res.DeadLetter != nil:
		tc.Emit(p.deadLetter(rec, *res.DeadLetter, now))
		return nil
	}
	resolved := schemas.ResolvedEvent{ProfileID: res.ProfileID, Timestamp: ev.EventTime(rec.Timestamp), Event: *ev}
	val, err := p.serde.EncodeResolvedFrom(ctx, nil, p.cfg.ResolvedTopic, rec.Value, &resolved)
	if err != nil {
		return fmt.Errorf("encoding resolved event %s: %w", ev.MessageID, err)
	}
	r := &kgo.Record{Topic: p.cfg.ResolvedTopic, Key: []byte(res.ProfileID), Value: val, Timestamp: rec.Timestamp}
	if len(res.Rejected) > 0 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderRejected, Value: rejectionJSON(res.Rejected)})
	}
	tc.Emit(r)
	for _, m := range res.Merges {
		mv, err := p.serde.EncodeNative(ctx, p.cfg.MergesTopic, schemas.IdentityMergeSchema, mergeNative(m))
		if err != nil {
			return fmt.Errorf("encoding merge %s: %w", m.ID, err)
		}
		// Keyed by the survivor, so every merge into one profile is in
		// order on one partition.
		tc.Emit(&kgo.Record{Topic: p.cfg.MergesTopic, Key: []byte(m.Into), Value: mv, Timestamp: rec.Timestamp})
		p.merges.Inc()
	}
	return nil
}

// Journal is where the processor's tasks journal their steps: in the
// graph's hash slot, so that a step is one script call with the graph's
// changes. The runner needs it in its Config.
func (p *Processor) Journal() *journal.Redis { return p.journal }

func (p *Processor) deadLetter(rec *kgo.Record, f dlq.Failure, now time.Time) *kgo.Record {
	p.dropped.WithLabelValues("identity", "dlq:"+f.Code).Inc()
	return dlq.New(rec, p.cfg.DLQTopic, f, now)
}

func mergeNative(m Merge) map[string]any {
	ids := make([]any, len(m.Moved))
	for i, id := range m.Moved {
		ids[i] = map[string]any{"type": id.Type, "value": id.Value}
	}
	var trigger any
	if m.TriggerMessageID != "" {
		trigger = map[string]any{"string": m.TriggerMessageID}
	}
	return map[string]any{
		"merge_id": m.ID, "from_profile": m.From, "into_profile": m.Into, "identifiers": ids,
		"trigger_message_id": trigger, "rule": m.Rule, "time": m.Time,
	}
}

func rejectionSummary(rs []Rejection) string {
	if len(rs) == 0 {
		return "the event has no identifier"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Reason
	}
	return strings.Join(parts, "; ")
}

type rejectionJ struct {
	Type   string `json:"type"`
	Value  string `json:"value"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

func rejectionJSON(rs []Rejection) []byte {
	out := make([]rejectionJ, len(rs))
	for i, r := range rs {
		out[i] = rejectionJ{r.Identifier.Type, r.Identifier.Value, r.Rule, r.Reason}
	}
	b, _ := json.Marshal(out)
	return b
}

func parseRejections(s string) ([]Rejection, error) {
	var js []rejectionJ
	if err := json.Unmarshal([]byte(s), &js); err != nil {
		return nil, fmt.Errorf("rejections in a receipt: %w", err)
	}
	out := make([]Rejection, len(js))
	for i, j := range js {
		out[i] = Rejection{Identifier: Identifier{j.Type, j.Value}, Rule: j.Rule, Reason: j.Reason}
	}
	return out, nil
}

// Check reports whether Redis answers.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
