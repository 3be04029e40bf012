package recommend

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the processor's own, beside the runtime's cdp_* ones.
type metrics struct {
	modelOrders, modelItems, modelPairs prometheus.Gauge
	modelLag                            prometheus.Gauge
	refreshes                           prometheus.Counter
	listChanges                         prometheus.Counter
	scoreChanges                        *prometheus.CounterVec // cause
	fits                                *prometheus.CounterVec // outcome
	fitDuration                         prometheus.Histogram
	fitCustomers                        prometheus.Gauge
	swept                               prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cdp", Subsystem: "recommend", Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "recommend", Name: name, Help: help})
	}
	m := &metrics{
		modelOrders: g("model_orders", "Orders the instance's item associations have learned from."),
		modelItems:  g("model_items", "Items in the associations."),
		modelPairs:  g("model_pairs", "Association counters held (at most 2 x items x capacity)."),
		modelLag:    g("model_lag_records", "Records of the orders changelog the instance has not applied yet."),
		refreshes:   c("refreshes_total", "Recommendation lists computed (once per profile and batch with a view or an order)."),
		listChanges: c("list_changes_total", "Recommendation lists that changed and were emitted."),
		scoreChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "recommend", Name: "score_changes_total",
			Help: "Scores records emitted, by cause (order, refit)."}, []string{"cause"}),
		fits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cdp", Subsystem: "recommend", Name: "fits_total",
			Help: "Score model fits, by outcome (fitted, skipped: too few customers)."}, []string{"outcome"}),
		fitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "cdp", Subsystem: "recommend", Name: "fit_duration_seconds",
			Help: "Time to fit RFM, BG/NBD and Gamma-Gamma on the customer base sample.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)}),
		fitCustomers: g("fit_customers", "Customers in the sample the latest fit used."),
		swept:        c("rescored_profiles_total", "Profiles rescored after a refit."),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.modelOrders, m.modelItems, m.modelPairs, m.modelLag, m.refreshes, m.listChanges,
			m.scoreChanges, m.fits, m.fitDuration, m.fitCustomers, m.swept} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
