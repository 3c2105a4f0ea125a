// Package httpsink is what the sinks that post events over HTTP (Segment
// and GA4) share: the checks of their settings, one client that posts a
// body and turns the answer into the processor's error classes, the
// metrics of that client, secret redaction, and the bookkeeping of a
// writer that sends each Write at once and resumes a failed one.
package httpsink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildtelemetry/pipeline/internal/retryafter"
	"github.com/buildtelemetry/pipeline/processor"
)

// StatusError is a non-2xx answer of the destination's API.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Body is the start of the response body, secrets redacted, for the
	// operator.
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("status %d", e.Code)
	}
	return fmt.Sprintf("status %d: %s", e.Code, e.Body)
}

// Refused reports whether err is an answer that can never succeed for the
// request it answers: a 4xx other than 408 and 429, or an error marked
// permanent. Whether that dooms the request's events or the whole sink is
// the sink's call.
func Refused(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 400 && se.Code < 500 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooManyRequests
	}
	return processor.IsPermanent(err)
}

// Redacted is what a Config's String prints for a secret: nothing when it
// is unset, a marker otherwise, never the secret.
func Redacted(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}

// Config configures a Client. Package prefixes its errors ("segment: …")
// and its metric names (sink_<Package>_…).
type Config struct {
	Package string
	// Sink is the sink's name, the metrics' sink label.
	Sink string
	// Endpoint is the API's origin, checked to be an http(s) URL and kept
	// without a trailing slash.
	Endpoint string
	// Timeout bounds each request; zero means DefaultTimeout, negative
	// is an error.
	Timeout time.Duration
	// HTTPClient sends the requests.
	HTTPClient *http.Client
	// Secrets never appear in an error, whether the server's answer or a
	// transport error quotes them, plain or URL-encoded.
	Secrets []string
	// Now is the clock a Retry-After date is read against (time.Now).
	Now func() time.Time
	// RequestsHelp and SentHelp are the help texts of the requests and
	// events-sent metrics, which say what the API calls a request.
	RequestsHelp, SentHelp string
}

// DefaultTimeout bounds one HTTP request unless the sink says otherwise,
// as analytics-node's httpRequestTimeout does.
const DefaultTimeout = 10 * time.Second

// Client posts request bodies for one sink. It is safe for concurrent use.
type Client struct {
	cfg          Config
	now          func() time.Time
	requests     *prometheus.CounterVec
	eventsSent   prometheus.Counter
	requestBytes prometheus.Counter
}

// NewClient checks cfg's endpoint and timeout and returns a client. It
// does no I/O.
func NewClient(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: new sink: Endpoint %q is not an http(s) URL", cfg.Package, cfg.Endpoint)
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%s: new sink: Timeout %v is negative", cfg.Package, cfg.Timeout)
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	labels := prometheus.Labels{"sink": cfg.Sink}
	prefix := "sink_" + cfg.Package + "_"
	return &Client{
		cfg: cfg,
		now: cfg.Now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "requests_total", ConstLabels: labels,
			Help: cfg.RequestsHelp}, []string{"code"}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{Name: prefix + "events_sent_total", ConstLabels: labels,
			Help: cfg.SentHelp}),
		requestBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: prefix + "request_bytes_total", ConstLabels: labels,
			Help: "Bytes of request bodies sent."}),
	}, nil
}

// Endpoint returns the checked endpoint, without a trailing slash.
func (c *Client) Endpoint() string { return c.cfg.Endpoint }

// Timeout returns the per-request timeout in force.
func (c *Client) Timeout() time.Duration { return c.cfg.Timeout }

// Register registers the client's metrics and the sink's own extra ones
// with reg; a nil reg registers nothing.
func (c *Client) Register(reg prometheus.Registerer, extra ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, m := range append([]prometheus.Collector{c.requests, c.eventsSent, c.requestBytes}, extra...) {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("%s: register metrics: %w", c.cfg.Package, err)
		}
	}
	return nil
}

// maxAnswer bounds what is read of an answer: a 2xx one is returned (GA4's
// validation messages), the rest drained so the connection is reused.
const maxAnswer = 1 << 20

// Post sends body, holding events events, to rawURL with the given
// headers, within the client's timeout, and returns a 2xx answer's body.
// Other answers are a *StatusError (wrapped in processor.RetryAfter for a
// 429 or 5xx that asked for a delay); a failure to send is returned with
// only its cause, since a *url.Error quotes the URL, which may hold a
// secret. Nothing here is marked permanent but a request that cannot be
// built: whether a refusal dooms the events or the sink is the caller's
// call (see Refused).
func (c *Client) Post(ctx context.Context, rawURL string, header http.Header, body []byte, events int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, processor.Permanent(fmt.Errorf("%s: create request: %w", c.cfg.Package, c.redactErr(err)))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "buildtelemetry-pipeline")
	c.requestBytes.Add(float64(len(body)))
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		c.requests.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("%s: post %d events: %w", c.cfg.Package, events, c.redactErr(err))
	}
	defer resp.Body.Close()
	c.requests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		c.eventsSent.Add(float64(events))
		return answer, nil
	}
	text := strings.TrimSpace(string(answer[:min(len(answer), 512)]))
	err = fmt.Errorf("%s: post %d events: %w", c.cfg.Package, events, &StatusError{Code: resp.StatusCode, Body: c.Redact(text)})
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		if d := retryafter.Parse(resp.Header, c.now()); d > 0 {
			return nil, processor.RetryAfter(err, d)
		}
	}
	return nil, err
}

// redactErr drops a *url.Error's URL, keeping its cause, and redacts the
// cause's text too, should it quote a secret.
func (c *Client) redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if text := err.Error(); c.Redact(text) != text {
		return &redactedError{msg: c.Redact(text), err: err}
	}
	return err
}

// redactedError is an error whose text had a secret in it.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Redact removes the secrets, plain and URL-encoded, from text.
func (c *Client) Redact(text string) string {
	for _, s := range c.cfg.Secrets {
		if s == "" {
			continue
		}
		text = strings.ReplaceAll(text, s, "[redacted]")
		text = strings.ReplaceAll(text, url.QueryEscape(s), "[redacted]")
	}
	return text
}

// AppendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as the APIs would otherwise refuse the whole body.
func AppendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			if !utf8.ValidString(s) {
				s = strings.ToValidUTF8(s, "\uFFFD")
			}
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
