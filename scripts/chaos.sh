#!/usr/bin/env bash
# The long form of the chaos suite (issue 7): gateway, three workers,
# on-disk emulators and in-test Segment and GA4 servers as separate
# processes, under load for CHAOS_DURATION (default 5m, one disruption
# cycle per minute) while workers are SIGKILLed, SIGTERMed and restarted,
# Segment goes down, GA4 answers 500 and the gateway restarts; then it
# drains, replays the dead letters and checks every sink against the
# stream, and prints a one-screen report. `make test` runs the short form.
#
# Knobs (see chaos/chaos_test.go): CHAOS_DURATION, CHAOS_RATE (events/s),
# CHAOS_SHARDS, CHAOS_LOG_DIR (keep the processes' logs), CHAOS_REPORT
# (also write the report to a file). Extra arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_DURATION="${CHAOS_DURATION:-5m}"
exec go test -count=1 -tags integration -run Chaos -timeout 60m -v "$@" ./chaos/
