package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/recommend"
	"github.com/streamcdp/streamcdp/processors/segments"
	"github.com/streamcdp/streamcdp/processors/warehouse"
	"github.com/streamcdp/streamcdp/topology"
)

func init() { register(newRunCmd) }

// runDeps is what every processor builder gets.
type runDeps struct {
	svc     config.Services
	topo    *topology.Topology
	spec    topology.Processor
	metrics *processing.Metrics
	reg     *prometheus.Registry
	log     *zap.Logger
}

// built is a processor ready to run: its tasks' factory, the journal
// they write through, where records that keep failing go, and what to
// release at the end.
type built struct {
	proc       processing.Processor
	journal    processing.Journal
	deadLetter string
	kafkaOpts  []kgo.Opt
	cleanup    func()
	// tune, if set, adjusts the runtime's settings (a warehouse batches).
	tune func(*processing.Config)
}

// builders construct the processors that exist so far, by name.
var builders = map[string]func(ctx context.Context, d runDeps) (built, error){
	"identity":  buildIdentity,
	"warehouse": buildWarehouse,
	"features":  buildFeatures,
	"segments":  buildSegments,
	"recommend": buildRecommend,
}

func newRunCmd() *cobra.Command {
	var topoFile, instance, metricsAddr string
	var sessionTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "run PROCESSOR... | all",
		Short: "Run processors (identity, ...) until SIGTERM",
		Long: `Runs one or more processors of the topology in this process. Each is a
member of its own consumer group, so more instances (on this or other
machines) share its partitions. /metrics, /healthz and /readyz are served on
--metrics-addr.

--instance must be stable across restarts of one instance and unique among
running instances of a processor (default: the host name): it names the Kafka
transactional id, so a restarted instance fences its crashed predecessor.
An explicit --instance also makes it a static group member: a restart takes
its partitions back without a rebalance.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) == 1 && args[0] == "api" {
				// The deployment files run every component as `cdp run
				// <name>`; the api consumes nothing, so it is `cdp api`
				// with its settings from the environment.
				f := defaultAPIFlags()
				f.topology, f.metricsAddr = topoFile, metricsAddr
				return serveAPI(ctx, f)
			}
			log := newLogger()
			defer func() { _ = log.Sync() }()
			svc, err := config.Load()
			if err != nil {
				return err
			}
			topo, err := topologyFrom(topoFile)
			if err != nil {
				return err
			}
			names := args
			if len(args) == 1 && args[0] == "all" {
				names = allProcessors(topo, log)
			}
			return runProcessors(ctx, runOptions{svc: svc, topo: topo, names: names, instance: instance,
				metricsAddr: metricsAddr, sessionTimeout: sessionTimeout, reg: prometheus.NewRegistry(), log: log})
		},
	}
	cmd.Flags().StringVar(&topoFile, "topology", "", "topology file (default: the built-in topology)")
	cmd.Flags().StringVar(&instance, "instance", envOr("CDP_INSTANCE_ID", ""), "instance id, stable across restarts (default: host name; env CDP_INSTANCE_ID)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", envOr("CDP_METRICS_ADDR", ":9100"), "address of /metrics, /healthz, /readyz (env CDP_METRICS_ADDR)")
	cmd.Flags().DurationVar(&sessionTimeout, "session-timeout", 45*time.Second, "consumer group session timeout: how long the group waits for a silent instance (a static member's restart) before moving its partitions")
	return cmd
}

// allProcessors names the topology's processors that are built, in the
// topology's order (what `cdp run all` runs).
func allProcessors(topo *topology.Topology, log *zap.Logger) []string {
	var names []string
	for _, p := range topo.Processors {
		if _, ok := builders[p.Name]; ok {
			names = append(names, p.Name)
		} else if p.Name == "api" {
			log.Info("the api is not a processor; start it with `cdp api` (or `cdp run api` alone)")
		} else {
			log.Warn("processor not built yet; skipping", zap.String("processor", p.Name))
		}
	}
	return names
}

// runOptions are what runProcessors needs: `cdp run` fills them from its
// flags, `cdp dev` with its own registry (which it reads for its summary)
// and the API's readiness.
type runOptions struct {
	svc            config.Services
	topo           *topology.Topology
	names          []string
	instance       string
	metricsAddr    string
	sessionTimeout time.Duration
	reg            *prometheus.Registry
	log            *zap.Logger
	// ready are further checks /readyz reports besides the processors'.
	ready []processing.ReadyFunc
}

