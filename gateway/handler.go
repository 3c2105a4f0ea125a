// Package gateway is the HTTP front of the pipeline: it speaks Segment's
// HTTP Tracking API and the legacy telemetry-service paths, normalises
// events (package event) and acknowledges a request only once the Producer
// has every one of its events in Kinesis.
package gateway

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
)

// Defaults of Config.
const (
	// DefaultMaxEventBytes is Segment's per-event limit.
	DefaultMaxEventBytes = 32 << 10
	// DefaultMaxRequestBytes is Segment's per-request limit ("500 KB").
	DefaultMaxRequestBytes = 500 << 10
	// DefaultAckTimeout bounds how long a request waits for Kinesis. It is
	// shorter than the Segment SDKs' 10 s request timeout, so clients get
	// a 503 they can retry rather than a timeout.
	DefaultAckTimeout = 8 * time.Second
	// DefaultRetryAfter is the Retry-After sent with 429 and 503.
	DefaultRetryAfter = time.Second
	// DefaultBodyTimeout bounds the reading of one request body, so that
	// a client sending its body a byte at a time cannot hold a connection
	// (a goroutine and up to MaxRequestBytes) for long: 500 KB in 30 s is
	// 17 KB/s, slower than any build machine's link.
	DefaultBodyTimeout = 30 * time.Second
)

// EventWriter writes messages to the stream; Write returns nil only once
// all of them are durable. The Producer implements it.
type EventWriter interface {
	Write(ctx context.Context, msgs []Message) error
}

// Config configures a Handler. Zero values mean the documented defaults.
type Config struct {
	// WriteKeys maps each accepted write key to its source name.
	WriteKeys map[string]string
	// LegacySource, when set, is the source of /collect and /identify
	// requests that carry no write key: the telemetry-service clients
	// never sent one. Empty means those paths need a write key too.
	LegacySource string
	// MaxEventBytes bounds one event's JSON (DefaultMaxEventBytes).
	MaxEventBytes int
	// MaxRequestBytes bounds a request body, after gzip decompression
	// (DefaultMaxRequestBytes).
	MaxRequestBytes int
	// AckTimeout bounds the wait for Kinesis (DefaultAckTimeout).
	AckTimeout time.Duration
	// RetryAfter is sent with 429 and 503 answers (DefaultRetryAfter).
	RetryAfter time.Duration
	// BodyTimeout bounds the reading of a request body, from the end of
	// its headers (DefaultBodyTimeout); the connection is cut after it.
	BodyTimeout time.Duration
	// CORSOrigins are the origins browsers may post from; empty or "*"
	// allows any (the write key, not the origin, authorises a request).
	// Credentials are never allowed: nothing here uses cookies.
	CORSOrigins []string
	// TrustedProxies is how many proxies in front of the gateway append
	// to X-Forwarded-For (a load balancer: 1): the client's address is the
	// entry that many from the end. 0 uses the connection's address.
	TrustedProxies int
	// TruncateIP keeps only the network of the client's address in
	// context.ip (IPv4 /24, IPv6 /48), for privacy.
	TruncateIP bool
	// KeyRate, when positive, limits each write key's source to that many
	// events a second on average, with bursts of KeyBurst events (at
	// least the largest request): a public browser key cannot take the
	// shared buffer from everyone. Over it, the request gets 429.
	KeyRate  float64
	KeyBurst int
	// Ready reports whether the gateway can take traffic (/readyz); nil
	// means always ready. Its error is logged, never sent.
	Ready func(context.Context) error
	// Registerer receives the handler's metrics; nil means unregistered.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler serves the gateway's HTTP API. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	keys    atomic.Pointer[WriteKeys]
	limits  *keyLimits
	origins map[string]bool // nil: any
	ready   atomic.Bool     // the last readiness answer, to log changes
	w       EventWriter
	log     *zap.Logger
	norm    event.Normalizer
	mux     *http.ServeMux
	metrics *handlerMetrics
	bufs    sync.Pool
}

// route describes one ingest path.
type route struct {
	name  string // metric label
	shape event.Shape
	typ   event.Type
}

