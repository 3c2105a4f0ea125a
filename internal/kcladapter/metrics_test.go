package kcladapter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "worker")
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	return m, reg
}

func TestMetricsCounters(t *testing.T) {
	m, reg := newMetrics(t)
	for _, f := range []func() error{func() error { return m.Init("app", "builds", "w1") }, m.Start} {
		if err := f(); err != nil {
			t.Errorf("Init/Start = %v, want nil", err)
		}
	}
	m.IncrRecordsProcessed("shardId-000000000000", 10)
	m.IncrRecordsProcessed("shardId-000000000000", 5)
	m.IncrRecordsProcessed("shardId-000000000001", 0)
	m.IncrBytesProcessed("shardId-000000000000", 4096)
	m.LeaseRenewed("shardId-000000000000")
	m.LeaseRenewed("shardId-000000000000")
	m.MillisBehindLatest("shardId-000000000000", 1500)
	m.MillisBehindLatest("shardId-000000000001", 0)
	m.DeleteMetricMillisBehindLatest("shardId-000000000001")
	m.Shutdown()

	for _, c := range []struct {
		name, shard string
		want        float64
		present     bool
	}{
		{"worker_kcl_records_processed_total", "shardId-000000000000", 15, true},
		{"worker_kcl_records_processed_total", "shardId-000000000001", 0, true},
		{"worker_kcl_bytes_processed_total", "shardId-000000000000", 4096, true},
		{"worker_kcl_lease_renewals_total", "shardId-000000000000", 2, true},
		{"worker_kcl_millis_behind_latest", "shardId-000000000000", 1500, true},
		{"worker_kcl_millis_behind_latest", "shardId-000000000001", 0, false}, // deleted
		{"worker_kcl_leases_held", "", 0, true},
	} {
		got, ok := value(t, reg, c.name, c.shard)
		if ok != c.present || got != c.want {
			t.Errorf("%s{shard=%q} = %v (present %v), want %v (present %v)", c.name, c.shard, got, ok, c.want, c.present)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// value returns the value of a counter or gauge series; shard "" selects
// the series without labels.
func value(t *testing.T, reg *prometheus.Registry, name, shard string) (float64, bool) {
	t.Helper()
	mf := family(t, reg, name)
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "shard" {
				got = l.GetValue()
			}
		}
		if got != shard {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// family returns the gathered metric family of that name, or nil.
func family(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

func TestMetricsLeasesHeld(t *testing.T) {
	for _, c := range []struct {
		name   string
		events func(m *Metrics)
		want   float64
	}{
		{"None", func(*Metrics) {}, 0},
		{"Two", func(m *Metrics) { m.LeaseGained("a"); m.LeaseGained("b") }, 2},
		{"GainedTwice", func(m *Metrics) { m.LeaseGained("a"); m.LeaseGained("a") }, 1},
		{"GainedLost", func(m *Metrics) { m.LeaseGained("a"); m.LeaseGained("b"); m.LeaseLost("a") }, 1},
		{"LostTwice", func(m *Metrics) { m.LeaseGained("a"); m.LeaseLost("a"); m.LeaseLost("a") }, 0},
		{"LostUnknown", func(m *Metrics) { m.LeaseLost("x"); m.LeaseGained("a") }, 1},
		{"Regained", func(m *Metrics) { m.LeaseGained("a"); m.LeaseLost("a"); m.LeaseGained("a") }, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, _ := newMetrics(t)
			c.events(m)
			if got := leases(t, m); got != c.want {
				t.Errorf("leases_held = %v, want %v", got, c.want)
			}
		})
	}
}

// TestMetricsDurations checks that the library's milliseconds are recorded
// as seconds, in buckets that separate them.
func TestMetricsDurations(t *testing.T) {
	m, reg := newMetrics(t)
	m.RecordGetRecordsTime("shardId-000000000000", 0) // under a millisecond, truncated by the library
	m.RecordGetRecordsTime("shardId-000000000000", 20)
	m.RecordGetRecordsTime("shardId-000000000001", 45000)
	m.RecordProcessRecordsTime("shardId-000000000000", 250)

	for _, c := range []struct {
		name    string
		count   uint64
		sum     float64
		buckets map[float64]uint64 // upper bound -> cumulative count
	}{
		{"worker_kcl_get_records_duration_seconds", 3, 45.02, map[float64]uint64{0.001: 1, 0.01: 1, 0.025: 2, 30: 2, 60: 3}},
		{"worker_kcl_process_records_duration_seconds", 1, 0.25, map[float64]uint64{0.1: 0, 0.25: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := histogram(t, reg, c.name)
			if h.GetSampleCount() != c.count || h.GetSampleSum() < c.sum-1e-9 || h.GetSampleSum() > c.sum+1e-9 {
				t.Errorf("count %d sum %v, want %d and %v", h.GetSampleCount(), h.GetSampleSum(), c.count, c.sum)
			}
			got := map[float64]uint64{}
			for _, b := range h.GetBucket() {
				got[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			for le, want := range c.buckets {
				if n, ok := got[le]; !ok || n != want {
					t.Errorf("bucket le=%v: %d (present %v), want %d", le, n, ok, want)
				}
			}
			if first, last := h.GetBucket()[0].GetUpperBound(), h.GetBucket()[len(h.GetBucket())-1].GetUpperBound(); first != 0.001 || last != 60 {
				t.Errorf("buckets span %v..%v s, want 0.001..60", first, last)
			}
		})
	}
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) *dto.Histogram {
	t.Helper()
	mf := family(t, reg, name)
	if mf == nil {
		t.Fatalf("no metric %s", name)
	}
	return mf.GetMetric()[0].GetHistogram()
}

func TestNewMetricsErrors(t *testing.T) {
	t.Run("InvalidNamespace", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := NewMetrics(reg, "build-telemetry"); err == nil {
			t.Fatal("NewMetrics(\"build-telemetry\") succeeded, want an error")
		}
		if mfs, _ := reg.Gather(); len(mfs) != 0 {
			t.Errorf("%d metrics left registered, want none", len(mfs))
		}
	})
	t.Run("Twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := NewMetrics(reg, "worker"); err != nil {
			t.Fatal(err)
		}
		if _, err := NewMetrics(reg, "worker"); err == nil {
			t.Fatal("second NewMetrics on the same registry succeeded, want an error")
		}
		// A different namespace on the same registry is fine.
		if _, err := NewMetrics(reg, "other"); err != nil {
			t.Errorf("NewMetrics(other): %v", err)
		}
	})
	t.Run("NilRegisterer", func(t *testing.T) {
		if _, err := NewMetrics(nil, "worker"); err == nil {
			t.Error("NewMetrics(nil) succeeded, want an error")
		}
	})
}

// TestMetricsConcurrent runs every method from several goroutines, for the
// race detector.
func TestMetricsConcurrent(t *testing.T) {
	m, _ := newMetrics(t)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			shard := string(rune('a' + i))
			for range 100 {
				m.LeaseGained(shard)
				m.IncrRecordsProcessed(shard, 1)
				m.IncrBytesProcessed(shard, 10)
				m.MillisBehindLatest(shard, 5)
				m.LeaseRenewed(shard)
				m.RecordGetRecordsTime(shard, 3)
				m.RecordProcessRecordsTime(shard, 4)
			}
		}()
	}
	for range 8 {
		<-done
	}
	if got := leases(t, m); got != 8 {
		t.Errorf("leases_held = %v, want 8", got)
	}
}

// leases returns the leases_held gauge's value.
func leases(t *testing.T, m *Metrics) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.leases.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}
