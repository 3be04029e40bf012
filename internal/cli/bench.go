package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/bench"
	"github.com/streamcdp/streamcdp/internal/config"
)

func init() { register(newBenchCmd) }

func newBenchCmd() *cobra.Command {
	o := bench.Options{Events: 1_000_000, Seed: 1, Span: 7 * 24 * time.Hour, LatencyEvents: 20_000, LatencyRate: 1000, Timeout: time.Hour}
	var jsonOut, mdOut string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the whole pipeline end to end on generated traffic",
		Long: `bench generates --events events (deterministic for a --seed), starts identity,
features, segments and warehouse (and recommend with --recommend) as 'cdp run'
child processes against the CDP_* services, in a fresh topic prefix and
ClickHouse database, produces the events as fast as the broker takes them and
measures until every processor has committed all its input. Then it produces
--latency-events more at --latency-rate per second to measure event ->
membership-change latency on an unsaturated pipeline. It reports events/s end
to end and per processor, latency p50/p95/p99, Redis memory per profile,
ClickHouse rows/s and CPU per processor, as JSON and Markdown. Everything it
created is deleted at the end unless --keep.`,
		Example: `  bin/cdp local up && eval "$(bin/cdp local env)"
  bin/cdp bench --events 200000 --json results.json --md results.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger()
			defer func() { _ = log.Sync() }()
			svc, err := config.Load()
			if err != nil {
				return err
			}
			if o.Bin == "" {
				if o.Bin, err = os.Executable(); err != nil {
					return fmt.Errorf("finding the cdp binary to run the processors from: %w", err)
				}
			}
			o.Progress = generateIsTTY(os.Stderr)
			res, err := bench.Run(cmd.Context(), svc, o, log)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			res.Command = "cdp " + strings.Join(os.Args[1:], " ")
			if err := res.WriteFiles(jsonOut, mdOut); err != nil {
				return err
			}
			res.Markdown(cmd.OutOrStdout())
			log.Info("results written", zap.String("json", jsonOut), zap.String("markdown", mdOut))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", o.Events, "events of the throughput phase")
	f.IntVar(&o.Persons, "persons", 0, "simulated persons (default events/50, at least 100)")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "generator seed")
	f.DurationVar(&o.Span, "span", o.Span, "event-time span of the traffic, ending now")
	f.IntVar(&o.LatencyEvents, "latency-events", o.LatencyEvents, "events of the latency phase (0: none)")
	f.Float64Var(&o.LatencyRate, "latency-rate", o.LatencyRate, "events per second of the latency phase")
	f.BoolVar(&o.Recommend, "recommend", false, "also run the recommend processor")
	f.StringVar(&o.Bin, "bin", "", "cdp binary the processors run from (default: this one)")
	f.StringVar(&o.LogDir, "logs", "", "directory of the processors' logs (default: a temporary one)")
	f.BoolVar(&o.Keep, "keep", false, "keep the run's topics, Redis keys and ClickHouse database")
	f.StringVar(&o.StackDir, "stack-dir", os.Getenv("CDP_LOCAL_DIR"), "a `cdp local` directory: also measure its services' CPU (env CDP_LOCAL_DIR)")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "give up after this long")
	f.StringVar(&jsonOut, "json", "bench-results.json", "JSON result file")
	f.StringVar(&mdOut, "md", "bench-results.md", "Markdown result file")
	return cmd
}
