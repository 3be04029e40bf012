package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/devstack"
	"github.com/streamcdp/streamcdp/internal/processing"
)

func init() { register(newDevCmd) }

func newDevCmd() *cobra.Command {
	o := devstack.Options{Dir: envOr("CDP_DEV_DIR", ".cdp-dev"), Rate: 200, Persons: 2000,
		APIAddr: "127.0.0.1:8080", MetricsAddr: "127.0.0.1:9100", ConsoleAddr: "127.0.0.1:8090", Interval: 5 * time.Second}
	var topoFile string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole platform locally with demo traffic and a live summary",
		Long: `dev starts the local stack (Kafka, schema registry, Redis, ClickHouse) in --dir,
applies the ClickHouse migrations and the topology, runs every processor and
the profile API in this process, serves the console page, streams generated
customer traffic, and shows a live summary every second (one line every
--interval when stdout is not a terminal). Ctrl-C stops everything it started;
a second run on the same --dir resumes on the same data. The API token is kept
in <dir>/api-token; logs go to <dir>/logs/dev.log.

Default addresses that are taken are replaced by free ports (the summary
shows the URLs); addresses given as flags are used as given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := topologyFrom(topoFile)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the cdp binary: %w", err)
			}
			f := cmd.Flags()
			o.ExplicitAddrs = f.Changed("api-addr") || f.Changed("metrics-addr") || f.Changed("console-addr")
			o.Self, o.Topology, o.Out = self, topo, cmd.OutOrStdout()
			o.Terminal = term.IsTerminal(int(os.Stdout.Fd()))
			o.Processors = func(ctx context.Context, metricsAddr string, reg *prometheus.Registry, log *zap.Logger, ready ...processing.ReadyFunc) error {
				// config.Load after devstack pointed CDP_* at its stack.
				svc, err := config.Load()
				if err != nil {
					return err
				}
				return runProcessors(ctx, runOptions{svc: svc, topo: topo, names: allProcessors(topo, log), instance: "dev",
					metricsAddr: metricsAddr, sessionTimeout: 45 * time.Second, reg: reg, log: log, ready: ready})
			}
			return devstack.Run(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Dir, "dir", o.Dir, "directory of the dev stack's data, logs and API token (env CDP_DEV_DIR)")
	fl.Float64Var(&o.Rate, "rate", o.Rate, "generated events per second")
	fl.IntVar(&o.Persons, "persons", o.Persons, "simulated shoppers per generator run")
	fl.StringVar(&o.APIAddr, "api-addr", o.APIAddr, "listen address of the profile API")
	fl.StringVar(&o.MetricsAddr, "metrics-addr", o.MetricsAddr, "listen address of /metrics, /healthz, /readyz")
	fl.StringVar(&o.ConsoleAddr, "console-addr", o.ConsoleAddr, "listen address of the console page (keep it on loopback: it has no authentication)")
	fl.DurationVar(&o.Interval, "interval", o.Interval, "how often a summary line is printed when stdout is not a terminal")
	fl.BoolVar(&o.FreePorts, "free-ports", false, "start a new stack on ports the kernel picks, even when the usual ones are free (an existing stack keeps its ports)")
	fl.BoolVar(&o.KeepStack, "keep-stack", false, "leave the stack's services running on exit (cdp local down --dir DIR stops them)")
	fl.StringVar(&topoFile, "topology", "", "topology file (default: the built-in topology)")
	return cmd
}