// NewHandler returns the gateway's HTTP handler writing to w.
func NewHandler(w EventWriter, cfg Config, log *zap.Logger) (*Handler, error) {
	if cfg.MaxEventBytes < 0 || cfg.MaxRequestBytes < 0 || cfg.TrustedProxies < 0 || cfg.KeyRate < 0 || cfg.KeyBurst < 0 {
		return nil, fmt.Errorf("configure handler: MaxEventBytes %d, MaxRequestBytes %d, TrustedProxies %d, KeyRate %g and KeyBurst %d must not be negative",
			cfg.MaxEventBytes, cfg.MaxRequestBytes, cfg.TrustedProxies, cfg.KeyRate, cfg.KeyBurst)
	}
	if cfg.AckTimeout < 0 || cfg.RetryAfter < 0 || cfg.BodyTimeout < 0 {
		return nil, fmt.Errorf("configure handler: AckTimeout %v, RetryAfter %v and BodyTimeout %v must not be negative", cfg.AckTimeout, cfg.RetryAfter, cfg.BodyTimeout)
	}
	cfg.MaxEventBytes = cmp.Or(cfg.MaxEventBytes, DefaultMaxEventBytes)
	cfg.MaxRequestBytes = cmp.Or(cfg.MaxRequestBytes, DefaultMaxRequestBytes)
	cfg.AckTimeout = cmp.Or(cfg.AckTimeout, DefaultAckTimeout)
	cfg.RetryAfter = cmp.Or(cfg.RetryAfter, DefaultRetryAfter)
	cfg.BodyTimeout = cmp.Or(cfg.BodyTimeout, DefaultBodyTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, w: w, log: log, mux: http.NewServeMux(), metrics: newHandlerMetrics(cfg.Registerer)}
	for _, reason := range []string{event.RejectedInvalid, event.RejectedTooLarge} {
		h.metrics.rejectedEvents.WithLabelValues(reason)
	}
	if err := h.SetWriteKeys(cfg.WriteKeys); err != nil {
		return nil, err
	}
	h.ready.Store(true)
	if cfg.KeyRate > 0 {
		h.limits = newKeyLimits(cfg.KeyRate, max(cfg.KeyBurst, 1))
	}
	for _, o := range cfg.CORSOrigins {
		if o = strings.TrimSpace(o); o == "*" {
			h.origins = nil
			break
		} else if o != "" {
			if h.origins == nil {
				h.origins = map[string]bool{}
			}
			h.origins[strings.TrimSuffix(o, "/")] = true
		}
	}
	h.bufs.New = func() any { return new(bytes.Buffer) }

	ingest := map[string]route{}
	for _, t := range []event.Type{event.Track, event.Identify, event.Page, event.Screen, event.Group, event.Alias} {
		ingest["/v1/"+string(t)] = route{string(t), event.Single, t}
		// analytics.js short forms: /v1/t, /v1/i, ...
		ingest["/v1/"+string(t)[:1]] = route{string(t), event.Single, t}
	}
	for _, p := range []string{"/v1/batch", "/v1/import", "/v1/b"} {
		ingest[p] = route{"batch", event.Batch, ""}
	}
	ingest["/collect"] = route{"legacy_collect", event.Legacy, event.Track}
	ingest["/identify"] = route{"legacy_identify", event.Legacy, event.Identify}
	for path, rt := range ingest {
		h.mux.Handle("POST "+path, h.ingest(rt))
		if strings.HasPrefix(path, "/v1/") {
			h.mux.HandleFunc("OPTIONS "+path, h.preflight)
		}
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	return h, nil
}

// SetWriteKeys replaces the accepted write keys (key to source), as a
// reload of the mounted key file does; requests in flight finish with the
// keys they started with.
func (h *Handler) SetWriteKeys(keys map[string]string) error {
	wk, err := NewWriteKeys(keys)
	if err != nil {
		return fmt.Errorf("configure write keys: %w", err)
	}
	if wk.Len() == 0 && h.cfg.LegacySource == "" {
		return errors.New("configure write keys: none configured, no request could be accepted")
	}
	h.keys.Store(wk)
	// Each source's series exist from the start, at 0, for the alerts'
	// and dashboard's rates.
	for _, src := range keys {
		h.metrics.rateLimited.WithLabelValues(src)
	}
	return nil
}

// ServeHTTP routes a request. Unknown paths get 404 and known paths with
// the wrong method 405, both as JSON with a message.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" {
		h.setCORS(w.Header(), origin)
	}
	_, pattern := h.mux.Handler(r)
	if pattern == "" {
		// ServeMux answers 404 and 405 in plain text; say it in JSON.
		rec := &statusProbe{header: http.Header{}}
		h.mux.ServeHTTP(rec, r)
		status := rec.status
		if status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			h.fail(w, "unknown", status, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		h.fail(w, "unknown", http.StatusNotFound, fmt.Sprintf("no such path %s", r.URL.Path))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// statusProbe captures what ServeMux would answer for an unmatched request.
type statusProbe struct {
	header http.Header
	status int
}

func (s *statusProbe) Header() http.Header         { return s.header }
func (s *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusProbe) WriteHeader(code int)        { s.status = code }

// setCORS lets browsers running analytics.js post from the allowed
// origins (any by default: the write key, not the origin, is what
// authorises a request). No credentials: nothing here uses cookies, and
// a reflected origin with credentials would let any page send them.
func (h *Handler) setCORS(hdr http.Header, origin string) {
	if h.origins == nil {
		hdr.Set("Access-Control-Allow-Origin", "*")
		return
	}
	hdr.Add("Vary", "Origin")
	if h.origins[strings.TrimSuffix(origin, "/")] {
		hdr.Set("Access-Control-Allow-Origin", origin)
	}
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Content-Encoding, X-Retry-Count")
	hdr.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// readyz answers on the public port, so it says nothing of why: an
// upstream error can name the account and role. The reason is logged
// when readiness changes.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.cfg.Ready(ctx); err != nil {
			if h.ready.Swap(false) {
				h.log.Warn("not ready", zap.Error(err))
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable"})
			return
		}
	}
	if !h.ready.Swap(true) {
		h.log.Info("ready again")
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
}

// httpError is an answer with a status and a message for the client.
type httpError struct {
	status int
	msg    string
}

// waitError is an httpError whose client should wait longer than the
// configured RetryAfter.
type waitError struct {
	*httpError
	wait time.Duration
}

func (e *waitError) Unwrap() error { return e.httpError }

func (e *httpError) Error() string { return e.msg }

func (h *Handler) ingest(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var res result
		n, err := h.accept(w, r, rt, &res)
		var he *httpError
		switch {
		case err == nil:
			h.metrics.events.WithLabelValues(rt.name).Add(float64(n))
			if len(res.rejected) > 0 {
				writeJSON(w, http.StatusOK, map[string]any{"success": true, "rejected": res.rejected})
			} else {
				writeJSON(w, http.StatusOK, map[string]any{"success": true})
			}
			h.metrics.observe(rt.name, http.StatusOK, start)
			return
		case errors.As(err, &he):
		default:
			he = &httpError{http.StatusInternalServerError, "internal error"}
			h.log.Error("ingest failed", zap.String("route", rt.name), zap.Error(err))
		}
		if he.status == http.StatusTooManyRequests || he.status == http.StatusServiceUnavailable {
			wait := h.cfg.RetryAfter
			var we *waitError
			if errors.As(err, &we) {
				wait = max(wait, we.wait)
			}
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		}
		h.fail(w, rt.name, he.status, he.msg)
		h.metrics.observe(rt.name, he.status, start)
	})
}

