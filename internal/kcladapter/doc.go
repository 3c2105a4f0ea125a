// Package kcladapter fits the KCL library (github.com/vmware/vmware-go-kcl-v2
// v1.0.0) into the worker's observability: its Logger onto zap, the global
// logrus logger its polling consumer uses onto zap, and its
// MonitoringService onto the worker's own Prometheus registry.
//
// The library's bundled adapters are not used: its zap adapter exits the
// process on Panicf and Fatalf and reports the adapter as the caller, and
// its Prometheus service registers on the global default registry, serves
// its own HTTP listener and records milliseconds in buckets made for
// seconds.
package kcladapter
