package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/internal/localstack"
)

func init() { register(newLocalCmd) }

func defaultStackDir() string {
	if d := os.Getenv("CDP_LOCAL_DIR"); d != "" {
		return d
	}
	return ".cdp"
}

func newLocalCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run Kafka, a schema registry, Redis and ClickHouse on this machine",
		Long: `The local stack runs real services as ordinary background processes, with
all data under one directory (default .cdp, or $CDP_LOCAL_DIR) that survives
restarts: a Kafka-protocol broker (kfake), a Confluent-compatible schema
registry whose ids survive restarts, Redis (redis-server) and ClickHouse 26.x
(the chDB engine from npm).

  cdp local setup     install what is missing (apt redis-server, chromium, ..., the engine)
  cdp local up        start what is not running
  eval "$(cdp local env)"   point every other command and test at it`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", defaultStackDir(), "stack directory (data, logs, pid files)")
	open := func() (*localstack.Stack, bool, error) { return localstack.Open(dir) }

	cmd.AddCommand(&cobra.Command{
		Use:   "setup",
		Short: "Install the stack's dependencies (Debian packages, the ClickHouse engine); idempotent",
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if err := localstack.EnsureAptPackages(cmd.Context(), out); err != nil {
				return err
			}
			lib, err := localstack.EnsureCHDB(cmd.Context(), localstack.CacheDir(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cmds := slices.Sorted(maps.Keys(localstack.AptPackages))
			fmt.Fprintf(out, "ready: %s; ClickHouse engine %s at %s\n", strings.Join(cmds, ", "), localstack.CHDBVersion, lib)
			return nil
		},
	})

	var autoPorts string
	var ports localstack.Ports
	up := &cobra.Command{
		Use:   "up",
		Short: "Start every service that is not running and wait until each answers",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, known, err := open()
			if err != nil {
				return err
			}
			switch autoPorts {
			case "":
			case "auto":
				// An existing stack keeps its ports while any of its
				// services runs (moving them would split the stack and
				// invalidate `cdp local env`), or while they are free.
				if known && keepPorts(cmd.Context(), st) {
					fmt.Fprintf(cmd.OutOrStdout(), "--ports auto: keeping the ports of the existing stack in %s\n", st.Dir)
				} else if st.Ports, err = localstack.FreePorts(); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--ports takes only \"auto\" (free ports chosen by the kernel)")
			}
			f := cmd.Flags()
			for name, p := range map[string]*int{"kafka-port": &st.Ports.Kafka, "registry-port": &st.Ports.Registry,
				"redis-port": &st.Ports.Redis, "clickhouse-port": &st.Ports.ClickHouseTCP, "clickhouse-http-port": &st.Ports.ClickHouseHTTP} {
				if f.Changed(name) {
					v, _ := f.GetInt(name)
					*p = v
				}
			}
			if st.CHDBLibrary == "" {
				lib := localstack.CHDBLibraryPath(localstack.CacheDir())
				if _, err := os.Stat(lib); err == nil {
					st.CHDBLibrary = lib
				}
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the cdp binary: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "starting the local stack in %s\n", st.Dir)
			if err := st.Up(cmd.Context(), self, cmd.OutOrStdout()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "all services up; point commands at them with:\n  eval \"$(cdp local env --dir %s)\"\n", st.Dir)
			return nil
		},
	}
	up.Flags().StringVar(&autoPorts, "ports", "", `"auto" chooses free ports (for isolated stacks, e.g. tests)`)
	up.Flags().IntVar(&ports.Kafka, "kafka-port", localstack.DefaultPorts.Kafka, "Kafka port")
	up.Flags().IntVar(&ports.Registry, "registry-port", localstack.DefaultPorts.Registry, "schema registry port")
	up.Flags().IntVar(&ports.Redis, "redis-port", localstack.DefaultPorts.Redis, "Redis port")
	up.Flags().IntVar(&ports.ClickHouseTCP, "clickhouse-port", localstack.DefaultPorts.ClickHouseTCP, "ClickHouse native port")
	up.Flags().IntVar(&ports.ClickHouseHTTP, "clickhouse-http-port", localstack.DefaultPorts.ClickHouseHTTP, "ClickHouse HTTP port")
	cmd.AddCommand(up)

	cmd.AddCommand(&cobra.Command{
		Use:   "down",
		Short: "Stop every service (data is kept)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := open()
			if err != nil {
				return err
			}
			return st.Down(cmd.OutOrStdout())
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show each service's health and address; exits 1 when any is down",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, ok, err := open()
			if err != nil {
				return err
			}
			if !ok {
				return &exitError{code: 1, err: fmt.Errorf("no local stack in %s: start one with cdp local up", st.Dir)}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tADDRESS\tDETAIL")
			down := 0
			for _, s := range st.Status(cmd.Context()) {
				state, pid := "up", fmt.Sprint(s.PID)
				if !s.Healthy {
					state, down = "DOWN", down+1
				}
				if s.PID == 0 {
					pid = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, state, pid, s.Address, s.Detail)
			}
			tw.Flush()
			if down > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d service(s) down: cdp local up --dir %s restarts them (logs in %s/logs)", down, st.Dir, st.Dir)}
			}
			return nil
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "env",
		Short: "Print export lines for the CDP_* variables that point at the stack",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, ok, err := open()
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no local stack in %s: start one with cdp local up", st.Dir)
			}
			for _, kv := range st.Env() {
				fmt.Fprintf(cmd.OutOrStdout(), "export %s=%s\n", kv[0], kv[1])
			}
			return nil
		},
	})

	cmd.AddCommand(newLocalServeCmd())
	return cmd
}

