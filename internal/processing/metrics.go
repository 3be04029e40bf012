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
	// Runtime v2: tasks, replays, timers, failures.
	Tasks         *prometheus.GaugeVec     // processor: open tasks
	Paused        *prometheus.GaugeVec     // processor: partitions paused after a failure
	Replayed      *prometheus.CounterVec   // processor: records whose journaled outputs were produced again
	Repaired      *prometheus.CounterVec   // processor: records applied again to repair a store behind Kafka
	TimersFired   *prometheus.CounterVec   // processor
	TimerLateness *prometheus.HistogramVec // processor: fire time minus due time (wall-clock timers)
	Fenced        *prometheus.CounterVec   // processor: journal writes refused by the fence
	PollsPerTxn   *prometheus.HistogramVec // processor
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
			Help: "1 when the processor has joined its group and no partition is failing."}, []string{"processor"}),
		Tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "cdp", Name: "tasks",
			Help: "Open tasks (input partitions owned by this instance)."}, []string{"processor"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "cdp", Name: "partitions_paused",
			Help: "Partitions paused after a failure, waiting for a retry."}, []string{"processor"}),
		Replayed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "replayed_records_total",
			Help: "Records already applied to the store whose outputs were produced again after an abort or a restart."}, []string{"processor"}),
		Repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "repaired_records_total",
			Help: "Records applied again, outputs suppressed, because the store was behind Kafka."}, []string{"processor"}),
		TimersFired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "timers_fired_total",
			Help: "Durable timers fired."}, []string{"processor"}),
		TimerLateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cdp", Name: "timer_lateness_seconds",
			Help:    "How late wall-clock timers fired after their due time.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"processor"}),
		Fenced: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Name: "fenced_total",
			Help: "Journal writes refused because another instance took the partition."}, []string{"processor"}),
		PollsPerTxn: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cdp", Name: "polls_per_transaction",
			Help:    "Polls collected by one committed transaction.",
			Buckets: []float64{1, 2, 3, 5, 10, 20, 50, 100}}, []string{"processor"}),
	}
	reg.MustRegister(m.RecordsIn, m.RecordsOut, m.Errors, m.Dropped, m.Transactions, m.Lag, m.Latency, m.BatchDuration, m.Ready,
		m.Tasks, m.Paused, m.Replayed, m.Repaired, m.TimersFired, m.TimerLateness, m.Fenced, m.PollsPerTxn)
	return m
}

// Registry is where the metrics are registered, for the /metrics handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }
