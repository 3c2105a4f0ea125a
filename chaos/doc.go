// Package chaos is the pipeline's end-to-end chaos suite. It has no code of
// its own outside its tests, which carry the integration build tag: they
// build the gateway and worker binaries, start a private emulator stack on
// disk, three workers, a gateway and in-test Segment and GA4 servers, send a
// known set of events while killing and restarting processes and failing
// the SaaS sinks, then drain and check every sink against the stream.
//
//	go test -tags integration -run Chaos -v ./chaos/                   # short form (~1 min of load)
//	CHAOS_DURATION=5m go test -tags integration -run Chaos -v -timeout 60m ./chaos/  # long form
//
// See chaos_test.go for every knob (CHAOS_* variables).
package chaos
