//go:build integration

package chaos

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// switchableServer is an HTTP server on a fixed loopback address that can
// be taken down (the listener and every connection closed, so clients get
// connection refused) and brought back on the same address.
type switchableServer struct {
	addr    string
	handler http.Handler

	mu  sync.Mutex
	srv *http.Server // nil while down
}

func newSwitchableServer(h http.Handler) (*switchableServer, error) {
	ln, err := stableListen()
	if err != nil {
		return nil, err
	}
	s := &switchableServer{addr: ln.Addr().String(), handler: h}
	s.serve(ln)
	return s, nil
}

func (s *switchableServer) URL() string { return "http://" + s.addr }

func (s *switchableServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every open connection: new requests get
// connection refused, requests in flight a reset.
func (s *switchableServer) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

// up listens on the same address again. The port is below the ephemeral
// range (see stableListen), so nothing takes it in between; a failure is
// retried for a while all the same.
func (s *switchableServer) up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(ln)
			return nil
		}
	}
	return fmt.Errorf("listen again on %s: %w", s.addr, err)
}

func (s *switchableServer) close() { s.down() }

// idCounter counts deliveries per ID.
type idCounter struct {
	mu  sync.Mutex
	got map[string]int
	n   int // deliveries
}

func (c *idCounter) add(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]int{}
	}
	for _, id := range ids {
		c.got[id]++
		c.n++
	}
}

func (c *idCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.got)
}

// readBody reads a request body, gunzipping it when the client said so.
func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		rd = zr
	}
	return io.ReadAll(io.LimitReader(rd, 8<<20))
}

// segmentServer stands in for Segment's /v1/batch: Basic auth with the
// write key as user, a JSON body {"batch":[{messageId,...}]}. It records
// every messageId it accepted.
type segmentServer struct {
	*switchableServer
	key      string
	ids      idCounter
	requests atomic.Int64
	refusals
}

// refusals counts the requests a stand-in server refused for their shape
// or credentials: each is a pipeline bug, since the sinks must send what
// the real API accepts.
type refusals struct {
	rejected atomic.Int64
	lastBad  atomic.Value // string
}

// bad refuses a request, counting it.
func (f *refusals) bad(w http.ResponseWriter, code int, format string, args ...any) {
	f.rejected.Add(1)
	msg := fmt.Sprintf(format, args...)
	f.lastBad.Store(msg)
	http.Error(w, msg, code)
}

func newSegmentServer(key string) (*segmentServer, error) {
	s := &segmentServer{key: key}
	var err error
	s.switchableServer, err = newSwitchableServer(http.HandlerFunc(s.serveHTTP))
	return s, err
}

func (s *segmentServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/batch" {
		s.bad(w, http.StatusNotFound, "%s %s: not found", r.Method, r.URL.Path)
		return
	}
	if r.Header.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(s.key+":")) {
		s.bad(w, http.StatusUnauthorized, "bad or missing write key")
		return
	}
	body, err := readBody(r)
	if err != nil {
		// A connection cut mid-body: not the client's fault.
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	var req struct {
		Batch []struct {
			MessageID string `json:"messageId"`
			Type      string `json:"type"`
			Event     string `json:"event"`
			UserID    string `json:"userId"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.bad(w, http.StatusBadRequest, "bad JSON: %v", err)
		return
	}
	ids := make([]string, 0, len(req.Batch))
	for i, e := range req.Batch {
		if e.MessageID == "" || e.Type != "track" || e.Event == "" || e.UserID == "" {
			s.bad(w, http.StatusBadRequest, "batch item %d: missing messageId, type, event or userId", i)
			return
		}
		ids = append(ids, e.MessageID)
	}
	s.ids.add(ids)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"success":true}`))
}

// ga4Server stands in for the Measurement Protocol's /mp/collect:
// measurement_id and api_secret in the query, a JSON body {client_id,
// events:[{name, params}]}. It records params.eid of every event it
// accepted, and can be switched to answer 500.
type ga4Server struct {
	*switchableServer
	measurementID, secret string
	fail500               atomic.Bool
	ids                   idCounter
	requests              atomic.Int64
	answered500           atomic.Int64
	refusals
}

func newGA4Server(measurementID, secret string) (*ga4Server, error) {
	s := &ga4Server{measurementID: measurementID, secret: secret}
	var err error
	s.switchableServer, err = newSwitchableServer(http.HandlerFunc(s.serveHTTP))
	return s, err
}

func (s *ga4Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Method != http.MethodPost || r.URL.Path != "/mp/collect" {
		s.bad(w, http.StatusNotFound, "%s %s: not found", r.Method, r.URL.Path)
		return
	}
	body, err := readBody(r)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if s.fail500.Load() {
		s.answered500.Add(1)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	if q.Get("measurement_id") != s.measurementID || q.Get("api_secret") != s.secret {
		// GA4 answers 2xx and drops the data; a 403 makes it visible.
		s.bad(w, http.StatusForbidden, "unknown measurement_id or api_secret")
		return
	}
	var req struct {
		ClientID string `json:"client_id"`
		Events   []struct {
			Name   string         `json:"name"`
			Params map[string]any `json:"params"`
		} `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		s.bad(w, http.StatusBadRequest, "bad JSON: %v", err)
		return
	}
	if req.ClientID == "" || len(req.Events) == 0 || len(req.Events) > 25 {
		s.bad(w, http.StatusBadRequest, "client_id %q, %d events", req.ClientID, len(req.Events))
		return
	}
	ids := make([]string, 0, len(req.Events))
	for i, e := range req.Events {
		eid, _ := e.Params["eid"].(string)
		if e.Name != "build_ci_build_process_completed" || eid == "" {
			s.bad(w, http.StatusBadRequest, "event %d: name %q, params.eid %q", i, e.Name, eid)
			return
		}
		ids = append(ids, eid)
	}
	s.ids.add(ids)
	w.WriteHeader(http.StatusNoContent)
}