// runProcessors runs the named processors in this process, each a member
// of its own consumer group, and serves /metrics, /healthz and /readyz on
// o.metricsAddr until ctx ends.
func runProcessors(ctx context.Context, o runOptions) error {
	log, svc, topo, instance := o.log, o.svc, o.topo, o.instance
	names := o.names
	reg := o.reg
	metrics := processing.NewMetrics(reg)
	var runners []*processing.Runner
	for _, name := range names {
		spec, ok := topo.Processor(name)
		if !ok {
			return fmt.Errorf("no processor %q in the topology (have %s)", name, processorNames(topo))
		}
		build, ok := builders[name]
		if !ok {
			return fmt.Errorf("processor %q is declared but not built yet (available: %s)", name, strings.Join(slices.Sorted(mapKeys(builders)), ", "))
		}
		b, err := build(ctx, runDeps{svc: svc, topo: topo, spec: spec, metrics: metrics, reg: reg, log: log.Named(name)})
		if err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		defer b.cleanup()
		inputs := make([]string, len(spec.Inputs))
		for i, in := range spec.Inputs {
			inputs[i] = svc.Topic(in)
		}
		codec, err := svc.Compression()
		if err != nil {
			return err
		}
		id := instance
		if id == "" {
			if id, err = os.Hostname(); err != nil {
				return fmt.Errorf("no --instance and no host name: %w", err)
			}
		}
		rc := processing.Config{
			Name: name, Brokers: svc.KafkaBrokers, Group: spec.ConsumerGroup(svc.TopicPrefix), Inputs: inputs,
			InstanceID: id, StaticMembership: instance != "",
			// Transactional ids are global to the Kafka cluster: the
			// prefix keeps two environments on one cluster apart.
			TransactionalID: svc.TopicPrefix + "-" + name + "-" + id,
			Journal:         b.journal, DeadLetterTopic: b.deadLetter, SessionTimeout: o.sessionTimeout,
			Logger: log.Named(name), Metrics: metrics,
			KafkaOpts: append([]kgo.Opt{kgo.ProducerBatchCompression(codec)}, b.kafkaOpts...),
		}
		if b.tune != nil {
			b.tune(&rc)
		}
		r, err := processing.New(rc, b.proc)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}
	ready := append([]processing.ReadyFunc(nil), o.ready...)
	for _, r := range runners {
		ready = append(ready, r.Ready)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opsDone := make(chan struct{})
	go func() {
		defer close(opsDone)
		if err := processing.ServeOps(ctx, o.metricsAddr, processing.NewOpsHandler(reg, ready...)); err != nil {
			log.Error("ops server", zap.Error(err))
			cancel()
		}
	}()
	log.Info("serving /metrics /healthz /readyz", zap.String("addr", o.metricsAddr))
	// Each processor runs on its own: one that stops (a real fence)
	// is reported and leaves the others running, and /readyz says so.
	var wg sync.WaitGroup
	errs := make([]error, len(runners))
	for i, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				errs[i] = err
				log.Error("processor stopped; the others go on", zap.String("processor", names[i]), zap.Error(err))
			}
		}()
	}
	wg.Wait()
	cancel()
	<-opsDone
	return errors.Join(errs...)
}

func processorNames(t *topology.Topology) string {
	var n []string
	for _, p := range t.Processors {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func topologyFrom(file string) (*topology.Topology, error) {
	if file == "" {
		return topology.Default()
	}
	return topology.Load(file)
}

func buildIdentity(ctx context.Context, d runDeps) (built, error) {
	p, cleanup, err := identity.Open(ctx, d.svc, d.topo.Identity, d.metrics, d.reg, d.log)
	if err != nil {
		return built{}, err
	}
	return built{proc: p, journal: p.Journal(), deadLetter: d.svc.Topic("events.dlq"), cleanup: cleanup}, nil
}

func buildWarehouse(ctx context.Context, d runDeps) (built, error) {
	cfg, err := warehouse.ConfigFromEnv()
	if err != nil {
		return built{}, err
	}
	p, cleanup, err := warehouse.Open(ctx, d.svc, cfg, d.reg, d.log)
	if err != nil {
		return built{}, err
	}
	return built{proc: p, deadLetter: d.svc.Topic("events.dlq"), cleanup: cleanup, tune: p.Config().Tune}, nil
}

func buildFeatures(ctx context.Context, d runDeps) (built, error) {
	p, cleanup, err := features.Open(ctx, d.svc, d.topo, d.metrics, d.reg, d.log)
	if err != nil {
		return built{}, err
	}
	return built{proc: p, journal: p.Journal(), deadLetter: d.svc.Topic("events.dlq"), kafkaOpts: p.KafkaOpts(), cleanup: cleanup}, nil
}

func buildSegments(ctx context.Context, d runDeps) (built, error) {
	p, cleanup, err := segments.Open(ctx, d.svc, d.topo, d.metrics, d.reg, d.log)
	if err != nil {
		return built{}, err
	}
	return built{proc: p, journal: p.Journal(), deadLetter: d.svc.Topic("events.dlq"), kafkaOpts: p.KafkaOpts(), cleanup: cleanup}, nil
}

func buildRecommend(ctx context.Context, d runDeps) (built, error) {
	p, cleanup, err := recommend.Open(ctx, d.svc, d.topo.Recommend, d.metrics, d.reg, d.log)
	if err != nil {
		return built{}, err
	}
	return built{proc: p, journal: p.Journal(), deadLetter: d.svc.Topic("events.dlq"), cleanup: cleanup}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
