package features

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/processors/features/definition"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// ConfigFrom derives the processor's Config from the topology and the
// services' topic prefix, checking that the fold topic is co-partitioned
// with the resolved topic.
func ConfigFrom(topo *topology.Topology, svc config.Services) (Config, *definition.Set, error) {
	set, err := definition.Compile(topo.Features)
	if err != nil {
		return Config{}, nil, fmt.Errorf("features in the topology: %w", err)
	}
	resolved, ok := topo.Topic("events.resolved")
	if !ok {
		return Config{}, nil, fmt.Errorf("the topology has no events.resolved topic")
	}
	fold, ok := topo.Topic("features.fold")
	if !ok {
		return Config{}, nil, fmt.Errorf("the topology has no features.fold topic (the features processor's internal topic)")
	}
	if fold.Partitions != resolved.Partitions {
		return Config{}, nil, fmt.Errorf("features.fold has %d partitions and events.resolved %d: they must be equal", fold.Partitions, resolved.Partitions)
	}
	return Config{
		ResolvedTopic: svc.Topic("events.resolved"), MergesTopic: svc.Topic("identity.merges"),
		FoldTopic: svc.Topic("features.fold"), ChangesTopic: svc.Topic("profiles.changes"), DLQTopic: svc.Topic("events.dlq"),
		Partitions: int(resolved.Partitions), Prefix: svc.TopicPrefix + ":",
	}, set, nil
}

// Definitions compiles the topology's feature definitions.
func Definitions(topo *topology.Topology) (*definition.Set, error) {
	set, err := definition.Compile(topo.Features)
	if err != nil {
		return nil, fmt.Errorf("features in the topology: %w", err)
	}
	return set, nil
}

// Open connects the features processor to the services in svc (Redis, the
// schema registry, Kafka to check the topics), registers its output schema,
// and returns it with a function that releases its connections.
func Open(ctx context.Context, svc config.Services, topo *topology.Topology, m *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, func(), error) {
	cfg, set, err := ConfigFrom(topo, svc)
	if err != nil {
		return nil, nil, err
	}
	if err := checkPartitions(ctx, svc.KafkaBrokers, cfg); err != nil {
		return nil, nil, err
	}
	rdb, err := config.NewRedis(svc.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("redis at %s: %w", svc.RedisURL, err)
	}
	src, err := sr.NewClient(sr.URLs(svc.SchemaRegistryURL))
	if err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("schema registry client: %w", err)
	}
	serde := schemas.NewSerde(src)
	if _, err := serde.Register(ctx, cfg.ChangesTopic, schemas.ProfileChangeSchema); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("registering the schema of %s: %w", cfg.ChangesTopic, err)
	}
	p, err := NewProcessor(cfg, set, serde, rdb, m, reg, log)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return p, func() { rdb.Close() }, nil
}

// checkPartitions compares the topics in Kafka with the topology: the
// state layout depends on the resolved topic's partition count.
func checkPartitions(ctx context.Context, brokers []string, cfg Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, cfg.ResolvedTopic, cfg.FoldTopic)
	if err != nil {
		return fmt.Errorf("listing topics %s and %s: %w", cfg.ResolvedTopic, cfg.FoldTopic, err)
	}
	for _, name := range []string{cfg.ResolvedTopic, cfg.FoldTopic} {
		t, ok := td[name]
		if !ok || t.Err != nil {
			return fmt.Errorf("topic %s does not exist: run `cdp topology apply`", name)
		}
		if n := len(t.Partitions); n != cfg.Partitions {
			return fmt.Errorf("topic %s has %d partitions but the topology declares %d: the features store is laid out by the resolved topic's partitions; "+
				"make Kafka and the topology agree (and rebuild the features store if the count changed)", name, n, cfg.Partitions)
		}
	}
	return nil
}
