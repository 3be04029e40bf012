package profileapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

type metrics struct {
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cdp_api_request_duration_seconds",
			Help: "Profile API requests by route pattern, method and status code, from the first byte read to the last written.",
			// Fine below 10 ms, where the latency target (p99 5 ms) is.
			Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cdp_api_requests_in_flight", Help: "Profile API requests being served.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.duration, m.inFlight} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering the API metrics: %w", err)
			}
		}
	}
	return m, nil
}

// recorder remembers the status and size written.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// observe measures, logs and recovers every request. The route label is
// the mux's pattern, not the path, so profile ids do not become label
// values; the log has the path without its query, because by-identifier's
// query holds an email or a phone number.
func (h *handler) observe(m *metrics, mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, route := mux.Handler(r)
		if route == "/" || route == "" {
			route = "unmatched"
		}
		var client string
		r = r.WithContext(context.WithValue(r.Context(), clientKey{}, &client))
		rec := &recorder{ResponseWriter: w}
		m.inFlight.Inc()
		defer func() {
			m.inFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				h.o.Logger.Error("handler panicked", zap.String("path", r.URL.Path), zap.Any("panic", p), zap.Stack("stack"))
				if rec.status == 0 {
					writeError(rec, http.StatusInternalServerError, CodeInternal, "internal error (logged)")
				}
			}
			d := time.Since(start)
			m.duration.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Observe(d.Seconds())
			// Check first: with the access log off, no fields are built.
			if ce := h.o.Logger.Check(zap.InfoLevel, "request"); ce != nil {
				ce.Write(zap.String("method", r.Method), zap.String("route", route), zap.String("path", r.URL.Path),
					zap.Int("status", rec.status), zap.Int("bytes", rec.bytes), zap.Duration("duration", d),
					zap.String("client", client), zap.String("remote", r.RemoteAddr))
			}
		}()
		next.ServeHTTP(rec, r)
	})
}
