package identity

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// FromSpec turns the topology's identity section into Rules, the custom
// identifiers and the space name. Fields left out keep DefaultRules; custom
// types missing from the priority list are appended to it (lowest
// priority), since an unlisted type would be rejected.
func FromSpec(s topology.IdentitySpec) (Rules, []CustomIdentifier, string, error) {
	r := DefaultRules()
	if len(s.Priority) > 0 {
		r.Priority = append([]string(nil), s.Priority...)
	}
	if s.Limits != nil {
		r.Limits = s.Limits
	}
	r.Blocked = s.Blocked
	r.DefaultRegion = s.DefaultRegion
	if s.DedupShards != nil {
		r.DedupShards = *s.DedupShards
	}
	if s.DedupKeyIDs != 0 {
		r.DedupKeyIDs = s.DedupKeyIDs
	}
	if s.MaxIdentifiers != nil {
		r.MaxIdentifiers = *s.MaxIdentifiers
	}
	if s.DedupWindow != "" {
		d, err := time.ParseDuration(s.DedupWindow)
		if err != nil {
			return Rules{}, nil, "", fmt.Errorf("identity.dedup_window %q: %w", s.DedupWindow, err)
		}
		r.DedupWindow = d
	}
	custom := make([]CustomIdentifier, len(s.Custom))
	for i, c := range s.Custom {
		custom[i] = CustomIdentifier{Type: c.Type, Path: c.Path}
		listed := false
		for _, p := range r.Priority {
			listed = listed || p == c.Type
		}
		if !listed {
			r.Priority = append(r.Priority, c.Type)
		}
	}
	if err := r.Validate(); err != nil {
		return Rules{}, nil, "", fmt.Errorf("identity rules in the topology: %w", err)
	}
	space := s.Space
	if space == "" {
		space = DefaultSpace
	}
	return r, custom, space, nil
}

// Open connects the identity processor to the services in svc (Redis, the
// schema registry) with the topology's rules, registers its output schemas
// (so registry and compatibility problems surface before the first record),
// and returns it with a function that releases its connections. Metrics go
// to m and reg; reg may be nil.
func Open(ctx context.Context, svc config.Services, spec topology.IdentitySpec, m *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, func(), error) {
	rules, custom, space, err := FromSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	rdb, err := config.NewRedis(svc.IdentityRedis())
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*Processor, func(), error) {
		rdb.Close()
		return nil, nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fail(fmt.Errorf("redis at %s: %w", svc.IdentityRedis(), err))
	}
	g, err := NewGraph(rdb, WithRules(rules), WithSpace(space), WithPrefix(svc.TopicPrefix+":"))
	if err != nil {
		return fail(err)
	}
	src, err := sr.NewClient(sr.URLs(svc.SchemaRegistryURL))
	if err != nil {
		return fail(fmt.Errorf("schema registry client: %w", err))
	}
	serde := schemas.NewSerde(src)
	cfg := ProcessorConfig{
		ResolvedTopic: svc.Topic("events.resolved"), MergesTopic: svc.Topic("identity.merges"),
		DLQTopic: svc.Topic("events.dlq"), Custom: custom,
	}
	for _, out := range []struct{ topic, schema string }{
		{cfg.ResolvedTopic, schemas.ResolvedEventSchema}, {cfg.MergesTopic, schemas.IdentityMergeSchema},
	} {
		if _, err := serde.Register(ctx, out.topic, out.schema); err != nil {
			return fail(fmt.Errorf("registering the schema of %s: %w", out.topic, err))
		}
	}
	p, err := NewProcessor(cfg, serde, g, rdb, m, reg, log)
	if err != nil {
		return fail(err)
	}
	return p, func() { rdb.Close() }, nil
}

// Graph returns the processor's identity graph (for lookups and tests).
func (p *Processor) Graph() *Graph { return p.graph }
