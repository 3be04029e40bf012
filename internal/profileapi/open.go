package profileapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/recommend"
	"github.com/streamcdp/streamcdp/processors/segments"
	"github.com/streamcdp/streamcdp/topology"
)

// Opened is a Service over the deployment's stores, with its readiness
// check and what to release.
type Opened struct {
	Service *Service
	// Ready pings every Redis the API reads.
	Ready func(context.Context) error
	Close func()
	// Graph and Segments are the readers the Service uses, for callers
	// that also want the stores' counters (cdp dev's summary).
	Graph    *identity.Graph
	Segments *segments.Reader
}

// Open connects to the stores the processors of svc's deployment write,
// laid out as the topology says, exactly as the processors derive them:
// the identity graph (CDP_IDENTITY_REDIS_URL or CDP_REDIS_URL), the
// feature, segment and recommendation stores (CDP_REDIS_URL). Kafka is
// asked once for the resolved topic's partition count, by which the
// recommend processor lays out its state. events may be nil.
func Open(ctx context.Context, svc config.Services, topo *topology.Topology, events EventStore) (*Opened, error) {
	rules, _, space, err := identity.FromSpec(topo.Identity)
	if err != nil {
		return nil, err
	}
	fcfg, fset, err := features.ConfigFrom(topo, svc)
	if err != nil {
		return nil, err
	}
	scfg, sset, _, err := segments.ConfigFrom(topo, svc)
	if err != nil {
		return nil, err
	}
	var clients []redis.UniversalClient
	closeAll := func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}
	connect := func(url string) (redis.UniversalClient, error) {
		c, err := config.NewRedis(url)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		if err := c.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("redis at %s: %w", url, err)
		}
		return c, nil
	}
	rdb, err := connect(svc.RedisURL)
	if err != nil {
		closeAll()
		return nil, err
	}
	idb := rdb
	if svc.IdentityRedis() != svc.RedisURL {
		if idb, err = connect(svc.IdentityRedis()); err != nil {
			closeAll()
			return nil, err
		}
	}
	graph, err := identity.NewGraph(idb, identity.WithRules(rules), identity.WithSpace(space), identity.WithPrefix(svc.TopicPrefix+":"))
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("opening the identity graph: %w", err)
	}
	rec, err := recommend.OpenReader(ctx, svc, rdb)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("opening the recommendations reader: %w", err)
	}
	seg := segments.NewReader(rdb, scfg, sset, nil)
	s := NewService(Stores{
		Redis:           rdb,
		IdentityRedis:   idb,
		Identities:      graph,
		Features:        features.NewReader(rdb, fcfg, fset),
		Segments:        seg,
		Recommendations: rec,
		Events:          events,
		IdentifierTypes: rules.Priority,
	})
	ready := func(ctx context.Context) error {
		var errs []error
		for _, c := range clients {
			if err := c.Ping(ctx).Err(); err != nil {
				errs = append(errs, fmt.Errorf("redis: %w", err))
			}
		}
		return errors.Join(errs...)
	}
	return &Opened{Service: s, Ready: ready, Close: closeAll, Graph: graph, Segments: seg}, nil
}
