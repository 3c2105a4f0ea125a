// Package athena ships the Athena table over the S3 sink's objects and the
// queries that read it: telemetry_events.sql (CREATE EXTERNAL TABLE with
// partition projection over the sink's hour prefixes) and queries.sql
// (deduplication on messageId, build-version adoption, plugin versions).
// The files are the source of truth; this package embeds them so that
// tools and tests use the same text.
package athena

import (
	"cmp"
	_ "embed"
	"strings"
)

//go:embed telemetry_events.sql
var tableDDL string

//go:embed queries.sql
var queries string

//go:embed telemetry_errors.sql
var errorsDDL string

// ErrorPrefix is the sink's default error prefix (sink/s3
// DefaultErrorPrefix), the placeholder of telemetry_errors.sql.
const ErrorPrefix = "errors/"

// ErrorsDDL returns the CREATE EXTERNAL TABLE statement of
// telemetry_errors, the table over the S3 sink's error output in bucket
// under errorPrefix (its Config.ErrorPrefix; ErrorPrefix when empty).
func ErrorsDDL(bucket, errorPrefix string) string {
	errorPrefix = cmp.Or(errorPrefix, ErrorPrefix)
	if !strings.HasSuffix(errorPrefix, "/") {
		errorPrefix += "/"
	}
	return strings.ReplaceAll(errorsDDL, "s3://"+Bucket+"/"+ErrorPrefix, "s3://"+bucket+"/"+errorPrefix)
}

// Placeholders of telemetry_events.sql.
const (
	// Bucket stands for the sink's bucket.
	Bucket = "BUCKET"
	// Prefix is the sink's default key prefix (sink/s3 DefaultPrefix).
	Prefix = "events/"
)

// placeholderURL starts the LOCATION and the storage.location.template.
const placeholderURL = "s3://" + Bucket + "/" + Prefix

// DDL returns the CREATE EXTERNAL TABLE statement for the objects the S3
// sink writes to bucket under prefix (its Config.Prefix; Prefix when
// empty). With Bucket and Prefix it is the file's text.
func DDL(bucket, prefix string) string {
	prefix = cmp.Or(prefix, Prefix)
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return strings.ReplaceAll(tableDDL, placeholderURL, "s3://"+bucket+"/"+prefix)
}

// Queries returns queries.sql: each query named in a "-- name:" comment.
func Queries() string { return queries }
