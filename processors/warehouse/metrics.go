package warehouse

import "github.com/prometheus/client_golang/prometheus"

// metrics are the warehouse's own; the runtime's (records in, lag,
// transactions) come from processing.Metrics.
type metrics struct {
	inserted  *prometheus.CounterVec   // table
	skipped   *prometheus.CounterVec   // table: rows already in ClickHouse after a restart
	batchRows *prometheus.HistogramVec // table
	latency   *prometheus.HistogramVec // table
	retries   *prometheus.CounterVec   // table
	buffered  prometheus.Gauge
	undecoded *prometheus.CounterVec // topic
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		inserted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "rows_inserted_total",
			Help: "Rows inserted into ClickHouse, by table (materialized views not counted)."}, []string{"table"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "rows_skipped_total",
			Help: "Rows not inserted because ClickHouse already had them (inserted before a crash or abort, not committed in Kafka)."}, []string{"table"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "insert_rows",
			Help: "Rows per insert, by table.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}, []string{"table"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "insert_duration_seconds",
			Help: "Time of one successful insert, retries included, by table.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 13)}, []string{"table"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "insert_retries_total",
			Help: "Inserts retried after an error, by table."}, []string{"table"}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "buffered_rows",
			Help: "Rows held in memory waiting for their insert (bounded by the batch size)."}),
		undecoded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "warehouse", Name: "undecodable_records_total",
			Help: "Input records that could not be decoded (dead-lettered), by topic."}, []string{"topic"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.inserted, m.skipped, m.batchRows, m.latency, m.retries, m.buffered, m.undecoded} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
