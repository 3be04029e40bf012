// Package devstack is `cdp dev`: the whole platform on one machine with
// one command. It brings up the local stack (internal/localstack) in its
// own directory, applies the ClickHouse migrations and the topology, runs
// every processor and the profile API in this process, serves the console
// page (internal/console), streams generated traffic (internal/generate)
// and shows a live summary until the context ends (Ctrl-C), then stops
// everything it started. A second run on the same directory resumes on
// the same data.
//
// The processors run in-process (the caller passes `cdp run all`'s
// runner): one process to stop on Ctrl-C and nothing left behind if it
// dies, and the summary reads their Prometheus registry directly. The
// stack's services stay separate processes, as `cdp local up` runs them.
package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/console"
	"github.com/streamcdp/streamcdp/internal/localstack"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/profileapi"
	"github.com/streamcdp/streamcdp/processors/warehouse"
	"github.com/streamcdp/streamcdp/topology"
)

// ProcessorsFunc runs the processors until ctx ends, serving /metrics,
// /healthz and /readyz (with ready among the checks) on metricsAddr, their
// metrics registered in reg.
type ProcessorsFunc func(ctx context.Context, metricsAddr string, reg *prometheus.Registry, log *zap.Logger, ready ...processing.ReadyFunc) error

// Options configure a run.
type Options struct {
	// Dir is the stack's directory (data, logs, the API token).
	Dir string
	// Self is the cdp binary the stack's services run as.
	Self string
	// Rate is the generated traffic in events per second; Persons the
	// simulated shoppers.
	Rate    float64
	Persons int
	// Listen addresses; a default one that is taken is replaced by a free
	// port (explicit ones are used as given).
	APIAddr, MetricsAddr, ConsoleAddr string
	ExplicitAddrs                     bool
	// Interval is how often a summary line is printed when Out is not a
	// terminal; on a terminal the screen is redrawn every second.
	Interval time.Duration
	Terminal bool
	// KeepStack leaves the stack's services running on exit.
	KeepStack bool
	// FreePorts starts a new stack on ports the kernel picks even when
	// the usual ones are free (tests, or beside another stack).
	FreePorts  bool
	Topology   *topology.Topology
	Processors ProcessorsFunc
	Out        io.Writer
}

// Run runs the platform until ctx ends. It returns nil when stopped by
// ctx, after everything it started has stopped.
func Run(ctx context.Context, o Options) (err error) {
	if o.Rate <= 0 {
		return fmt.Errorf("--rate %g: want a positive number of events per second", o.Rate)
	}
	out := o.Out
	st, known, err := localstack.Open(o.Dir)
	if err != nil {
		return err
	}
	logPath := filepath.Join(st.Dir, "logs", "dev.log")
	log, err := fileLogger(logPath)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	fmt.Fprintf(out, "cdp dev: data in %s, log in %s\n", st.Dir, logPath)

	// The stack: started unless all of it already runs; stopped at the end
	// only if this run started it.
	started, err := upStack(ctx, st, known, o.FreePorts, o.Self, out)
	if started && !o.KeepStack {
		defer func() {
			fmt.Fprintln(out, "stopping the local stack (data kept; cdp dev resumes on it)")
			if derr := st.Down(out); derr != nil {
				err = errors.Join(err, fmt.Errorf("stopping the local stack: %w", derr))
			}
		}()
	}
	if err != nil {
		return stopped(ctx, err)
	}
	for _, kv := range st.Env() {
		// Every component (processors, producer, API) reads CDP_*: point
		// them all at this stack, whatever the shell had.
		os.Setenv(kv[0], kv[1])
	}
	svc, err := config.Load()
	if err != nil {
		return err
	}
	d := &dev{o: o, st: st, svc: svc, log: log, out: out}
	return stopped(ctx, d.run(ctx))
}

