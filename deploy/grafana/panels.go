// Package grafana holds StreamCDP's dashboards as data: every panel's SQL,
// its expected columns and its display, in one registry (this file). The
// Grafana dashboard files under dashboards/ are generated from it
// (TestDashboardsAreGenerated keeps them equal; `go test ./deploy/grafana
// -run TestDashboardsAreGenerated -update` rewrites them), and the panel
// test of processors/warehouse runs every query, expanded the way the
// ClickHouse datasource plugin expands it (Expand), against a warehouse
// loaded through the real pipeline. Another front end can read the same
// registry instead of keeping a second copy of the queries.
package grafana

// Datasource is the provisioned ClickHouse datasource
// (provisioning/datasources/clickhouse.yaml).
const (
	DatasourceType = "grafana-clickhouse-datasource"
	DatasourceUID  = "clickhouse"
	// PluginVersion is the datasource plugin the dashboards are written
	// for; docker-compose.yml installs exactly this version.
	PluginVersion = "4.12.0"
)

// Kind is a Grafana panel type.
type Kind string

const (
	TimeSeries Kind = "timeseries"
	Stat       Kind = "stat"
	Table      Kind = "table"
	BarChart   Kind = "barchart"
	PieChart   Kind = "piechart"
	BarGauge   Kind = "bargauge"
)

// Panel is one panel: a query and how to show it.
type Panel struct {
	// Key names the panel in tests and other front ends; stable.
	Key         string
	Title       string
	Description string
	Kind        Kind
	// SQL is the query with the plugin's macros ($__timeFilter(col), ...)
	// and dashboard variables (${name:sqlstring}).
	SQL string
	// Columns are the result's column names, in order.
	Columns []string
	// Unit is the display unit of the values (Grafana's unit ids).
	Unit string
	W, H int
}

// Variable is a dashboard variable: a text box (Query empty) or a
// variable whose options a query computes: hidden and single-valued (its
// value is the query's), or, with Multi, a multi-value picker with "All"
// (the default). Panels test a multi-value variable with
// $__conditionalAll(column IN (${name:sqlstring}), $name), so that "All"
// filters nothing.
type Variable struct {
	Name, Label string
	Query       string // SQL, expanded like a panel's
	Default     string
	Multi       bool
}

// Dashboard is one dashboard of the registry.
type Dashboard struct {
	UID, Title, Description string
	File                    string // under dashboards/
	From                    string // default time range start ("now-24h")
	Variables               []Variable
	Panels                  []Panel
}

// aliases is every profile id of the selected profile: itself and the
// profiles merged into it, directly or through a chain.
const aliases = `(SELECT ${profile_id:sqlstring} UNION ALL SELECT alias_id FROM profile_canonical WHERE profile_id = ${profile_id:sqlstring})`

// profileActivity is each surviving profile's first and last event.
const profileActivity = `SELECT if(c.profile_id != '', c.profile_id, a.profile_id) AS profile, min(a.first_seen) AS first, max(a.last_seen) AS last
  FROM profile_activity AS a LEFT JOIN profile_canonical AS c ON c.alias_id = a.profile_id
  GROUP BY profile`

// FunnelSteps are the Commerce funnel's track events, in order.
var FunnelSteps = []string{"Product Viewed", "Product Added", "Checkout Started", "Order Completed"}