func (h *Handler) fail(w http.ResponseWriter, route string, status int, msg string) {
	h.metrics.rejected.WithLabelValues(route, strconv.Itoa(status)).Inc()
	writeJSON(w, status, map[string]any{"success": false, "error": msg})
}

// accept runs one ingest request to its end and returns the number of
// events written.
func (h *Handler) accept(w http.ResponseWriter, r *http.Request, rt route, res *result) (int, error) {
	keys := h.keys.Load()
	headerKey, hasHeaderKey := basicUser(r)
	var source string
	if hasHeaderKey {
		src, ok := keys.Lookup(headerKey)
		if !ok {
			// Fail before reading the body: an unknown key costs us nothing.
			return 0, &httpError{http.StatusUnauthorized, "unknown write key"}
		}
		source = src
	}

	buf := h.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 4*h.cfg.MaxRequestBytes {
			buf.Reset()
			h.bufs.Put(buf)
		}
	}()
	if err := h.readBody(w, r, buf); err != nil {
		return 0, err
	}
	body := buf.Bytes()
	h.metrics.bodyBytes.Observe(float64(len(body)))
	if !utf8.Valid(body) {
		return 0, &httpError{http.StatusBadRequest, "body is not valid UTF-8 JSON"}
	}
	req, err := event.DecodeRequest(body, rt.shape, rt.typ, h.cfg.MaxEventBytes)
	if err != nil {
		return 0, validationHTTPError(err)
	}
	if !hasHeaderKey {
		switch {
		case req.WriteKey != "":
			src, ok := keys.Lookup(req.WriteKey)
			if !ok {
				return 0, &httpError{http.StatusUnauthorized, "unknown write key"}
			}
			source = src
		case rt.shape == event.Legacy && h.cfg.LegacySource != "":
			source = h.cfg.LegacySource
		default:
			return 0, &httpError{http.StatusUnauthorized, "missing write key: send it as the Basic auth user or as writeKey in the body"}
		}
	}
	meta := event.Meta{Source: source, ReceivedAt: h.cfg.Now(), IP: clientIP(r, h.cfg.TrustedProxies, h.cfg.TruncateIP)}
	if rt.shape == event.Legacy {
		meta.LibraryName = r.Header.Get("X-Netlify-Client")
		meta.LibraryVersion = r.Header.Get("X-Netlify-Client-Version")
	}
	events, rejected := h.norm.NormalizeEach(req, meta)
	if h.limits != nil {
		if wait, ok := h.limits.take(source, len(events), h.cfg.Now()); !ok {
			h.metrics.rateLimited.WithLabelValues(source).Add(float64(len(events)))
			return 0, &waitError{&httpError{http.StatusTooManyRequests, "write key over its rate limit, retry later"}, wait}
		}
	}
	msgs := make([]Message, len(events), len(events)+len(rejected))
	for i, e := range events {
		msgs[i] = Message{ID: e.MessageID, Data: e.AppendJSON(nil)}
	}
	// Refused events go through the stream too, in an envelope only the
	// archive's error output takes: nothing a client sent is lost, and a
	// person can query why.
	var answers []rejectedAnswer
	for _, rej := range rejected {
		id, env := event.RejectedEvent(rej, meta, h.cfg.MaxEventBytes)
		msgs = append(msgs, Message{ID: id, Data: env})
		answers = append(answers, rejectedAnswer{Index: rej.Index, Error: rej.Err.Error()})
		h.metrics.rejectedEvents.WithLabelValues(event.RejectedReason(rej.Err)).Inc()
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.AckTimeout)
	defer cancel()
	if err := h.w.Write(ctx, msgs); err != nil {
		return 0, h.writeError(r, err)
	}
	res.rejected = answers
	return len(events), nil
}