// stopped turns the context's own end into a clean stop.
func stopped(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func upStack(ctx context.Context, st *localstack.Stack, known, freePorts bool, self string, out io.Writer) (bool, error) {
	up := true
	for _, s := range st.Status(ctx) {
		up = up && s.Healthy
	}
	if known && up {
		fmt.Fprintf(out, "the local stack in %s is already running: using it (and leaving it running)\n", st.Dir)
		return false, nil
	}
	if !known && (freePorts || !portsFree(st.Ports)) {
		// A fresh directory: the usual ports if they are free (third-party
		// tools then work without flags), else ports the kernel picks.
		p, err := localstack.FreePorts()
		if err != nil {
			return false, err
		}
		st.Ports = p
	}
	lib, err := localstack.EnsureCHDB(ctx, localstack.CacheDir(), out)
	if err != nil {
		return false, fmt.Errorf("the ClickHouse engine: %w (cdp local setup installs it)", err)
	}
	st.CHDBLibrary = lib
	fmt.Fprintf(out, "starting the local stack in %s\n", st.Dir)
	return true, st.Up(ctx, self, out)
}

func portsFree(p localstack.Ports) bool {
	for _, port := range []int{p.Kafka, p.Registry, p.Redis, p.ClickHouseTCP, p.ClickHouseHTTP} {
		l, err := net.Listen("tcp", net.JoinHostPort(localstack.Host, fmt.Sprint(port)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

type dev struct {
	o   Options
	st  *localstack.Stack
	svc config.Services
	log *zap.Logger
	out io.Writer
}

func (d *dev) run(ctx context.Context) error {
	o, svc, log := d.o, d.svc, d.log
	topo := o.Topology

	cl, err := kgo.NewClient(kgo.SeedBrokers(svc.KafkaBrokers...))
	if err != nil {
		return fmt.Errorf("kafka client for %v: %w", svc.KafkaBrokers, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	changes, err := topo.Apply(ctx, adm, svc.TopicPrefix)
	if err != nil {
		return fmt.Errorf("applying the topology: %w", err)
	}
	fmt.Fprintf(d.out, "topology applied: %d change(s)\n", len(changes))

	conn, db, err := warehouse.Connect(ctx, svc.ClickHouseDSN)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer db.Close()
	var migrated bytes.Buffer
	if err := migrations.Up(ctx, db, &migrated); err != nil {
		return fmt.Errorf("applying the ClickHouse migrations: %w", err)
	}
	fmt.Fprintf(d.out, "ClickHouse migrations applied (%d line(s) of output; details in the log)\n", strings.Count(migrated.String(), "\n"))
	log.Info("migrations", zap.String("output", migrated.String()))

	token, err := apiToken(filepath.Join(d.st.Dir, "api-token"))
	if err != nil {
		return err
	}
	tokens, err := profileapi.ParseTokens(token, "")
	if err != nil {
		return err
	}
	opened, err := profileapi.Open(ctx, svc, topo, profileapi.NewClickHouseEvents(conn))
	if err != nil {
		return fmt.Errorf("starting the profile API: %w", err)
	}
	defer opened.Close()

	reg := prometheus.NewRegistry()
	apiHandler, err := profileapi.NewHandler(opened.Service, profileapi.Options{Tokens: tokens, Logger: log.Named("access"),
		Registerer: reg, Ready: []func(context.Context) error{opened.Ready}})
	if err != nil {
		return err
	}
	apiLn, err := d.listen(o.APIAddr)
	if err != nil {
		return fmt.Errorf("listening for the API: %w", err)
	}
	consoleLn, err := d.listen(o.ConsoleAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listening for the console: %w", err)
	}
	metricsAddr, err := d.freeAddr(o.MetricsAddr)
	if err != nil {
		apiLn.Close()
		consoleLn.Close()
		return err
	}
	apiURL := "http://" + apiLn.Addr().String()
	consoleURL := "http://" + consoleLn.Addr().String() + "/"
	c := &collector{
		start: time.Now(), reg: reg, adm: adm, graph: opened.Graph, segs: opened.Segments, ch: conn, profiles: opened.Service,
		rawTopic: svc.Topic("events.raw"), dlqTopic: svc.Topic("events.dlq"), apiURL: apiURL, token: token, log: log.Named("summary"),
		urls: []console.Link{
			{Name: "console", URL: consoleURL},
			{Name: "API", URL: apiURL + "/openapi.json"},
			{Name: "metrics", URL: "http://" + metricsAddr + "/metrics"},
			{Name: "ClickHouse", URL: fmt.Sprintf("http://%s:%d/play", localstack.Host, d.st.Ports.ClickHouseHTTP)},
		},
	}
	for _, p := range topo.Processors {
		if p.Name != "api" {
			c.processor = append(c.processor, p.Name)
		}
	}
	consoleHandler, err := console.NewHandler(console.Options{ClickHouse: conn, Profiles: opened.Service,
		IdentifierTypes: topo.Identity.Priority, Summary: c.Latest, Logger: log.Named("console")})
	if err != nil {
		apiLn.Close()
		consoleLn.Close()
		return err
	}

	// Everything below runs until ctx ends or one part fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(what string, err error) {
		if err == nil || ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return
		}
		errMu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, err)
		}
		errMu.Unlock()
		cancel()
	}
	goRun := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail(what, f())
		}()
	}
	goRun("processors", func() error {
		return o.Processors(ctx, metricsAddr, reg, log, processing.ReadyFunc(opened.Ready))
	})
	serve := func(what string, ln net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log.Named(what))}
		goRun(what, func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		goRun(what+" shutdown", func() error {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			return srv.Shutdown(sctx)
		})
	}
	serve("api", apiLn, apiHandler)
	serve("console", consoleLn, consoleHandler)
	var sent atomic.Int64
	goRun("traffic", func() error { return traffic(ctx, o.Rate, o.Persons, &sent, log.Named("traffic")) })

	fmt.Fprintf(d.out, "API token (in %s): %s\n", filepath.Join(d.st.Dir, "api-token"), token)
	for _, l := range c.urls {
		fmt.Fprintf(d.out, "%s: %s\n", l.Name, l.URL)
	}
	fmt.Fprintf(d.out, "streaming generated traffic at %g events/s; Ctrl-C stops everything\n", o.Rate)
	d.summaries(ctx, c)

	cancel()
	wg.Wait()
	if !o.Terminal {
		fmt.Fprintln(d.out, line(c.sampleNow(context.Background())))
	}
	fmt.Fprintln(d.out, "cdp dev: processors, API, console and traffic stopped")
	return firstErr
}

