package limits

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"
)

// upstream is what both proxies share: the emulator they stand before,
// the limits, and the counters.
type upstream struct {
	base   string
	cfg    Config
	client *http.Client
	now    func() time.Time
	stats  *counter
}

func newUpstream(base string, cfg Config, stats *counter) upstream {
	return upstream{base: strings.TrimRight(base, "/"), cfg: cfg, client: upstreamClient(), now: time.Now, stats: stats}
}

// forward sends body to the emulator with r's headers (and target as
// X-Amz-Target, unless empty) and returns the answer, read whole.
func (u *upstream) forward(r *http.Request, target string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.base+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range r.Header {
		if k == "Content-Length" {
			continue
		}
		req.Header[k] = vs
	}
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	// The emulators do not check signatures: a body changed here still
	// passes.
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// call forwards body, or answers 502 and reports false when the emulator
// cannot be reached.
func (u *upstream) call(w http.ResponseWriter, r *http.Request, body []byte) (*http.Response, []byte, bool) {
	resp, b, err := u.forward(r, "", body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil, nil, false
	}
	return resp, b, true
}

// pass forwards the request untouched.
func (u *upstream) pass(w http.ResponseWriter, r *http.Request, body []byte) {
	if resp, b, ok := u.call(w, r, body); ok {
		reply(w, resp, b)
	}
}
