-- Fact tables the warehouse processor inserts into. Every one carries the
-- Kafka position its row came from (topic, partition, offset): the
-- ingest_position projection lets the processor find, when a partition's task
-- opens, which offsets past the committed one are already in the table, so a
-- batch cut short by a crash is completed and never doubled. Inserts carry an
-- insert_deduplication_token; non_replicated_deduplication_window makes a
-- plain (non-replicated) MergeTree honour it.

-- +goose NO TRANSACTION
-- +goose ENVSUB ON
-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS events
(
    time               DateTime64(3, 'UTC') COMMENT 'event time after clock-skew correction',
    profile_id         String COMMENT 'profile at resolution time; join profile_canonical for the surviving one',
    message_id         String,
    type               LowCardinality(String),
    event              LowCardinality(String) COMMENT 'track name; empty for other calls',
    name               String COMMENT 'page or screen name',
    user_id            String,
    anonymous_id       String,
    group_id           String,
    previous_id        String,
    original_timestamp DateTime64(3, 'UTC'),
    sent_at            DateTime64(3, 'UTC'),
    received_at        DateTime64(3, 'UTC'),
    ip                 String,
    user_agent         String,
    locale             LowCardinality(String),
    page_url           String,
    page_path          String,
    page_referrer      String,
    page_title         String,
    utm_source         LowCardinality(String),
    utm_medium         LowCardinality(String),
    utm_campaign       String,
    device_id          String,
    device_type        LowCardinality(String),
    app_name           LowCardinality(String),
    app_version        LowCardinality(String),
    library_name       LowCardinality(String),
    library_version    LowCardinality(String),
    email              String COMMENT 'traits.email, else context.traits.email, as written',
    product_id         String,
    category           LowCardinality(String),
    order_id           String,
    currency           LowCardinality(String),
    revenue            Float64,
    traits             Map(String, String) COMMENT 'values are JSON texts',
    properties         Map(String, String) COMMENT 'values are JSON texts; typed commerce keys are columns',
    context_traits     Map(String, String),
    context_extra      Map(String, String),
    kafka_time         DateTime64(3, 'UTC') COMMENT 'timestamp of the raw record: when the producer sent it',
    topic              LowCardinality(String),
    partition          Int32,
    offset             Int64,
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_profile profile_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_message message_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_order order_id TYPE bloom_filter GRANULARITY 4,
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (toDate(time), type, event, profile_id, time)
TTL toDateTime(time) + toIntervalDay(${CDP_WAREHOUSE_EVENTS_TTL_DAYS:-3650})
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS orders
(
    time        DateTime64(3, 'UTC'),
    order_id    String,
    profile_id  String,
    message_id  String,
    currency    LowCardinality(String),
    revenue     Float64 COMMENT 'properties.revenue, else total',
    total       Float64,
    shipping    Float64,
    tax         Float64,
    discount    Float64,
    coupon      String,
    lines       UInt16,
    quantity    UInt32,
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_profile profile_id TYPE bloom_filter GRANULARITY 4,
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (toDate(time), order_id)
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS order_lines
(
    time        DateTime64(3, 'UTC'),
    order_id    String,
    profile_id  String,
    line        UInt16 COMMENT 'position in properties.products, from 0',
    product_id  String,
    sku         String,
    name        String,
    category    LowCardinality(String),
    brand       LowCardinality(String),
    variant     String,
    price       Float64,
    quantity    UInt32,
    amount      Float64 COMMENT 'price * quantity',
    currency    LowCardinality(String),
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (toDate(time), category, product_id, order_id, line)
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS merges
(
    time               DateTime64(3, 'UTC'),
    merge_id           String,
    from_profile       String,
    into_profile       String,
    identifier_types   Array(LowCardinality(String)),
    identifier_values  Array(String),
    trigger_message_id String,
    rule               LowCardinality(String),
    topic              LowCardinality(String),
    partition          Int32,
    offset             Int64,
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3),
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (into_profile, time)
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS segment_membership_changes
(
    time               DateTime64(3, 'UTC'),
    profile_id         String,
    segment            LowCardinality(String),
    status             LowCardinality(String) COMMENT 'entered or exited',
    reason             String,
    trigger_message_id String,
    topic              LowCardinality(String),
    partition          Int32,
    offset             Int64,
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_profile profile_id TYPE bloom_filter GRANULARITY 4,
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (segment, time, profile_id)
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS profile_changes
(
    time               DateTime64(3, 'UTC'),
    profile_id         String,
    version            UInt64,
    cause              LowCardinality(String),
    trigger_message_id String,
    merged_from        String,
    features           Map(String, Float64) COMMENT 'numeric features after the change',
    feature_labels     Map(String, String) COMMENT 'string features after the change',
    features_cleared   Array(String) COMMENT 'features that have no value after the change',
    traits             Map(String, String) COMMENT 'traits after the change, JSON texts',
    traits_cleared     Array(String) COMMENT 'traits removed by the change',
    topic              LowCardinality(String),
    partition          Int32,
    offset             Int64,
    inserted_at        DateTime64(3, 'UTC') DEFAULT now64(3),
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (profile_id, version)
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS dead_letters
(
    time             DateTime64(3, 'UTC') COMMENT 'when the record was dead-lettered',
    code             LowCardinality(String),
    stage            LowCardinality(String),
    reason           String,
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    topic            LowCardinality(String),
    partition        Int32,
    offset           Int64,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    PROJECTION ingest_position (SELECT topic, partition, offset ORDER BY topic, partition, offset)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, code)
SETTINGS non_replicated_deduplication_window = 1000;
-- +goose StatementEnd

-- +goose Down
DROP TABLE IF EXISTS dead_letters;
DROP TABLE IF EXISTS profile_changes;
DROP TABLE IF EXISTS segment_membership_changes;
DROP TABLE IF EXISTS merges;
DROP TABLE IF EXISTS order_lines;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS events;
