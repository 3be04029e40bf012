package profileapi

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/streamcdp/streamcdp/internal/config"
)

var (
	benchRate     = flag.Int("api-rate", 5000, "BenchmarkProfileAPILatency: requests per second")
	benchDuration = flag.Duration("api-duration", 10*time.Second, "BenchmarkProfileAPILatency: attack length")
)

// BenchmarkProfileAPILatency serves the API on loopback over the stores of
// a real pipeline run (500 persons, 6,000 generated events) and attacks it
// with vegeta at a constant rate: 4 in 5 requests by profile id, 1 in 5 by
// email, every request authenticated and access-logged (to a discarding
// sink, so encoding the line is paid). It reports the achieved rate and the
// latency quantiles. Run with -benchtime 1x: one attack is the measurement.
//
//	go test -run '^$' -bench ProfileAPILatency -benchtime 1x ./internal/profileapi/ [-args -api-rate 5000 -api-duration 10s]
func BenchmarkProfileAPILatency(b *testing.B) {
	s := newStack(b, 500, 6000)
	ids := s.resolvedIDs(b)
	emails := emailsOf(b, s.lines)
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
	srv := httptest.NewServer(h)
	defer srv.Close()

	hdr := http.Header{"Authorization": {"Bearer " + goodToken}}
	var targets []vegeta.Target
	for _, id := range sortedKeys(ids) {
		targets = append(targets, vegeta.Target{Method: "GET", URL: srv.URL + "/v1/profiles/" + url.PathEscape(id), Header: hdr})
	}
	var byEmail []vegeta.Target
	for _, e := range sortedKeys(emails) {
		byEmail = append(byEmail, vegeta.Target{Method: "GET", URL: srv.URL + "/v1/profiles/by-identifier?type=email&value=" + url.QueryEscape(e), Header: hdr})
	}
	var mixed []vegeta.Target
	for i := range targets {
		mixed = append(mixed, targets[i])
		if i%4 == 3 && len(byEmail) > 0 {
			mixed = append(mixed, byEmail[(i/4)%len(byEmail)])
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("%d targets (%d profiles, %d emails); GOMAXPROCS %d; load average before: %s", len(mixed), len(targets), len(byEmail), runtime.GOMAXPROCS(0), load)

	atk := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.Connections(10000), vegeta.Workers(64), vegeta.Timeout(5*time.Second))
	b.ResetTimer()
	for range b.N {
		cpu0, redis0 := processCPU(b), redisCPU(b, s)
		var m vegeta.Metrics
		for res := range atk.Attack(vegeta.NewStaticTargeter(mixed...), vegeta.Rate{Freq: *benchRate, Per: time.Second}, *benchDuration, "profile-api") {
			m.Add(res)
		}
		m.Close()
		cpu, rcpu := processCPU(b)-cpu0, redisCPU(b, s)-redis0
		b.ReportMetric(float64(cpu.Microseconds())/float64(m.Requests), "cpu-µs/req")
		b.ReportMetric(float64(rcpu.Microseconds())/float64(m.Requests), "redis-cpu-µs/req")
		b.ReportMetric(m.Rate, "req/s")
		b.ReportMetric(m.Success*100, "%ok")
		b.ReportMetric(float64(m.Latencies.P50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(m.Latencies.P95.Microseconds())/1000, "p95-ms")
		b.ReportMetric(float64(m.Latencies.P99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(m.Latencies.Max.Microseconds())/1000, "max-ms")
		b.Logf("%d requests at %.0f/s: success %.2f%%, p50 %s p95 %s p99 %s max %s, status codes %v, errors %v",
			m.Requests, m.Rate, m.Success*100, m.Latencies.P50, m.Latencies.P95, m.Latencies.P99, m.Latencies.Max, m.StatusCodes, firstErrors(m.Errors))
		if m.Success < 0.999 {
			b.Errorf("only %.2f%% of requests succeeded", m.Success*100)
		}
	}
	b.StopTimer()
	load, _ = os.ReadFile("/proc/loadavg")
	b.Logf("load average after: %s", load)
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
