-- Rollups the dashboards read instead of scanning the facts, filled at
-- insert time by materialized views. Summing and aggregating tables merge
-- rows in the background: always read them with sum() / ...Merge() and
-- GROUP BY, never row by row.

-- +goose NO TRANSACTION
-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS events_per_minute
(
    minute DateTime('UTC'),
    type   LowCardinality(String),
    event  LowCardinality(String),
    events UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, type, event);
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_minute_mv TO events_per_minute AS
SELECT toStartOfMinute(time) AS minute, type, event, count() AS events FROM events GROUP BY minute, type, event;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS events_per_hour
(
    hour   DateTime('UTC'),
    type   LowCardinality(String),
    event  LowCardinality(String),
    events UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, type, event);
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_hour_mv TO events_per_hour AS
SELECT toStartOfHour(time) AS hour, type, event, count() AS events FROM events GROUP BY hour, type, event;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS events_per_day
(
    day    Date,
    type   LowCardinality(String),
    event  LowCardinality(String),
    events UInt64
)
ENGINE = SummingMergeTree
ORDER BY (day, type, event);
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS events_per_day_mv TO events_per_day AS
SELECT toDate(time) AS day, type, event, count() AS events FROM events GROUP BY day, type, event;
-- +goose StatementEnd

-- Active profiles per day (as resolved when each event was processed).
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS profiles_active_daily
(
    day      Date,
    profiles AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY day;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS profiles_active_daily_mv TO profiles_active_daily AS
SELECT toDate(time) AS day, uniqExactState(profile_id) AS profiles FROM events GROUP BY day;
-- +goose StatementEnd

-- First and last event and event count per profile id: new profiles per day
-- are the profiles whose first event (over all their aliases) is that day.
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS profile_activity
(
    profile_id String,
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen  SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events     SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY profile_id;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS profile_activity_mv TO profile_activity AS
SELECT profile_id, min(time) AS first_seen, max(time) AS last_seen, count() AS events FROM events GROUP BY profile_id;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS revenue_daily
(
    day      Date,
    currency LowCardinality(String),
    orders   UInt64,
    revenue  Float64,
    quantity UInt64
)
ENGINE = SummingMergeTree
ORDER BY (day, currency);
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_daily_mv TO revenue_daily AS
SELECT toDate(time) AS day, currency, count() AS orders, sum(revenue) AS revenue, sum(quantity) AS quantity
FROM orders GROUP BY day, currency;
-- +goose StatementEnd

-- Segment entries and exits per day; the size at the end of a day is the
-- running sum of entered - exited.
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS segment_sizes_daily
(
    day     Date,
    segment LowCardinality(String),
    entered UInt64,
    exited  UInt64
)
ENGINE = SummingMergeTree
ORDER BY (day, segment);
-- +goose StatementEnd
-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_sizes_daily_mv TO segment_sizes_daily AS
SELECT toDate(time) AS day, segment, countIf(status = 'entered') AS entered, countIf(status = 'exited') AS exited
FROM segment_membership_changes GROUP BY day, segment;
-- +goose StatementEnd

-- +goose Down
DROP VIEW IF EXISTS segment_sizes_daily_mv;
DROP TABLE IF EXISTS segment_sizes_daily;
DROP VIEW IF EXISTS revenue_daily_mv;
DROP TABLE IF EXISTS revenue_daily;
DROP VIEW IF EXISTS profile_activity_mv;
DROP TABLE IF EXISTS profile_activity;
DROP VIEW IF EXISTS profiles_active_daily_mv;
DROP TABLE IF EXISTS profiles_active_daily;
DROP VIEW IF EXISTS events_per_day_mv;
DROP TABLE IF EXISTS events_per_day;
DROP VIEW IF EXISTS events_per_hour_mv;
DROP TABLE IF EXISTS events_per_hour;
DROP VIEW IF EXISTS events_per_minute_mv;
DROP TABLE IF EXISTS events_per_minute;