// newLocalServeCmd runs one service in the foreground. `up` starts these as
// background processes; users do not call them directly.
func newLocalServeCmd() *cobra.Command {
	var dir, lib string
	var port, tcpPort, httpPort int
	serve := &cobra.Command{Use: "serve", Hidden: true, Short: "Run one local service in the foreground"}
	ctxOf := func(cmd *cobra.Command) (context.Context, context.CancelFunc) {
		return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	}
	kafka := &cobra.Command{Use: "kafka", RunE: func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := ctxOf(cmd)
		defer cancel()
		return localstack.ServeKafka(ctx, newLogger().Named("kafka"), dir, port)
	}}
	registry := &cobra.Command{Use: "registry", RunE: func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := ctxOf(cmd)
		defer cancel()
		return localstack.ServeRegistry(ctx, newLogger().Named("registry"), dir, port)
	}}
	var engine bool
	clickhouse := &cobra.Command{Use: "clickhouse", RunE: func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := ctxOf(cmd)
		defer cancel()
		if !engine {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this executable to run the ClickHouse engine: %w", err)
			}
			return localstack.SuperviseEngine(ctx, newLogger().Named("clickhouse"), self, append(os.Args[1:], "--engine"))
		}
		// clickhouse-local does not stop on SIGTERM while its query runs;
		// every insert is already on disk when acknowledged, so exiting at
		// once is safe and keeps `cdp local down` quick.
		go func() {
			<-ctx.Done()
			os.Exit(0)
		}()
		return localstack.ServeClickHouse(newLogger().Named("clickhouse"), lib, dir, tcpPort, httpPort)
	}}
	for _, c := range []*cobra.Command{kafka, registry, clickhouse} {
		c.Flags().StringVar(&dir, "dir", "", "data directory")
		_ = c.MarkFlagRequired("dir")
	}
	for _, c := range []*cobra.Command{kafka, registry} {
		c.Flags().IntVar(&port, "port", 0, "port")
	}
	clickhouse.Flags().BoolVar(&engine, "engine", false, "serve in this process, unsupervised (by default a supervisor runs the engine as its child and starts it again if it exits)")
	clickhouse.Flags().StringVar(&lib, "lib", "", "path to libchdb.so")
	clickhouse.Flags().IntVar(&tcpPort, "tcp-port", 9000, "native port")
	clickhouse.Flags().IntVar(&httpPort, "http-port", 8123, "HTTP port")
	serve.AddCommand(kafka, registry, clickhouse)
	return serve
}

// keepPorts reports whether an existing stack's saved ports should stay:
// one of its services runs, or none runs and every saved port is free.
func keepPorts(ctx context.Context, st *localstack.Stack) bool {
	free := true
	for _, s := range st.Status(ctx) {
		if s.PID != 0 {
			return true
		}
		free = free && !s.PortTaken
	}
	return free
}
