// Package devstack starts and stops the local AWS emulators (kinesalite for Kinesis,
// dynalite for DynamoDB, s3rver for S3) on free loopback ports, and builds AWS SDK
// clients that can only ever talk to loopback addresses.
//
// It is used by `make run`, by `make test` (through cmd/devstack) and by the
// integration tests of the packages that own streams, tables and buckets.
//
// The emulators run in one node process (node/emulators.js). Its npm dependencies are
// pinned in node/package-lock.json and installed with
//
//	npm ci --prefix internal/devstack/node
//
// Tests that need the emulators carry the `integration` build tag and call ForTest.
package devstack
