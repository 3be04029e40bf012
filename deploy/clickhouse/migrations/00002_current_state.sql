-- Current state derived from the facts at insert time: which profile every
-- merged-away profile now is, who is in which segment, and each profile's
-- latest feature and trait values. All are ReplacingMergeTree tables keyed
-- by what they describe, so a row written twice is still one row: read them
-- with FINAL (or argMax by the version) to see one row per key.

-- +goose NO TRANSACTION
-- +goose Up
-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS profile_aliases
(
    alias_id   String COMMENT 'a profile that was merged away',
    profile_id String COMMENT 'the profile it was merged into (may itself be merged later)',
    merged_at  DateTime64(3, 'UTC'),
    merge_id   String
)
ENGINE = ReplacingMergeTree(merged_at)
ORDER BY alias_id;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS profile_aliases_mv TO profile_aliases AS
SELECT from_profile AS alias_id, into_profile AS profile_id, time AS merged_at, merge_id
FROM merges;
-- +goose StatementEnd

-- The surviving profile of every merged-away profile, following chains
-- (a into b, later b into c: a is c). Attribute events to surviving profiles
-- with:
--   SELECT if(c.profile_id != '', c.profile_id, e.profile_id) AS profile, count()
--   FROM events AS e LEFT JOIN profile_canonical AS c ON c.alias_id = e.profile_id
--   GROUP BY profile
-- +goose StatementBegin
CREATE VIEW IF NOT EXISTS profile_canonical AS
WITH RECURSIVE
    edge AS (SELECT alias_id, argMax(profile_id, merged_at) AS profile_id FROM profile_aliases GROUP BY alias_id),
    chain AS (
        SELECT alias_id, profile_id, 1 AS depth FROM edge
        UNION ALL
        SELECT chain.alias_id, edge.profile_id, chain.depth + 1
        FROM chain INNER JOIN edge ON edge.alias_id = chain.profile_id
        WHERE chain.depth < 64
    )
SELECT alias_id, argMax(profile_id, depth) AS profile_id
FROM chain
GROUP BY alias_id;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS segment_members
(
    segment    LowCardinality(String),
    profile_id String,
    is_member  UInt8,
    since      DateTime64(3, 'UTC') COMMENT 'time of the latest change',
    version    UInt64 COMMENT 'orders changes of one profile and segment: the change time in ms'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (segment, profile_id);
-- +goose StatementEnd

-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_members_mv TO segment_members AS
SELECT segment, profile_id, toUInt8(status = 'entered') AS is_member, time AS since,
       toUInt64(toUnixTimestamp64Milli(time)) AS version
FROM segment_membership_changes;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS profile_features
(
    profile_id String,
    name       LowCardinality(String),
    number     Nullable(Float64),
    label      Nullable(String),
    version    UInt64 COMMENT 'the profile version that set it',
    time       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, name);
-- +goose StatementEnd

-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS profile_features_mv TO profile_features AS
SELECT profile_id, name,
       if(mapContains(features, name), features[name], NULL) AS number,
       if(mapContains(feature_labels, name), feature_labels[name], NULL) AS label,
       version, time
FROM profile_changes
ARRAY JOIN arrayConcat(mapKeys(features), mapKeys(feature_labels), features_cleared) AS name;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TABLE IF NOT EXISTS profile_traits
(
    profile_id String,
    name       LowCardinality(String),
    value      Nullable(String) COMMENT 'JSON text; NULL once removed',
    version    UInt64,
    time       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, name);
-- +goose StatementEnd

-- +goose StatementBegin
CREATE MATERIALIZED VIEW IF NOT EXISTS profile_traits_mv TO profile_traits AS
SELECT profile_id, name, if(mapContains(traits, name), traits[name], NULL) AS value, version, time
FROM profile_changes
ARRAY JOIN arrayConcat(mapKeys(traits), traits_cleared) AS name;
-- +goose StatementEnd

-- +goose Down
DROP VIEW IF EXISTS profile_traits_mv;
DROP TABLE IF EXISTS profile_traits;
DROP VIEW IF EXISTS profile_features_mv;
DROP TABLE IF EXISTS profile_features;
DROP VIEW IF EXISTS segment_members_mv;
DROP TABLE IF EXISTS segment_members;
DROP VIEW IF EXISTS profile_canonical;
DROP VIEW IF EXISTS profile_aliases_mv;
DROP TABLE IF EXISTS profile_aliases;
