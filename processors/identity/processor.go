package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/dlq"
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
// and dead letters out. It implements processing.Handler, Committer and
// Checker.
type Processor struct {
	cfg        ProcessorConfig
	serde      *schemas.Serde
	graph      *Graph
	rdb        redis.UniversalClient
	log        *zap.Logger
	dropped    *prometheus.CounterVec
	rejections *prometheus.CounterVec
	merges     prometheus.Counter
	now        func() time.Time
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

// Process decodes, validates and resolves one partition's records. Decode
// and validation failures become dead letters; a registry or Redis outage
// returns an error so the batch is retried.
func (p *Processor) Process(ctx context.Context, topic string, partition int32, recs []*kgo.Record) ([]*kgo.Record, error) {
	now := p.now()
	out := make([]*kgo.Record, 0, len(recs)+len(recs)/8)
	inputs := make([]Input, 0, len(recs))
	kept := make([]int, 0, len(recs)) // index in recs of each input
	events := make([]schemas.Event, len(recs))
	for i, rec := range recs {
		ev := &events[i]
		if err := p.serde.DecodeInto(ctx, rec.Value, ev); err != nil {
			if schemas.IsTransient(err) {
				return nil, fmt.Errorf("decoding %s[%d]@%d: %w", topic, partition, rec.Offset, err)
			}
			out = append(out, p.deadLetter(rec, dlq.FailureOf(dlq.StageDecode, err), now))
			continue
		}
		if err := validate.Event(ev, len(rec.Value), rec.Timestamp); err != nil {
			out = append(out, p.deadLetter(rec, dlq.FailureOf(dlq.StageValidate, err), now))
			continue
		}
		inputs = append(inputs, Input{
			MessageID:   ev.MessageID,
			Identifiers: Identifiers(ev, p.cfg.Custom),
			Time:        ev.EventTime(rec.Timestamp),
			Partition:   partition,
			Offset:      rec.Offset,
		})
		kept = append(kept, i)
	}
	if len(inputs) == 0 {
		return out, nil
	}
	results, err := p.graph.Resolve(ctx, inputs)
	if err != nil {
		return nil, fmt.Errorf("resolving identities of %s[%d] from offset %d: %w", topic, partition, recs[0].Offset, err)
	}
	for j, res := range results {
		rec, in := recs[kept[j]], &inputs[j]
		for _, r := range res.Rejected {
			p.rejections.WithLabelValues(r.Rule).Inc()
		}
		switch {
		case res.Duplicate:
			p.dropped.WithLabelValues("identity", "duplicate").Inc()
			continue
		case res.ProfileID == "":
			out = append(out, p.deadLetter(rec, dlq.Failure{Code: CodeNoIdentifier, Stage: "identity",
				Reason: "no identifier survived the identity rules: " + rejectionSummary(res.Rejected)}, now))
			continue
		}
		resolved := schemas.ResolvedEvent{ProfileID: res.ProfileID, Timestamp: in.Time, Event: events[kept[j]]}
		val, err := p.serde.EncodeResolvedFrom(ctx, nil, p.cfg.ResolvedTopic, rec.Value, &resolved)
		if err != nil {
			return nil, fmt.Errorf("encoding resolved event %s: %w", in.MessageID, err)
		}
		r := &kgo.Record{Topic: p.cfg.ResolvedTopic, Key: []byte(res.ProfileID), Value: val, Timestamp: rec.Timestamp}
		if len(res.Rejected) > 0 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderRejected, Value: rejectionJSON(res.Rejected)})
		}
		out = append(out, r)
		for _, m := range res.Merges {
			mv, err := p.serde.EncodeNative(ctx, p.cfg.MergesTopic, schemas.IdentityMergeSchema, mergeNative(m))
			if err != nil {
				return nil, fmt.Errorf("encoding merge %s: %w", m.ID, err)
			}
			// Keyed by the survivor, so every merge into one profile is in
			// order on one partition.
			out = append(out, &kgo.Record{Topic: p.cfg.MergesTopic, Key: []byte(m.Into), Value: mv, Timestamp: rec.Timestamp})
			p.merges.Inc()
		}
	}
	return out, nil
}

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

func rejectionJSON(rs []Rejection) []byte {
	type j struct {
		Type   string `json:"type"`
		Value  string `json:"value"`
		Rule   string `json:"rule"`
		Reason string `json:"reason"`
	}
	out := make([]j, len(rs))
	for i, r := range rs {
		out[i] = j{r.Identifier.Type, r.Identifier.Value, r.Rule, r.Reason}
	}
	b, _ := json.Marshal(out)
	return b
}

// Committed drops the graph's stored results up to the committed offset.
func (p *Processor) Committed(ctx context.Context, _ string, partition int32, next int64) error {
	return p.graph.Committed(ctx, partition, next-1)
}

// Check reports whether Redis answers.
func (p *Processor) Check(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
