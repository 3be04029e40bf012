// Package definition turns the `features:` section of the topology into
// compiled feature definitions: which events a feature counts, the value it
// reads from them, how it aggregates them and over which window.
//
// It is a leaf package (it knows events, not Kafka or Redis) so that the
// topology can compile the definitions while it validates the file and
// report each mistake at its line, and the features processor, the segments
// processor and the profile API can share one compiled set.
//
// A definition in YAML:
//
//	features:
//	  allowed_lateness: 1h
//	  definitions:
//	    - name: revenue_30d
//	      type: track                  # track, page, screen, identify, group, alias
//	      events: [Order Completed]    # event names (page/screen: the page name)
//	      where: properties.currency == "USD"   # optional, an expr-lang predicate
//	      agg: sum                     # see Agg
//	      field: properties.revenue    # see Field
//	      window: 30d                  # a duration (15m, 24h, 7d) or lifetime
//
// # Windows and their error bound
//
// A sliding window of length W is kept as Buckets (default 60) buckets of
// width b = W/Buckets on event time. At read time t an event at time e counts
// when its bucket ends after t−W, that is
//
//	(floor(e/b)+1)·b > t − W
//
// so every event of the last W counts, and an event up to b older than the
// window's start may still count: the error is at most 1/Buckets of the
// window, at its old edge (for 30d, events up to 12h older than 30 days).
// Lifetime aggregates have no window.
//
// # Allowed lateness
//
// A profile's buckets are kept until they end allowed_lateness before the
// window's start at the profile's latest event time, so window values read
// at any time from (latest event − allowed_lateness) on are exact whatever
// the order events arrived in, and a merge folds two profiles' buckets
// exactly. An event whose bucket is already older than that when it arrives
// cannot count in the window at any such read time: it counts in lifetime
// aggregates only, and in cdp_features_late_events_total.
package definition

// Spec is the `features:` section of the topology.
type Spec struct {
	// AllowedLateness is a duration such as 1h (the default); see the
	// package doc.
	AllowedLateness string `yaml:"allowed_lateness"`
	// Definitions are the features, each computed per profile.
	Definitions []FeatureSpec `yaml:"definitions"`
}

// FeatureSpec is one feature as written in the topology.
type FeatureSpec struct {
	// Name identifies the feature in profiles, changes and segment rules:
	// lower-case letters, digits and underscores.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Type restricts the call type (track, page, screen, identify, group,
	// alias); empty means any.
	Type string `yaml:"type"`
	// Events restricts track events by name (and page/screen calls by page
	// name); empty means any.
	Events []string `yaml:"events"`
	// Where is an optional expr-lang predicate over the event (see
	// PredicateEnv for the names it may use).
	Where string `yaml:"where"`
	// Agg is the aggregation: count, sum, min, max, avg, distinct, first,
	// last, first_seen, last_seen, top.
	Agg string `yaml:"agg"`
	// Field is the value aggregated (see the Field paths in field.go).
	// count takes an optional field (then it counts values, e.g. the
	// products of orders); first_seen and last_seen take none.
	Field string `yaml:"field"`
	// Window is "lifetime" (the default) or a duration: 90m, 24h, 7d.
	Window string `yaml:"window"`
	// Buckets is the number of buckets of a sliding window (default 60):
	// the error bound is 1/Buckets of the window.
	Buckets int `yaml:"buckets"`
	// Limit bounds the values a profile keeps for distinct (exact up to
	// Limit, default 64, then a HyperLogLog sketch) and top (the Limit
	// most frequent values, default 16).
	Limit int `yaml:"limit"`
}