// summaries samples every second until ctx ends: a redrawn screen on a
// terminal, else a line every Interval (and the sample curl once known).
func (d *dev) summaries(ctx context.Context, c *collector) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastLine time.Time
	curlShown := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s := c.sampleNow(ctx)
		if d.o.Terminal {
			screen(d.out, s, d.st.Dir)
			continue
		}
		if s.SampleCurl != "" && !curlShown {
			curlShown = true
			fmt.Fprintf(d.out, "one live profile: %s\n", s.SampleCurl)
		}
		if time.Since(lastLine) >= d.o.Interval {
			lastLine = time.Now()
			fmt.Fprintln(d.out, line(s))
		}
	}
}

// listen listens on addr; a default address that is taken falls back to
// a free port on the same host.
func (d *dev) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil || d.o.ExplicitAddrs {
		return ln, err
	}
	host, _, _ := net.SplitHostPort(addr)
	d.log.Info("default address taken; using a free port", zap.String("addr", addr))
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}

// freeAddr is listen for a server that opens its own listener.
func (d *dev) freeAddr(addr string) (string, error) {
	ln, err := d.listen(addr)
	if err != nil {
		return "", fmt.Errorf("listening for /metrics: %w", err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a, nil
}

// apiToken reads the dev stack's API token, creating it on the first run,
// so a pasted curl keeps working across runs.
func apiToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the API token: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := "dev-" + hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the API token: %w", err)
	}
	return t, nil
}

// fileLogger logs to path: the terminal shows the summary, not log lines.
func fileLogger(path string) (*zap.Logger, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the log directory: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{path}, []string{path}
	cfg.Sampling = nil
	l, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("opening the log %s: %w", path, err)
	}
	return l, nil
}
