-- Queries over telemetry_events (athena/telemetry_events.sql), in Athena's
-- SQL (Trino). Each is separated by a blank line and named in a comment.
--
-- Delivery is at least once, so every query first keeps one row per
-- messageid: row_number() over the copies, the first received wins. A replay
-- of the pipeline rewrites the same object (same key) and adds no copy, but
-- a client's or the gateway's retry, a re-driven dead letter, or an object
-- rebuilt from a stream that was trimmed meanwhile can. The copies of one
-- event share its messageid; a retry's copy may land in the next hour, so
-- widen the datehour range by an hour at each end when exact counts at the
-- edges matter.
--
-- Every query filters on datehour (partition projection): without it Athena
-- reads every hour since the projection's start. The window function cannot
-- push that filter down, so it goes inside, where the table is read.

-- name: events_deduplicated
-- Every event of a time range, each messageid once.
SELECT *
FROM (
  SELECT e.*,
         row_number() OVER (PARTITION BY messageid ORDER BY receivedat, "$path") AS copy
  FROM telemetry_events e
  WHERE datehour BETWEEN '2026/11/01/00' AND '2026/11/30/23'
)
WHERE copy = 1;

-- name: build_version_adoption
-- Share of builds per @netlify/build version and day, deduplicated: how fast
-- a release is adopted. Counts Netlify Build's completed-build event and its
-- legacy telemetry-service name.
WITH builds AS (
  SELECT date(from_iso8601_timestamp("timestamp")) AS day,
         properties.buildversion AS build_version,
         row_number() OVER (PARTITION BY messageid ORDER BY receivedat) AS copy
  FROM telemetry_events
  WHERE datehour BETWEEN '2026/11/01/00' AND '2026/11/30/23'
    AND event IN ('build:ci_build_process_completed', 'netlifyCI:buildComplete')
)
SELECT day,
       build_version,
       count(*) AS builds,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY day), 2) AS share_pct
FROM builds
WHERE copy = 1
GROUP BY day, build_version
ORDER BY day, builds DESC;

-- name: build_version_adoption_curve
-- The curve `worker counts -html` draws, for ranges longer than the
-- counters are read for: each week's share of builds per version, the 8
-- versions with the highest weekly share kept and the rest summed as
-- other, as the chart bands them (its days become weeks here, which keeps a
-- year's curve readable). Builds without a version are their own band.
WITH builds AS (
  SELECT date_trunc('week', date(from_iso8601_timestamp("timestamp"))) AS week,
         coalesce(properties.buildversion, '(not set)') AS build_version,
         row_number() OVER (PARTITION BY messageid ORDER BY receivedat) AS copy
  FROM telemetry_events
  WHERE datehour BETWEEN '2026/01/01/00' AND '2026/12/31/23'
    AND event IN ('build:ci_build_process_completed', 'netlifyCI:buildComplete')
),
weekly AS (
  SELECT week, build_version, count(*) AS builds,
         1.0 * count(*) / sum(count(*)) OVER (PARTITION BY week) AS share
  FROM builds
  WHERE copy = 1
  GROUP BY week, build_version
),
shown AS (
  SELECT build_version
  FROM weekly
  WHERE build_version <> '(not set)'
  GROUP BY build_version
  ORDER BY max(share) DESC, sum(builds) DESC
  LIMIT 8
)
SELECT w.week,
       CASE WHEN w.build_version = '(not set)' OR s.build_version IS NOT NULL THEN w.build_version ELSE 'other' END AS band,
       sum(w.builds) AS builds,
       round(100 * sum(w.share), 2) AS share_pct
FROM weekly w
LEFT JOIN shown s ON s.build_version = w.build_version
GROUP BY 1, 2
ORDER BY 1, 3 DESC;

-- name: plugin_versions
-- Builds per plugin and version over a range, deduplicated. plugins holds
-- each plugin's JSON text; legacy events hold bare names (no version).
WITH builds AS (
  SELECT properties.plugins AS plugins,
         row_number() OVER (PARTITION BY messageid ORDER BY receivedat) AS copy
  FROM telemetry_events
  WHERE datehour BETWEEN '2026/11/01/00' AND '2026/11/30/23'
    AND event IN ('build:ci_build_process_completed', 'netlifyCI:buildComplete')
)
SELECT coalesce(json_extract_scalar(p, '$.name'), p) AS plugin,
       json_extract_scalar(p, '$.version') AS version,
       count(*) AS builds
FROM builds
CROSS JOIN UNNEST(plugins) AS t(p)
WHERE copy = 1
GROUP BY 1, 2
ORDER BY builds DESC;

-- name: duplicate_rate
-- How many copies the pipeline and its clients wrote, per day: a health
-- check of at-least-once delivery (expect a small fraction of a percent).
SELECT substr(datehour, 1, 10) AS day,
       count(*) AS lines,
       count(DISTINCT messageid) AS events,
       count(*) - count(DISTINCT messageid) AS extra_copies
FROM telemetry_events
WHERE datehour BETWEEN '2026/11/01/00' AND '2026/11/30/23'
GROUP BY 1
ORDER BY 1;
