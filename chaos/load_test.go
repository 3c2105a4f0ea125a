//go:build integration

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/buildtelemetry/pipeline/internal/corpus"
)

// sentEvent is one event the load generator sent, and what the gateway
// answered for the request that carried it.
type sentEvent struct {
	buildVersion string
	acked        bool
	outcome      string // "200", "503", "refused", ...
}

// loadGen sends Netlify-Build-shaped events to the gateway at a steady
// rate, as single /v1/track requests and /v1/batch requests of 2 to 25
// events, each event with a unique messageId (equal to properties.eid). A
// failed request is never retried: its events are recorded as
// unacknowledged, so that every copy of an event in the stream comes from
// the pipeline, not from the client.
type loadGen struct {
	url     string
	key     string
	rate    float64 // events per second
	clients int
	prefix  string

	mu       sync.Mutex
	events   map[string]*sentEvent
	outcomes map[string]int // requests by outcome
	requests int
	batches  int
}

func newLoadGen(url, key, prefix string, rate float64, clients int) *loadGen {
	return &loadGen{url: url, key: key, rate: rate, clients: clients, prefix: prefix,
		events: map[string]*sentEvent{}, outcomes: map[string]int{}}
}

type loadRequest struct {
	path string
	body []byte
	ids  []string
}

// run sends until ctx ends, then waits for the requests in flight.
func (g *loadGen) run(ctx context.Context, seed uint64) {
	reqs := make(chan loadRequest, g.clients)
	var wg sync.WaitGroup
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: g.clients,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	// Longer than the gateway's ack timeout (8 s), so a slow request gets
	// the gateway's answer rather than a client timeout.
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for range g.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range reqs {
				g.send(client, r)
			}
		}()
	}

	gen := corpus.NewNetlify(seed)
	rng := rand.New(rand.NewPCG(seed, seed+1))
	// Builds of a few sites: the GA4 sink groups a batch's events by
	// client (derived from userId and siteId), as with real traffic.
	sites := make([]string, 24)
	for i := range sites {
		sites[i] = fmt.Sprintf("5f1c0a7e-0000-4000-8000-%012d", i)
	}
	seq := 0
	next := time.Now()
	for ctx.Err() == nil {
		n := 1
		if rng.IntN(10) >= 6 {
			n = 2 + rng.IntN(24)
		}
		next = next.Add(time.Duration(float64(n) / g.rate * float64(time.Second)))
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else if d < -2*time.Second {
			next = time.Now() // fell behind (a stalled gateway): do not burst
		}
		if ctx.Err() != nil {
			break
		}
		r := loadRequest{}
		items := make([][]byte, n)
		for i := range items {
			seq++
			id := fmt.Sprintf("%s-%07d", g.prefix, seq)
			ev := gen.Next()
			ev.Properties.SiteID = sites[rng.IntN(len(sites))]
			ev.Timestamp = time.Now().UnixMilli()
			items[i] = eventJSON(id, ev, n > 1)
			r.ids = append(r.ids, id)
			g.mu.Lock()
			g.events[id] = &sentEvent{buildVersion: ev.Properties.BuildVersion, outcome: "not sent"}
			g.mu.Unlock()
		}
		if n == 1 {
			r.path, r.body = "/v1/track", items[0]
		} else {
			r.path = "/v1/batch"
			r.body = append(append([]byte(`{"batch":[`), bytes.Join(items, []byte(","))...), "]}"...)
		}
		select {
		case reqs <- r:
		case <-ctx.Done():
			g.mu.Lock() // never sent: not part of the run
			for _, id := range r.ids {
				delete(g.events, id)
			}
			g.mu.Unlock()
		}
	}
	close(reqs)
	wg.Wait()
}

// eventJSON is a Netlify Build event with a messageId, and the same ID as
// properties.eid (first, so that GA4's 25-parameter cut keeps it), which
// is how the GA4 server tells events apart.
func eventJSON(id string, tr corpus.Track, inBatch bool) []byte {
	props, _ := json.Marshal(tr.Properties)
	props = append([]byte(fmt.Sprintf(`{"eid":%q,`, id)), props[1:]...)
	typ := ""
	if inBatch {
		typ = `"type":"track",`
	}
	return []byte(fmt.Sprintf(`{%s"messageId":%q,"userId":%q,"event":%q,"timestamp":%d,"properties":%s}`,
		typ, id, tr.UserID, tr.Event, tr.Timestamp, props))
}

func (g *loadGen) send(client *http.Client, r loadRequest) {
	req, err := http.NewRequest(http.MethodPost, g.url+r.path, bytes.NewReader(r.body))
	if err != nil {
		g.record(r, "bad request")
		return
	}
	req.SetBasicAuth(g.key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		g.record(r, classify(err))
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	g.record(r, fmt.Sprint(resp.StatusCode))
}

func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "error"
}

func (g *loadGen) record(r loadRequest, outcome string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests++
	if len(r.ids) > 1 {
		g.batches++
	}
	g.outcomes[outcome]++
	for _, id := range r.ids {
		e := g.events[id]
		e.outcome = outcome
		e.acked = outcome == "200"
	}
}

// snapshot returns the events sent, by messageId. Call after run returned.
func (g *loadGen) snapshot() map[string]sentEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]sentEvent, len(g.events))
	for id, e := range g.events {
		out[id] = *e
	}
	return out
}

// outcomeSummary is "200: 812, refused: 12, 503: 3" (requests).
func (g *loadGen) outcomeSummary() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := make([]string, 0, len(g.outcomes))
	for k := range g.outcomes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return g.outcomes[keys[i]] > g.outcomes[keys[j]] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, g.outcomes[k])
	}
	return strings.Join(parts, ", ")
}
