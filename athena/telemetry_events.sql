-- telemetry_events: the Athena table over the objects of the S3 sink
-- (sink/s3). Each object is gzip NDJSON, one normalised event per line, at
--
--   s3://BUCKET/events/YYYY/MM/DD/HH/<stream>-<shard>-<firstSeq>-<lastSeq>.gz
--
-- with the hour in UTC: the Kinesis arrival hour of the oldest record in the
-- object, as Firehose does. An object never spans two hours.
--
-- Replace BUCKET with the sink's bucket ($S3_BUCKET), and events/ with its
-- prefix if $S3_PREFIX is not the default; athena.DDL(bucket, prefix) does
-- both. The error output (errors/<reason>/...) lies outside LOCATION and is
-- not part of the table.
--
-- Partitions are projected, never registered: every hour from the range's
-- start to NOW is a partition, and no MSCK REPAIR TABLE or crawler is needed.
-- Always filter on datehour ('2026/11/27/13' format), or a query reads every
-- hour since the start.
--
-- Delivery is at least once: an event can be in the table more than once.
-- Deduplicate on messageid (athena/queries.sql).
--
-- Columns are the envelope the gateway writes (event/event.go). Timestamps
-- are ISO-8601 strings in UTC with milliseconds; read them with
-- from_iso8601_timestamp(). Column and field names are lower case: the SerDe
-- matches JSON keys case-insensitively (messageId -> messageid).
--
-- properties is a struct, not a map<string,string>: the questions asked of
-- this table (build versions, node versions, frameworks, plugins, durations)
-- are about Netlify Build's fields, and a struct gives
-- them their types (steps and duration are numbers) and lets plugins be
-- UNNESTed. Properties of other clients that are not declared here are not
-- visible; add fields as needed: adding a field never breaks old objects.
--
-- properties.plugins is array<string>, each element the plugin's JSON text
-- (the SerDe turns an object read as a string into its JSON text), not an
-- array of structs, because the legacy telemetry-service clients
-- (still accepted on /collect) send plugins as an array
-- of names: with array<struct<...>> every query touching properties would
-- fail on an hour holding one legacy event ("Primitive can not be coerced to
-- a ROW"). Read them with json_extract_scalar(p, '$.version'), and
-- coalesce(json_extract_scalar(p, '$.name'), p) for the name of both shapes.
CREATE EXTERNAL TABLE IF NOT EXISTS telemetry_events (
  messageid         string,
  type              string,
  event             string,
  name              string,
  userid            string,
  anonymousid       string,
  `timestamp`       string,
  originaltimestamp string,
  sentat            string,
  receivedat        string,
  source            string,
  properties        struct<
                      deployid:string,
                      buildid:string,
                      status:string,
                      steps:int,
                      buildversion:string,
                      nodeversion:string,
                      osplatform:string,
                      osname:string,
                      framework:string,
                      siteid:string,
                      plugincount:int,
                      duration:bigint,
                      plugins:array<string>,
                      isci:boolean,
                      isnetlifyci:boolean>,
  context           struct<
                      ip:string,
                      useragent:string,
                      locale:string,
                      timezone:string,
                      library:struct<name:string, version:string>,
                      page:struct<path:string, referrer:string, search:string, title:string, url:string>>
)
PARTITIONED BY (datehour string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES (
  'case.insensitive' = 'true',
  'ignore.malformed.json' = 'true'
)
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.datehour.type' = 'date',
  'projection.datehour.format' = 'yyyy/MM/dd/HH',
  'projection.datehour.range' = '2024/01/01/00,NOW',
  'projection.datehour.interval' = '1',
  'projection.datehour.interval.unit' = 'HOURS',
  'storage.location.template' = 's3://BUCKET/events/${datehour}/'
);