// Dashboards is the registry.
var Dashboards = []Dashboard{
	{
		UID: "streamcdp-overview", Title: "StreamCDP / Overview", File: "overview.json", From: "now-24h",
		Description: "Traffic through the platform: events by type, active and new profiles, merges, dead letters and how far behind the warehouse is.",
		Panels: []Panel{
			{Key: "events_per_interval", Title: "Events by type", Kind: TimeSeries, W: 16, H: 8,
				Description: "Events per interval, by call type (rollup events_per_minute).",
				SQL: `SELECT $__timeInterval(minute) AS time, type, sum(events) AS events
FROM events_per_minute
WHERE $__timeFilter(minute)
GROUP BY time, type
ORDER BY time, type`,
				Columns: []string{"time", "type", "events"}},
			{Key: "events_by_type", Title: "Events in range", Kind: PieChart, W: 8, H: 8,
				Description: "Events in the time range by call type.",
				SQL: `SELECT type, sum(events) AS events
FROM events_per_minute
WHERE $__timeFilter(minute)
GROUP BY type
ORDER BY events DESC, type`,
				Columns: []string{"type", "events"}},
			{Key: "active_profiles", Title: "Active profiles per day", Kind: TimeSeries, W: 8, H: 8,
				Description: "Distinct profile ids with at least one event that day (rollup profiles_active_daily).",
				SQL: `SELECT toDateTime(day, 'UTC') AS time, uniqExactMerge(profiles) AS active_profiles
FROM profiles_active_daily
WHERE $__dateFilter(day)
GROUP BY day
ORDER BY day`,
				Columns: []string{"time", "active_profiles"}},
			{Key: "new_profiles", Title: "New profiles per day", Kind: BarChart, W: 8, H: 8,
				Description: "Surviving profiles whose first event (over all the profiles merged into them) falls on that day.",
				SQL: `SELECT toDateTime(toDate(first), 'UTC') AS time, count() AS new_profiles
FROM (` + profileActivity + `)
WHERE $__timeFilter(first)
GROUP BY time
ORDER BY time`,
				Columns: []string{"time", "new_profiles"}},
			{Key: "merges", Title: "Profile merges", Kind: TimeSeries, W: 8, H: 8,
				Description: "Identity merges per interval.",
				SQL: `SELECT $__timeInterval(time) AS time, count() AS merges
FROM merges
WHERE $__timeFilter(time)
GROUP BY time
ORDER BY time`,
				Columns: []string{"time", "merges"}},
			{Key: "dead_letters", Title: "Dead letters by reason", Kind: TimeSeries, W: 12, H: 8,
				Description: "Records dead-lettered per interval, by reason code (time: when they were dead-lettered).",
				SQL: `SELECT $__timeInterval(time) AS time, code, count() AS dead_letters
FROM dead_letters
WHERE $__timeFilter(time)
GROUP BY time, code
ORDER BY time, code`,
				Columns: []string{"time", "code", "dead_letters"}},
			{Key: "processing_lag", Title: "Warehouse lag", Kind: TimeSeries, W: 12, H: 8, Unit: "s",
				Description: "Seconds from the producer sending an event to its row in ClickHouse (p50, p95), per interval of insertion.",
				SQL: `SELECT $__timeInterval(inserted_at) AS time,
  quantile(0.5)(dateDiff('millisecond', kafka_time, inserted_at)) / 1000 AS lag_p50,
  quantile(0.95)(dateDiff('millisecond', kafka_time, inserted_at)) / 1000 AS lag_p95,
  count() AS events
FROM events
WHERE $__timeFilter(inserted_at)
GROUP BY time
ORDER BY time`,
				Columns: []string{"time", "lag_p50", "lag_p95", "events"}},
		},
	},
	{
		UID: "streamcdp-customers", Title: "StreamCDP / Customers", File: "customers.json", From: "now-30d",
		Description: "Segments over time, who enters and leaves them, and the lifecycle mix of profiles.",
		Variables: []Variable{
			{Name: "segment", Label: "Segments", Multi: true, Query: `SELECT DISTINCT segment FROM segment_sizes_daily ORDER BY segment`},
		},
		Panels: []Panel{
			{Key: "segment_sizes", Title: "Segment sizes", Kind: TimeSeries, W: 16, H: 8,
				Description: "Members of each segment at the end of each day: the running sum of entries minus exits since the first change.",
				SQL: `SELECT time, segment, members
FROM (
  SELECT toDateTime(day, 'UTC') AS time, segment,
    sum(toInt64(sum(entered)) - toInt64(sum(exited))) OVER (PARTITION BY segment ORDER BY day) AS members
  FROM segment_sizes_daily
  WHERE $__conditionalAll(segment IN (${segment:sqlstring}), $segment)
  GROUP BY day, segment
)
WHERE $__timeFilter(time)
ORDER BY time, segment`,
				Columns: []string{"time", "segment", "members"}},
			{Key: "segment_members_now", Title: "Members now", Kind: BarGauge, W: 8, H: 8,
				Description: "Current members of each segment (segment_members).",
				SQL: `SELECT segment, countIf(is_member = 1) AS members
FROM segment_members FINAL
WHERE $__conditionalAll(segment IN (${segment:sqlstring}), $segment)
GROUP BY segment
ORDER BY members DESC, segment`,
				Columns: []string{"segment", "members"}},
			{Key: "segment_flows", Title: "Entered and exited", Kind: BarChart, W: 16, H: 8,
				Description: "Profiles entering and leaving each segment per day.",
				SQL: `SELECT toDateTime(day, 'UTC') AS time, segment, sum(entered) AS entered, sum(exited) AS exited
FROM segment_sizes_daily
WHERE $__dateFilter(day) AND $__conditionalAll(segment IN (${segment:sqlstring}), $segment)
GROUP BY day, segment
ORDER BY time, segment`,
				Columns: []string{"time", "segment", "entered", "exited"}},
			{Key: "lifecycle", Title: "Lifecycle mix", Kind: PieChart, W: 8, H: 8,
				Description: "Surviving profiles seen by the end of the range, by lifecycle stage at that time: new (first event in its last 7 days), active (an event in its last 30 days), lapsing (30 to 90 days), churned (longer).",
				SQL: `SELECT multiIf(first >= $__toTime - INTERVAL 7 DAY, 'new',
                last >= $__toTime - INTERVAL 30 DAY, 'active',
                last >= $__toTime - INTERVAL 90 DAY, 'lapsing', 'churned') AS stage,
  count() AS profiles
FROM (` + profileActivity + `)
WHERE first <= $__toTime
GROUP BY stage
ORDER BY stage`,
				Columns: []string{"stage", "profiles"}},
		},
	},
	{
		UID: "streamcdp-commerce", Title: "StreamCDP / Commerce", File: "commerce.json", From: "now-30d",
		Description: "Orders and revenue (Order Completed events), top products and the shopping funnel.",
		Panels: []Panel{
			{Key: "orders_summary", Title: "Orders, revenue, average order", Kind: Stat, W: 24, H: 4,
				Description: "Orders, revenue and average order value in the range.",
				SQL: `SELECT orders, round(total, 2) AS revenue, round(total / orders, 2) AS average_order_value
FROM (SELECT count() AS orders, sum(revenue) AS total FROM orders WHERE $__timeFilter(time))`,
				Columns: []string{"orders", "revenue", "average_order_value"}},
			{Key: "revenue_per_day", Title: "Revenue per day", Kind: BarChart, W: 12, H: 8,
				Description: "Revenue and orders per day and currency (rollup revenue_daily).",
				SQL: `SELECT toDateTime(day, 'UTC') AS time, currency, round(sum(revenue), 2) AS revenue, sum(orders) AS orders
FROM revenue_daily
WHERE $__dateFilter(day)
GROUP BY day, currency
ORDER BY time, currency`,
				Columns: []string{"time", "currency", "revenue", "orders"}},
			{Key: "funnel", Title: "Funnel: view, cart, checkout, order", Kind: BarGauge, W: 12, H: 8,
				Description: "Events and distinct profiles at each step of the shopping funnel in the range.",
				SQL: `SELECT event AS step, count() AS events, uniqExact(profile_id) AS profiles
FROM events
WHERE $__timeFilter(time) AND type = 'track'
  AND event IN ('Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed')
GROUP BY event
ORDER BY indexOf(['Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed'], event)`,
				Columns: []string{"step", "events", "profiles"}},
			{Key: "top_products", Title: "Top products", Kind: Table, W: 12, H: 10,
				Description: "The ten products with the most revenue in the range.",
				SQL: `SELECT product_id, any(name) AS name, any(category) AS category, sum(quantity) AS units, round(sum(amount), 2) AS revenue
FROM order_lines
WHERE $__timeFilter(time)
GROUP BY product_id
ORDER BY revenue DESC, product_id
LIMIT 10`,
				Columns: []string{"product_id", "name", "category", "units", "revenue"}},
			{Key: "revenue_by_category", Title: "Revenue by category", Kind: PieChart, W: 12, H: 10,
				Description: "Revenue of order lines by product category in the range.",
				SQL: `SELECT category, round(sum(amount), 2) AS revenue
FROM order_lines
WHERE $__timeFilter(time)
GROUP BY category
ORDER BY revenue DESC, category`,
				Columns: []string{"category", "revenue"}},
		},
	},
	{
		UID: "streamcdp-profile", Title: "StreamCDP / Profile", File: "profile.json", From: "now-90d",
		Description: "One customer: identities, traits and features, segment history and event timeline, over every profile merged into it.",
		Variables: []Variable{
			{Name: "profile", Label: "Profile id, email or user id"},
			// The surviving profile of whatever was typed: a profile id (also
			// a merged-away one), an email, or a user id.
			{Name: "profile_id", Label: "Profile", Query: `SELECT if(c.profile_id != '', c.profile_id, m.profile_id) AS profile_id
FROM (
  SELECT profile_id FROM events
  WHERE profile_id = ${profile:sqlstring} OR user_id = ${profile:sqlstring} OR lower(email) = lower(${profile:sqlstring})
  ORDER BY time DESC
  LIMIT 1
) AS m
LEFT JOIN profile_canonical AS c ON c.alias_id = m.profile_id`},
		},
		Panels: []Panel{
			{Key: "identities", Title: "Identities", Kind: Table, W: 12, H: 9,
				Description: "Every identifier seen on the profile's events, with when it was first and last seen.",
				SQL: `SELECT id.1 AS type, id.2 AS value, min(time) AS first_seen, max(time) AS last_seen
FROM events
ARRAY JOIN [('user_id', user_id), ('anonymous_id', anonymous_id), ('email', lower(email)), ('device_id', device_id)] AS id
WHERE profile_id IN ` + aliases + ` AND id.2 != ''
GROUP BY type, value
ORDER BY type, value`,
				Columns: []string{"type", "value", "first_seen", "last_seen"}},
			{Key: "traits", Title: "Traits and features", Kind: Table, W: 12, H: 9,
				Description: "Latest value of every trait (JSON) and feature (from profile changes).",
				SQL: `SELECT kind, name, value, updated
FROM (
  SELECT 'trait' AS kind, name, argMax(value, version) AS value, max(time) AS updated
  FROM profile_traits WHERE profile_id IN ` + aliases + `
  GROUP BY name HAVING value IS NOT NULL
  UNION ALL
  SELECT 'feature' AS kind, name, argMax(coalesce(label, toString(number)), version) AS value, max(time) AS updated
  FROM profile_features WHERE profile_id IN ` + aliases + `
  GROUP BY name HAVING value IS NOT NULL
)
ORDER BY kind, name`,
				Columns: []string{"kind", "name", "value", "updated"}},
			{Key: "segments_now", Title: "Segments now", Kind: Table, W: 8, H: 8,
				Description: "Segments the profile is in, since when.",
				SQL: `SELECT segment, since
FROM segment_members FINAL
WHERE profile_id IN ` + aliases + ` AND is_member = 1
ORDER BY segment`,
				Columns: []string{"segment", "since"}},
			{Key: "segment_history", Title: "Segment history", Kind: Table, W: 16, H: 8,
				Description: "Every segment entry and exit of the profile, newest first.",
				SQL: `SELECT time, segment, status, reason
FROM segment_membership_changes
WHERE profile_id IN ` + aliases + `
ORDER BY time DESC, segment
LIMIT 200`,
				Columns: []string{"time", "segment", "status", "reason"}},
			{Key: "timeline", Title: "Event timeline", Kind: Table, W: 24, H: 12,
				Description: "The profile's events in the range, newest first.",
				SQL: `SELECT time, type, event, name, page_path, product_id, order_id, revenue
FROM events
WHERE profile_id IN ` + aliases + ` AND $__timeFilter(time)
ORDER BY time DESC, message_id
LIMIT 500`,
				Columns: []string{"time", "type", "event", "name", "page_path", "product_id", "order_id", "revenue"}},
		},
	},
}