// rejectedAnswer names one refused event in a 200 answer, which Segment
// SDKs ignore and a person debugging a client can read.
type rejectedAnswer struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

// result is what accept tells ingest beyond the count.
type result struct {
	rejected []rejectedAnswer
}

func (h *Handler) writeError(r *http.Request, err error) error {
	switch {
	case errors.Is(err, ErrBufferFull):
		return &httpError{http.StatusTooManyRequests, "gateway is at capacity, retry later"}
	case errors.Is(err, ErrThrottled):
		return &httpError{http.StatusTooManyRequests, "stream is at capacity, retry later"}
	case errors.Is(err, ErrInvalidMessage):
		return &httpError{http.StatusBadRequest, err.Error()}
	case errors.Is(err, ErrClosed):
		return &httpError{http.StatusServiceUnavailable, "gateway is shutting down, retry later"}
	case errors.Is(err, ErrUnavailable):
		return &httpError{http.StatusServiceUnavailable, "stream unavailable, retry later"}
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		return &httpError{http.StatusServiceUnavailable, "timed out writing to the stream, retry later"}
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		return &httpError{http.StatusServiceUnavailable, "request cancelled"}
	}
	return fmt.Errorf("write events: %w", err)
}

func validationHTTPError(err error) error {
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		if ve.Kind == event.TooLarge {
			return &httpError{http.StatusBadRequest, ve.Error()}
		}
		return &httpError{http.StatusBadRequest, ve.Error()}
	}
	return err
}

// readBody reads the (possibly gzipped) body into buf, bounded by
// MaxRequestBytes both before and after decompression: a gzip bomb is cut
// off at the limit, never inflated in full.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	limit := int64(h.cfg.MaxRequestBytes)
	tooLarge := &httpError{http.StatusBadRequest, fmt.Sprintf("request body over the limit of %d bytes", limit)}
	if r.ContentLength > limit {
		return tooLarge
	}
	// A deadline on the body, from now: ReadHeaderTimeout covered the
	// headers. A slow client is cut off; its connection closes.
	// (Writers that cannot take a deadline, as in handler tests, go
	// without.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))
	var src io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return gzipError(err, tooLarge)
		}
		defer zr.Close()
		src = zr
	default:
		return &httpError{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q not supported: send gzip or none", enc)}
	}
	n, err := buf.ReadFrom(io.LimitReader(src, limit+1))
	if err != nil {
		return gzipError(err, tooLarge)
	}
	if n > limit {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("request body over the limit of %d bytes after decompression", limit)}
	}
	return nil
}

func gzipError(err error, tooLarge error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return &httpError{http.StatusRequestTimeout, "request body not received within the body timeout"}
	}
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("body is not valid gzip: %v", err)}
	}
	return &httpError{http.StatusBadRequest, fmt.Sprintf("read body: %v", err)}
}

// basicUser returns the Basic auth user, which Segment clients use for the
// write key (password empty).
func basicUser(r *http.Request) (string, bool) {
	user, _, ok := r.BasicAuth()
	if !ok || user == "" {
		return "", false
	}
	return user, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}
