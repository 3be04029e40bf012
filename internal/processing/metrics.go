package processing

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the counters every processor exports on /metrics. All carry a
// processor label so one Prometheus scrapes `cdp run all` as well as one
// process per processor.
type Metrics struct {
	RecordsIn     *prometheus.CounterVec   // processor, topic
	RecordsOut    *prometheus.CounterVec   // processor, topic
	Errors        *prometheus.CounterVec   // processor, stage
	Dropped       *prometheus.CounterVec   // processor, reason: records not passed on (duplicates, DLQ)
	Transactions  *prometheus.CounterVec   // processor, outcome: committed, aborted
	Lag           *prometheus.GaugeVec     // processor, topic, partition
	Latency       *prometheus.HistogramVec // processor: record append time to committed output
	BatchDuration *prometheus.HistogramVec // processor: poll-to-commit of one batch
	Ready         *prometheus.GaugeVec     // processor
	registry      *prometheus.Registry
}

// NewMetrics registers the metrics in reg (a fresh registry when nil).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		registry: reg,
		RecordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "records_in_total",
			Help: "Records consumed, by processor and topic."}, []string{"processor", "topic"}),
		RecordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "records_out_total",
			Help: "Records produced in committed transactions, by processor and topic."}, []string{"processor", "topic"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "errors_total",
			Help: "Errors by processor and stage (fetch, process, produce, commit)."}, []string{"processor", "stage"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "dropped_total",
			Help: "Input records not passed on, by reason (duplicate, dlq:<code>)."}, []string{"processor", "reason"}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "transactions_total",
			Help: "Kafka transactions by outcome."}, []string{"processor", "outcome"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "cdp", Name: "consumer_lag",
			Help: "Records between the last consumed offset and the high watermark."}, []string{"processor", "topic", "partition"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cdp", Name: "processing_latency_seconds",
			Help:    "From a record's append to the broker until its outputs are committed.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"processor"}),
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cdp", Name: "batch_duration_seconds",
			Help:    "From the end of a poll until the batch's transaction committed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"processor"}),
		Ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "cdp", Name: "ready",
			Help: "1 when the processor's last batch succeeded."}, []string{"processor"}),
	}
	reg.MustRegister(m.RecordsIn, m.RecordsOut, m.Errors, m.Dropped, m.Transactions, m.Lag, m.Latency, m.BatchDuration, m.Ready)
	return m
}

// Registry is where the metrics are registered, for the /metrics handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }
