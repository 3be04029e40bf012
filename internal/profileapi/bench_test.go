package profileapi

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

var (
	benchRate     = flag.Int("api-rate", 5000, "BenchmarkProfileAPILatency: requests per second")
	benchDuration = flag.Duration("api-duration", 10*time.Second, "BenchmarkProfileAPILatency: attack length")
	benchServer   = flag.String("api-server", "process", "BenchmarkProfileAPILatency: where the API runs: process (`cdp api` of $CDP_BIN, "+
		"so its CPU is measured apart from the load generator's) or inprocess (beside the load generator)")
)

// BenchmarkProfileAPILatency serves the API on loopback over the stores of
// a real pipeline run (500 persons, 6,000 generated events) and attacks it
// with vegeta at a constant rate: 4 in 5 requests by profile id, 1 in 5 by
// email, every request authenticated and access-logged. By default the API
// is a `cdp api` process of $CDP_BIN (its access log to a file), so its CPU
// per request is measured apart from vegeta's; -api-server inprocess
// serves it from the test process (access log to a discarding sink). It
// reports the achieved rate, the latency quantiles and the CPU per request
// of the server, the load generator and Redis. Run with -benchtime 1x: one
// attack is the measurement.
//
//	go test -run '^$' -bench ProfileAPILatency -benchtime 1x ./internal/profileapi/ [-args -api-rate 5000 -api-duration 10s -api-server process]
func BenchmarkProfileAPILatency(b *testing.B) {
	s := newStack(b, 500, 6000)
	base, serverCPU := "", func() time.Duration { return 0 }
	switch *benchServer {
	case "process":
		base, serverCPU = startAPIProcess(b, s)
	case "inprocess":
		srv := httptest.NewServer(benchHandler(b, s))
		defer srv.Close()
		base = srv.URL
	default:
		b.Fatalf("-api-server %q: want process or inprocess", *benchServer)
	}
	hdr := http.Header{"Authorization": {"Bearer " + goodToken}}
	paths, nTargets, nEmails := benchPaths(b, s)
	mixed := make([]vegeta.Target, len(paths))
	for i, p := range paths {
		mixed[i] = vegeta.Target{Method: "GET", URL: base + p, Header: hdr}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("%d targets (%d profiles, %d emails); GOMAXPROCS %d; load average before: %s", len(mixed), nTargets, nEmails, runtime.GOMAXPROCS(0), load)

	atk := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Connections(10000), vegeta.Workers(64), vegeta.Timeout(5*time.Second))
	b.ResetTimer()
	for range b.N {
		cpu0, redis0, server0 := processCPU(b), redisCPU(b, s), serverCPU()
		var m vegeta.Metrics
		for res := range atk.Attack(vegeta.NewStaticTargeter(mixed...), vegeta.Rate{Freq: *benchRate, Per: time.Second}, *benchDuration, "profile-api") {
			m.Add(res)
		}
		m.Close()
		cpu, rcpu, scpu := processCPU(b)-cpu0, redisCPU(b, s)-redis0, serverCPU()-server0
		if *benchServer == "process" {
			b.ReportMetric(float64(scpu.Microseconds())/float64(m.Requests), "server-cpu-µs/req")
			b.ReportMetric(float64(cpu.Microseconds())/float64(m.Requests), "vegeta-cpu-µs/req")
		} else {
			b.ReportMetric(float64(cpu.Microseconds())/float64(m.Requests), "cpu-µs/req")
		}
		b.ReportMetric(float64(rcpu.Microseconds())/float64(m.Requests), "redis-cpu-µs/req")
		b.ReportMetric(m.Rate, "req/s")
		b.ReportMetric(m.Success*100, "%ok")
		b.ReportMetric(float64(m.Latencies.P50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(m.Latencies.P95.Microseconds())/1000, "p95-ms")
		b.ReportMetric(float64(m.Latencies.P99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(m.Latencies.Max.Microseconds())/1000, "max-ms")
		// Logged too, since a failed benchmark prints no metrics.
		b.Logf("%d requests at %.0f/s: success %.2f%%, p50 %s p95 %s p99 %s max %s, status codes %v, errors %v; "+
			"CPU per request: server %.0f µs, this process %.0f µs, Redis %.0f µs",
			m.Requests, m.Rate, m.Success*100, m.Latencies.P50, m.Latencies.P95, m.Latencies.P99, m.Latencies.Max, m.StatusCodes, firstErrors(m.Errors),
			float64(scpu.Microseconds())/float64(m.Requests), float64(cpu.Microseconds())/float64(m.Requests), float64(rcpu.Microseconds())/float64(m.Requests))
		if m.Success < 0.999 {
			b.Errorf("only %.2f%% of requests succeeded", m.Success*100)
		}
	}
	b.StopTimer()
	load, _ = os.ReadFile("/proc/loadavg")
	b.Logf("load average after: %s", load)
}

// startAPIProcess runs `cdp api` on the stack's stores, with the test's
// token and its access log to a file, and returns its URL and a reader of
// its CPU time (user and system, from /proc: 10 ms resolution).
func startAPIProcess(b *testing.B, s *stack) (string, func() time.Duration) {
	addr := testkit.FreeAddr(b)
	logf, err := os.Create(filepath.Join(b.TempDir(), "api.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(testkit.CDPBinary(b), "api", "--addr", addr, "--metrics-addr", testkit.FreeAddr(b))
	cmd.Env = append(s.env.ProcessEnv(), "CDP_API_TOKENS="+goodToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logf.Name())
			b.Fatalf("cdp api did not answer /healthz within 30 s:\n%s", testkit.Tail(string(out), 20))
		}
	}
	stat := fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)
	return base, func() time.Duration {
		raw, err := os.ReadFile(stat)
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name (which may hold spaces): utime is
		// the 14th field of the line, stime the 15th; in clock ticks of
		// 1/100 s on Linux.
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * 10 * time.Millisecond
	}
}

// benchHandler is the handler as `cdp api` serves it: tokens checked and
// every request access-logged (to a discarding sink, so encoding the line
// is paid).
func benchHandler(b *testing.B, s *stack) http.Handler {
	tokens, err := ParseTokens(goodToken, "")
	if err != nil {
		b.Fatal(err)
	}
	enc := zap.NewProductionEncoderConfig()
	access := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	h, err := NewHandler(s.opened.Service, Options{Tokens: tokens, Logger: access})
	if err != nil {
		b.Fatal(err)
	}
	s.opened.Service.st.Now = time.Now
	return h
}

// benchPaths are the request paths of the benchmarks: every profile id on
// the resolved topic, and after every fourth one a by-email lookup.
func benchPaths(b *testing.B, s *stack) (paths []string, profiles, emails int) {
	ids := sortedKeys(s.resolvedIDs(b))
	byEmail := sortedKeys(emailsOf(b, s.lines))
	for i, id := range ids {
		paths = append(paths, "/v1/profiles/"+url.PathEscape(id))
		if i%4 == 3 && len(byEmail) > 0 {
			paths = append(paths, "/v1/profiles/by-identifier?type=email&value="+url.QueryEscape(byEmail[(i/4)%len(byEmail)]))
		}
	}
	return paths, len(ids), len(byEmail)
}

// BenchmarkProfileHandler calls the handler in process, without HTTP or a
// load generator, over the same stores and requests as
// BenchmarkProfileAPILatency: ns/op and allocs/op are the server's own
// cost of a request, Redis round trips included. cpu-µs/op is this
// process's CPU per request, redis-cpu-µs/op the Redis server's. serial
// is one request at a time (ns/op is then the latency); parallel runs 64
// at a time, as a loaded server does.
//
//	go test -run '^$' -bench ProfileHandler -benchtime 20000x ./internal/profileapi/
func BenchmarkProfileHandler(b *testing.B) {
	s := newStack(b, 500, 6000)
	h := benchHandler(b, s)
	paths, _, _ := benchPaths(b, s)
	reqs := make([]*http.Request, len(paths))
	for i, p := range paths {
		reqs[i] = httptest.NewRequest(http.MethodGet, p, nil)
		reqs[i].Header.Set("Authorization", "Bearer "+goodToken)
	}
	measure := func(b *testing.B, run func()) {
		b.ReportAllocs()
		cpu0, redis0 := processCPU(b), redisCPU(b, s)
		b.ResetTimer()
		run()
		b.StopTimer()
		cpu, rcpu := processCPU(b)-cpu0, redisCPU(b, s)-redis0
		b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N), "cpu-µs/op")
		b.ReportMetric(float64(rcpu.Nanoseconds())/1000/float64(b.N), "redis-cpu-µs/op")
	}
	b.Run("serial", func(b *testing.B) {
		w := newDiscardWriter()
		measure(b, func() {
			for i := range b.N {
				w.reset()
				h.ServeHTTP(w, reqs[i%len(reqs)])
				if w.status != http.StatusOK {
					b.Fatalf("%s: status %d", reqs[i%len(reqs)].URL, w.status)
				}
			}
		})
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(32) // × GOMAXPROCS goroutines
		var next atomic.Int64
		measure(b, func() {
			b.RunParallel(func(pb *testing.PB) {
				w := newDiscardWriter()
				for pb.Next() {
					w.reset()
					r := reqs[int(next.Add(1))%len(reqs)]
					h.ServeHTTP(w, r)
					if w.status != http.StatusOK {
						b.Errorf("%s: status %d", r.URL, w.status)
						return
					}
				}
			})
		})
	})
}

// discardWriter is a ResponseWriter that keeps only the status, so the
// benchmark's allocations are the handler's.
type discardWriter struct {
	h      http.Header
	status int
}

func newDiscardWriter() *discardWriter { return &discardWriter{h: http.Header{}} }

func (w *discardWriter) reset() {
	clear(w.h)
	w.status = 0
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}

// processCPU is this process's CPU time (server and load generator).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is the Redis server's CPU time (INFO cpu), which other tests on
// the same Redis add to.
func redisCPU(b *testing.B, s *stack) time.Duration {
	rdb, err := config.NewRedis(s.env.Services.RedisURL)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func firstErrors(errs []string) []string {
	if len(errs) > 3 {
		return errs[:3]
	}
	return errs
}
