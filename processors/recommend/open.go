package recommend

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// TopicsOf returns the default topics under svc's prefix.
func TopicsOf(svc config.Services) Topics {
	return Topics{Input: svc.Topic("events.resolved"), Recommendations: svc.Topic("recommendations"), Scores: svc.Topic("profiles.scores"),
		Orders: svc.Topic("recommend.orders"), DLQ: svc.Topic("events.dlq")}
}

// Open connects the recommend processor to the services in svc with the
// topology's settings: it registers the output schemas (so registry
// problems surface before the first record), rebuilds the global models
// from the orders changelog and waits until that is done, and starts the
// refits. It returns the processor and a function that stops the
// background work and releases the connections. Metrics go to pm and reg
// (reg may be nil).
func Open(ctx context.Context, svc config.Services, spec topology.RecommendSpec, pm *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, func(), error) {
	cfg, err := FromSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	return OpenWith(ctx, svc, cfg, TopicsOf(svc), pm, reg, log)
}

// OpenWith is Open with a Config and topics of the caller's (tests).
func OpenWith(ctx context.Context, svc config.Services, cfg Config, topics Topics, pm *processing.Metrics, reg prometheus.Registerer, log *zap.Logger) (*Processor, func(), error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, nil, fmt.Errorf("recommend metrics: %w", err)
	}
	rdb, err := config.NewRedis(svc.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	stops = append(stops, func() { rdb.Close() })
	fail := func(err error) (*Processor, func(), error) {
		cleanup()
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
	for _, out := range []struct{ topic, schema string }{
		{topics.Recommendations, schemas.RecommendationSchema}, {topics.Scores, schemas.CustomerScoresSchema},
	} {
		if _, err := serde.Register(ctx, out.topic, out.schema); err != nil {
			return fail(fmt.Errorf("registering the schema of %s: %w", out.topic, err))
		}
	}
	shared := NewShared(cfg, m, log)
	bctx, cancel := context.WithCancel(context.Background())
	stops = append(stops, cancel)
	b, err := startBuilder(ctx, bctx, svc.KafkaBrokers, topics.Orders, shared, log)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, b.Close)
	if err := b.Wait(ctx); err != nil {
		return fail(fmt.Errorf("rebuilding the item associations from %s: %w", topics.Orders, err))
	}
	st, orders := shared.Stats()
	log.Info("item associations rebuilt from the orders changelog", zap.Int64("orders", orders), zap.Int("items", st.Items), zap.Int("pairs", st.Pairs))
	refitDone := make(chan struct{})
	go func() {
		defer close(refitDone)
		shared.refitLoop(bctx)
	}()
	stops = append(stops, func() { cancel(); <-refitDone })
	p, err := NewProcessor(cfg, topics, serde, rdb, svc.TopicPrefix+":", shared, pm, log)
	if err != nil {
		return fail(err)
	}
	return p, cleanup, nil
}
