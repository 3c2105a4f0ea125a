package main

import (
	"fmt"
	"io"
	"strings"
)

// reference pairs a figure with what it is measured against in the same
// run, and with the aim when there is one.
type reference struct {
	ref, aim string
}

var references = map[string]reference{
	"gateway_events_per_s_single":       {"bare_handler_events_per_s_single", ""},
	"gateway_vs_bare_ratio":             {"", "≥ 0.5"},
	"kinesis_bytes_per_event":           {"client_event_bytes", "≤ 200"},
	"processor_events_per_s_per_core":   {"json_decode_events_per_s_per_core", "≥ 100,000"},
	"cold_lease_all_s":                  {"", "≤ 20"},
	"failover_sigkill_s":                {"", "≤ 15"},
	"failover_sigterm_s":                {"", "≤ 5"},
	"gateway_kinesalite_events_per_s":   {"raw_putrecords_events_per_s", ""},
	"dynamodb_writes_per_1000_events":   {"", "≤ 50"},
	"dynamodb_wcu_per_1000_events":      {"", "≤ 10 (goal ≤ 5)"},
	"gateway_batch100_p99_ms":           {"", ""},
	"kinesis_bytes_per_event_batch100":  {"client_event_bytes", "≤ 200"},
	"worker_peak_rss_mb":                {"", "≤ 300"},
	"worker_backlog_peak_rss_mb":        {"", "≤ 256 (goal ≤ 128)"},
	"rebalance_join_s":                  {"", "seconds"},
	"rebalance_rolling_s":               {"", "seconds"},
	"handoff_duplicate_events":          {"", "0"},
	"gateway_throttled_events_per_s":    {"stream_write_capacity_events_per_s", "≥ 0.9 of capacity"},
	"worker_drain_events_per_s_limited": {"stream_read_capacity_events_per_s", "close to capacity"},
	"gateway_429_share":                 {"", "> 0 over capacity"},
	"gateway_offered_events_per_s":      {"stream_write_capacity_events_per_s", "2× capacity"},
	"gateway_503_share":                 {"", "0"},
}

// writeReport writes every figure as a markdown table, each next to its
// reference from the same run and the ratio of the two.
func writeReport(w io.Writer, figs []figure) {
	byName := map[string]figure{}
	for _, f := range figs {
		byName[f.name] = f
	}
	fmt.Fprintln(w, "| figure | value | reference (same run) | ratio | aim |")
	fmt.Fprintln(w, "|---|---:|---|---:|---|")
	for _, f := range figs {
		r := references[f.name]
		refText, ratio := "", ""
		if ref, ok := byName[r.ref]; ok && ref.value != 0 {
			refText = fmt.Sprintf("%s = %s", ref.name, valueText(ref))
			ratio = fmt.Sprintf("%.2f", f.value/ref.value)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", f.name, valueText(f), refText, ratio, r.aim)
	}
}

func valueText(f figure) string {
	return strings.TrimPrefix(f.String(), f.name+": ")
}
