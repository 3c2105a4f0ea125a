-- telemetry_errors: the Athena table over the S3 sink's error output, at
--
--   s3://BUCKET/errors/<reason>/YYYY/MM/DD/HH/<stream>-<shard>-<firstSeq>-<lastSeq>.gz
--
-- one gzip NDJSON line per event that could not go into telemetry_events,
-- after Firehose's error records:
--
--   invalid-event, event-too-large  events the gateway refused inside a
--                                   request it answered 200 (Segment's
--                                   semantics); rawData is the envelope:
--                                   {"_rejected":{"reason","error","index"},
--                                   "source","receivedAt","rawEvent"}
--   invalid-json, too-large         events the sink could not store as a
--                                   table line; rawData is the event
--
-- rawData is base64: decode it with from_utf8(from_base64(rawdata)) and read
-- the event with json_extract. Replace BUCKET with the sink's bucket and
-- errors/ with $S3_ERROR_PREFIX if it is not the default; athena.ErrorsDDL
-- does both. Partitions are projected: filter on reason and datehour.
CREATE EXTERNAL TABLE IF NOT EXISTS telemetry_errors (
  errorcode        string,
  errormessage     string,
  arrivaltimestamp bigint,
  stream           string,
  shardid          string,
  sequencenumber   string,
  eventindex       int,
  rawdata          string
)
PARTITIONED BY (reason string, datehour string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES (
  'case.insensitive' = 'true',
  'ignore.malformed.json' = 'true'
)
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/errors/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.reason.type' = 'enum',
  'projection.reason.values' = 'invalid-event,event-too-large,invalid-json,too-large',
  'projection.datehour.type' = 'date',
  'projection.datehour.format' = 'yyyy/MM/dd/HH',
  'projection.datehour.range' = '2024/01/01/00,NOW',
  'projection.datehour.interval' = '1',
  'projection.datehour.interval.unit' = 'HOURS',
  'storage.location.template' = 's3://BUCKET/errors/${reason}/${datehour}/'
);
