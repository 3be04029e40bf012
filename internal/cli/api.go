package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/profileapi"
)

func init() { register(newAPICmd) }

// apiFlags are `cdp api`'s settings; `cdp run api` takes them from the
// environment.
type apiFlags struct {
	addr, metricsAddr, topology string
	tokensFile                  string
	insecureNoAuth              bool
	tlsCert, tlsKey             string
	corsOrigins                 []string
	requestTimeout              time.Duration
	accessLog                   bool
	maxInFlight                 int
	envErr                      error // an unusable CDP_API_* value
}

func defaultAPIFlags() apiFlags {
	f := apiFlags{
		addr: envOr("CDP_API_ADDR", ":8080"), metricsAddr: envOr("CDP_METRICS_ADDR", ":9100"),
		tokensFile: os.Getenv("CDP_API_TOKENS_FILE"), tlsCert: os.Getenv("CDP_API_TLS_CERT"), tlsKey: os.Getenv("CDP_API_TLS_KEY"),
		corsOrigins: splitList(os.Getenv("CDP_API_CORS_ORIGINS")), requestTimeout: 2 * time.Second, accessLog: true,
		maxInFlight: profileapi.DefaultMaxInFlight(),
	}
	if v := os.Getenv("CDP_API_MAX_IN_FLIGHT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErr = fmt.Errorf("CDP_API_MAX_IN_FLIGHT=%q: want a whole number of requests", v)
		}
		f.maxInFlight = n
	}
	return f
}

func newAPICmd() *cobra.Command {
	f := defaultAPIFlags()
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the HTTP/JSON profile API (profiles by id or any identifier)",
		Long: `Serves profiles to personalization services: identities, traits, feature
values, segment memberships, recommendations and scores, read from the Redis
stores the processors write, by profile id (merged-away ids resolve to the
survivor) or by any identifier. The OpenAPI document is at /openapi.json.

Every /v1 route needs "Authorization: Bearer <token>": tokens come from
CDP_API_TOKENS (comma separated) and --tokens-file (one per line), at least 16
characters each. Without any token the command refuses to start, unless
--insecure-no-auth. /metrics, /healthz and /readyz are also served on
--metrics-addr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serveAPI(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", f.addr, "listen address of the API (env CDP_API_ADDR)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", f.metricsAddr, "address of /metrics, /healthz, /readyz (env CDP_METRICS_ADDR)")
	fl.StringVar(&f.topology, "topology", "", "topology file (default: the built-in topology)")
	fl.StringVar(&f.tokensFile, "tokens-file", f.tokensFile, "file of accepted bearer tokens, one per line (env CDP_API_TOKENS_FILE); CDP_API_TOKENS adds more")
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "serve without authentication (development only: profiles are personal data)")
	fl.StringVar(&f.tlsCert, "tls-cert", f.tlsCert, "TLS certificate (PEM) to serve HTTPS; needs --tls-key (env CDP_API_TLS_CERT)")
	fl.StringVar(&f.tlsKey, "tls-key", f.tlsKey, "TLS private key (PEM) (env CDP_API_TLS_KEY)")
	fl.StringSliceVar(&f.corsOrigins, "cors-origins", f.corsOrigins, "browser origins allowed to call the API, e.g. https://shop.example.com (default none: CORS off; env CDP_API_CORS_ORIGINS)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", f.requestTimeout, "bound on one request's store reads")
	fl.BoolVar(&f.accessLog, "access-log", f.accessLog, "log every request (buffered: written in blocks, at least once a second)")
	fl.IntVar(&f.maxInFlight, "max-in-flight", f.maxInFlight, "requests served at once; more get 503 overloaded with Retry-After (default 64 per CPU; -1: no bound; env CDP_API_MAX_IN_FLIGHT)")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// apiTokens returns the tokens the flags and the environment configure; nil
// with --insecure-no-auth.
func apiTokens(f apiFlags) (*profileapi.Tokens, error) {
	env := os.Getenv("CDP_API_TOKENS")
	if f.insecureNoAuth {
		if env != "" || f.tokensFile != "" {
			return nil, errors.New("--insecure-no-auth and API tokens are both set: drop one")
		}
		return nil, nil
	}
	return profileapi.ParseTokens(env, f.tokensFile)
}

func serveAPI(ctx context.Context, f apiFlags) error {
	log := newLogger()
	defer func() { _ = log.Sync() }()
	if f.envErr != nil {
		return f.envErr
	}
	if f.maxInFlight == 0 {
		return errors.New("--max-in-flight 0 would refuse every request: give a bound, or -1 for none")
	}
	tokens, err := apiTokens(f)
	if err != nil {
		return err
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	svc, err := config.Load()
	if err != nil {
		return err
	}
	topo, err := topologyFrom(f.topology)
	if err != nil {
		return err
	}
	opened, err := profileapi.Open(ctx, svc, topo, nil)
	if err != nil {
		return fmt.Errorf("starting the profile API: %w", err)
	}
	defer opened.Close()
	reg := prometheus.NewRegistry()
	access := zap.NewNop()
	if f.accessLog {
		var stop func()
		access, stop = newAccessLogger()
		defer stop()
	}
	h, err := profileapi.NewHandler(opened.Service, profileapi.Options{Tokens: tokens, CORSOrigins: f.corsOrigins,
		RequestTimeout: f.requestTimeout, Logger: access, Registerer: reg, Ready: []func(context.Context) error{opened.Ready},
		MaxInFlight: f.maxInFlight})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listening for the API on %s: %w (set --addr or CDP_API_ADDR)", f.addr, err)
	}
	srv := &http.Server{
		Handler: h,
		// Bounds against slow or stuck clients; a profile read takes
		// milliseconds, so these are generous.
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: f.requestTimeout + 10*time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zap.NewStdLog(log.Named("http")),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opsDone := make(chan struct{})
	go func() {
		defer close(opsDone)
		if err := processing.ServeOps(ctx, f.metricsAddr, processing.NewOpsHandler(reg, processing.ReadyFunc(opened.Ready))); err != nil {
			log.Error("ops server", zap.Error(err))
			cancel()
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()
	auth := "OFF (--insecure-no-auth)"
	if tokens != nil {
		auth = fmt.Sprintf("bearer tokens (%d)", tokens.Len())
	} else {
		log.Warn("authentication is off: anyone who reaches the API reads personal data")
	}
	scheme := "http"
	if f.tlsCert != "" {
		scheme = "https"
	}
	log.Info("serving the profile API", zap.String("url", scheme+"://"+ln.Addr().String()), zap.String("auth", auth),
		zap.Strings("cors_origins", f.corsOrigins), zap.String("ops", f.metricsAddr), zap.Int("max_in_flight", f.maxInFlight))
	if f.tlsCert != "" {
		err = srv.ServeTLS(ln, f.tlsCert, f.tlsKey)
	} else {
		err = srv.Serve(ln)
	}
	cancel()
	<-opsDone
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// newAccessLogger returns the API's access log: every request, in the
// format of the other logs, but written to stderr in blocks of up to 4 KiB
// at least once a second instead of one write per line, which at thousands
// of requests a second costs as much CPU as serving some of them. Blocks
// stay under the pipe's atomic write size, so they do not interleave with
// the other logs' lines. stop writes what is buffered. Unlike the other
// logs it is not sampled: an access log that leaves lines out under load
// misleads.
func newAccessLogger() (log *zap.Logger, stop func()) {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.Lock(os.Stderr), Size: 4 << 10, FlushInterval: time.Second}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), ws, zapcore.InfoLevel)
	return zap.New(core).Named("access"), func() { _ = ws.Stop() }
}
