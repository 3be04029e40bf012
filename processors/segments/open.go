package segments

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// ConfigFrom derives the processor's Config and rules from the topology and
// the services' topic prefix, with the feature store's Config.
func ConfigFrom(topo *topology.Topology, svc config.Services) (Config, *rules.Set, features.Config, error) {
	fcfg, fset, err := features.ConfigFrom(topo, svc)
	if err != nil {
		return Config{}, nil, fcfg, err
	}
	set, err := rules.Compile(topo.Segments, fset)
	if err != nil {
		return Config{}, nil, fcfg, fmt.Errorf("segments in the topology: %w", err)
	}
	changes, ok := topo.Topic("profiles.changes")
	if !ok {
		return Config{}, nil, fcfg, fmt.Errorf("the topology has no profiles.changes topic")
	}
	cfg := Config{
		ChangesTopic: svc.Topic("profiles.changes"), MembershipTopic: svc.Topic("segments.membership"),
		DLQTopic: svc.Topic("events.dlq"), Partitions: int(changes.Partitions), Prefix: svc.TopicPrefix + ":",
		SegmentTopics: map[string]string{},
	}
	if set.AudienceEvents {
		cfg.AudiencesTopic = svc.Topic("segments.audiences")
	}
	for _, s := range set.Segments {
		if s.Topic != "" {
			cfg.SegmentTopics[s.Name] = svc.Topic(s.Topic)
		}
	}
	return cfg, set, fcfg, nil
}

// Open connects the segments processor to the services in svc and returns
// it with a function that releases its connections.
func Open(ctx context.Context, svc config.Services, topo *topology.Topology, m *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, func(), error) {
	cfg, set, fcfg, err := ConfigFrom(topo, svc)
	if err != nil {
		return nil, nil, err
	}
	fset, err := features.Definitions(topo)
	if err != nil {
		return nil, nil, err
	}
	rdb, err := config.NewRedis(svc.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*Processor, func(), error) {
		rdb.Close()
		return nil, nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fail(fmt.Errorf("redis at %s: %w", svc.RedisURL, err))
	}
	src, err := sr.NewClient(sr.URLs(svc.SchemaRegistryURL))
	if err != nil {
		return fail(fmt.Errorf("schema registry client: %w", err))
	}
	serde := schemas.NewSerde(src)
	outs := map[string]string{cfg.MembershipTopic: schemas.SegmentMembershipSchema}
	for _, t := range cfg.SegmentTopics {
		outs[t] = schemas.SegmentMembershipSchema
	}
	if cfg.AudiencesTopic != "" {
		outs[cfg.AudiencesTopic] = schemas.EventSchema
	}
	for topic, schema := range outs {
		if _, err := serde.Register(ctx, topic, schema); err != nil {
			return fail(fmt.Errorf("registering the schema of %s: %w", topic, err))
		}
	}
	p, err := NewProcessor(cfg, set, features.NewReader(rdb, fcfg, fset), serde, rdb, m, reg, log)
	if err != nil {
		return fail(err)
	}
	return p, func() { rdb.Close() }, nil
}
