// Package segment is a sink that forwards events to Segment through the
// HTTP Tracking API's /v1/batch endpoint.
//
// Each Write is sent at once, split into as many /v1/batch requests as
// Segment's limits need: at most 500 KB per request, 32 KB per event and
// 2,500 events per request. Events that Segment would reject or silently
// drop (over 32 KB, without userId and anonymousId, a track without an
// event name, a messageId of 100 characters or more) never leave the sink:
// they come back in a *processor.PartialError and are parked with the
// reason.
//
// Every event keeps its messageId, which is Segment's dedup key: delivery
// is at least once, and a replay or a retry that resends a request
// Segment had already accepted is deduplicated by Segment.
//
// What is sent, per event (see appendItem for the why of each rule):
//   - every field as the gateway stored it, messageId, type, timestamp and
//     originalTimestamp included;
//   - without receivedAt and the client's sentAt, which describe the hop
//     from the client to our gateway, not from us to Segment;
//   - sentAt is stamped once per request, at send time, at batch level;
//   - a batch-level context.library names this pipeline; Segment merges it
//     under each event's own context, so a client's library wins.
package segment

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/sink/internal/httpsink"
)

// Defaults of Config, and Segment's own limits. Segment
// writes "KB"; like its own Go and Node libraries we read it as KiB.
const (
	// DefaultEndpoint is Segment's US endpoint.
	DefaultEndpoint = "https://api.segment.io"
	// EUEndpoint is the endpoint of EU workspaces.
	EUEndpoint = "https://events.eu1.segmentapis.com"
	// DefaultName is the sink's name, the key of its watermark and dead
	// letters.
	DefaultName = "segment"
	// DefaultTimeout bounds one HTTP request, as analytics-node's
	// httpRequestTimeout does. A Write of several requests may take
	// longer; the processor's call timeout bounds the whole Write.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxBatchBytes is Segment's limit on a /v1/batch body.
	DefaultMaxBatchBytes = 500 << 10
	// DefaultMaxEventBytes is Segment's limit on one event of a batch.
	DefaultMaxEventBytes = 32 << 10
	// DefaultMaxBatchEvents is Segment's limit on events per batch: above
	// it Segment answers 200 and drops the events.
	DefaultMaxBatchEvents = 2500
	// MaxMessageIDLen is Segment's limit on messageId ("under 100
	// characters").
	MaxMessageIDLen = 99
)

// library is the batch-level context.library: Segment merges it into
// every event that does not name its own client.
const library = `{"library":{"name":"buildtelemetry-pipeline","version":"1"}}`

// Config configures a Sink. Zero values mean the documented defaults.
type Config struct {
	// Endpoint is the API's origin, without path (DefaultEndpoint; EU
	// workspaces use EUEndpoint). The sink posts to Endpoint + "/v1/batch".
	Endpoint string
	// WriteKey is the source's write key, sent as Basic auth. Required.
	// It is never logged nor put in an error.
	WriteKey string
	// HTTPClient sends the requests (a client over
	// http.DefaultTransport). Its own Timeout, if any, also applies.
	HTTPClient *http.Client
	// Timeout bounds each request (DefaultTimeout).
	Timeout time.Duration
	// MaxBatchBytes bounds each request body (DefaultMaxBatchBytes, also
	// the most allowed).
	MaxBatchBytes int
	// MaxEventBytes bounds each event as sent (DefaultMaxEventBytes, also
	// the most allowed); larger events are reported failed.
	MaxEventBytes int
	// MaxBatchEvents bounds the events of each request
	// (DefaultMaxBatchEvents, also the most allowed).
	MaxBatchEvents int
	// Name is the sink's name (DefaultName). Never change it for a lease
	// table in use: the sink's progress would start over.
	Name string
	// Registerer receives the sink's metrics, prefixed sink_segment_ and
	// labelled with the sink's name; nil: unregistered.
	Registerer prometheus.Registerer
}

// String describes the config with the write key redacted, so that
// logging a Config never leaks it.
func (c Config) String() string {
	return fmt.Sprintf("segment.Config{Endpoint:%q WriteKey:%s Timeout:%v MaxBatchBytes:%d MaxEventBytes:%d MaxBatchEvents:%d Name:%q}",
		c.Endpoint, httpsink.Redacted(c.WriteKey), c.Timeout, c.MaxBatchBytes, c.MaxEventBytes, c.MaxBatchEvents, c.Name)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// Errors of the sink; HTTP failures are *StatusError.
var (
	// ErrClosed is returned by a writer's Write and Flush after Close.
	ErrClosed = errors.New("segment: writer closed")
	// ErrEventTooLarge is the cause of events over MaxEventBytes, reported
	// in a *processor.PartialError.
	ErrEventTooLarge = errors.New("event too large")
	// ErrEventInvalid is the cause of events Segment would drop: no
	// userId and anonymousId, a track without an event name, a missing
	// or too long messageId. Reported in a *processor.PartialError.
	ErrEventInvalid = errors.New("event invalid")
)

// StatusError is a non-2xx answer of the API.
type StatusError = httpsink.StatusError

// Sink sends events to Segment. It is safe for concurrent use by several
// shards: each writer sends its own requests.
type Sink struct {
	cfg      Config
	url      string
	header   http.Header // the write key, as Basic auth
	client   *httpsink.Client
	log      *zap.Logger
	rejected *prometheus.CounterVec // events never sent, by reason
	overhead int                    // body bytes besides the items, commas excluded
	maxEvent int                    // the largest item that fits a request
	now      func() time.Time       // the clock that stamps sentAt
}

var (
	_ processor.Sink   = (*Sink)(nil)
	_ processor.Writer = (*writer)(nil)
)

// New validates cfg and returns a sink. It does no I/O: a wrong key or an
// unreachable endpoint shows as failed writes, which the processor parks.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.WriteKey == "" {
		return nil, errors.New("segment: new sink: WriteKey is required")
	}
	s := &Sink{now: time.Now}
	cfg.Endpoint = cmp.Or(cfg.Endpoint, DefaultEndpoint)
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if cfg.HTTPClient == nil {
		// The default transport keeps two idle connections per host,
		// enough for sequential requests per shard of a few shards; more
		// shards only open more connections.
		cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport}
	}
	client, err := httpsink.NewClient(httpsink.Config{
		Package: "segment", Sink: cfg.Name, Endpoint: cfg.Endpoint, Timeout: cfg.Timeout, HTTPClient: cfg.HTTPClient,
		Secrets: []string{cfg.WriteKey}, Now: func() time.Time { return s.now() },
		RequestsHelp: "Requests to /v1/batch by status code (\"error\": no response).",
		SentHelp:     "Events in requests Segment accepted (a retry may count an event again).",
	})
	if err != nil {
		return nil, err
	}
	cfg.Timeout = client.Timeout()
	for _, l := range []struct {
		name string
		v    *int
		max  int
	}{
		{"MaxBatchBytes", &cfg.MaxBatchBytes, DefaultMaxBatchBytes},
		{"MaxEventBytes", &cfg.MaxEventBytes, DefaultMaxEventBytes},
		{"MaxBatchEvents", &cfg.MaxBatchEvents, DefaultMaxBatchEvents},
	} {
		if *l.v == 0 {
			*l.v = l.max
		}
		if *l.v < 0 || *l.v > l.max {
			return nil, fmt.Errorf("segment: new sink: %s %d is outside Segment's limit 1..%d", l.name, *l.v, l.max)
		}
	}
	*s = Sink{
		cfg:    cfg,
		url:    client.Endpoint() + "/v1/batch",
		header: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.WriteKey+":"))}},
		client: client,
		log:    log.With(zap.String("sink", cfg.Name)),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sink_segment_events_rejected_total", ConstLabels: prometheus.Labels{"sink": cfg.Name},
			Help: "Events never sent because Segment would refuse them, by reason (too_large, invalid)."}, []string{"reason"}),
		now: s.now,
	}
	s.overhead = len(s.appendBody(nil, nil, time.Time{}))
	if cfg.MaxBatchBytes < s.overhead+2 {
		return nil, fmt.Errorf("segment: new sink: MaxBatchBytes %d leaves no room for an event", cfg.MaxBatchBytes)
	}
	// With a small MaxBatchBytes, an event that would not fit a request
	// of its own is as undeliverable as one over MaxEventBytes.
	s.maxEvent = min(cfg.MaxEventBytes, cfg.MaxBatchBytes-s.overhead)
	if err := client.Register(cfg.Registerer, s.rejected); err != nil {
		return nil, err
	}
	return s, nil
}

// Name returns the sink's name.
func (s *Sink) Name() string { return s.cfg.Name }

// IntegrationName is the sink's key in an integrations object: Segment's own key in an integrations object.
// An event that turns it off (or turns All off without turning it on) is
// not given to this sink.
func (s *Sink) IntegrationName() string { return IntegrationName }

// IntegrationName is the key that turns this sink on or off in an event's
// integrations object.
const IntegrationName = "Segment.io"

// Open returns a writer for one shard. The sink keeps no per-shard state.
func (s *Sink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &writer{s: s, Writer: httpsink.Writer[progress]{ErrClosed: ErrClosed}}, nil
}

// writer sends one shard's records. As the Writer contract allows, it is
// not safe for concurrent use. Its progress remembers how far a failed
// Write got, so that the processor's retry with the same records does not
// resend requests Segment accepted. It is only an optimisation: Segment
// dedups on messageId, so resending would be harmless, just wasteful.
type writer struct {
	s *Sink
	httpsink.Writer[progress]
}

// progress is how far a Write got through its records.
type progress struct {
	// done is the count of events, in record order, settled: sent or
	// rejected.
	done int
	// rejected are events Segment refused with a 400, by position.
	rejected []rejection
}

type rejection struct {
	pos int
	err error
}

// item is one event ready to send.
type item struct {
	pos      int // in record order, over all events of the Write
	rec, idx int
	body     []byte
}

// Write sends every event of recs, in as many requests as Segment's
// limits need, one after the other, and returns when all are settled:
//   - nil: all were accepted, and recs are durable;
//   - *processor.PartialError: the events listed can never be delivered
//     (too large, invalid, or in a request Segment answered 400); the rest
//     were accepted;
//   - processor.Permanent: nothing can be delivered (bad write key, every
//     event in a request answered 400, any other 4xx);
//   - any other error is transient (network, timeout, 5xx, 408, 429 with
//     processor.RetryAfter). A retry with the same records resumes after
//     the requests already accepted.
func (w *writer) Write(ctx context.Context, recs []processor.Record) error {
	if len(recs) == 0 {
		return w.Flush(ctx) // nil, or ErrClosed after Close
	}
	p, _, err := w.Resume(recs)
	if err != nil {
		return err
	}
	items, failed := w.s.items(recs)
	if err := w.sendItems(ctx, p, items); err != nil {
		return err
	}
	sendable := len(items)
	w.Settled(recs)
	if len(p.rejected) > 0 && len(p.rejected) == sendable && len(failed) == 0 {
		return processor.Permanent(p.rejected[0].err)
	}
	for _, rj := range p.rejected {
		ri, ei := processor.EventAt(recs, rj.pos)
		failed = append(failed, processor.FailedEvent{Record: &recs[ri], Index: ei, Err: rj.err})
	}
	if len(failed) > 0 {
		return &processor.PartialError{Failed: failed}
	}
	return nil
}

// items encodes every event of recs as a batch item, and returns those
// Segment would take and, apart, those it would refuse.
func (s *Sink) items(recs []processor.Record) ([]item, []processor.FailedEvent) {
	var (
		items  []item
		failed []processor.FailedEvent
		buf    []byte
	)
	pos := -1
	for ri := range recs {
		r := &recs[ri]
		for ei, e := range r.Events {
			pos++
			start := len(buf)
			buf = appendItem(buf, e)
			body := buf[start:]
			if err := s.check(e, len(body)); err != nil {
				s.rejected.WithLabelValues(reasonOf(err)).Inc()
				failed = append(failed, processor.FailedEvent{Record: r, Index: ei, Err: err})
				continue
			}
			items = append(items, item{pos: pos, rec: ri, idx: ei, body: body})
		}
	}
	return items, failed
}

// sendItems sends the items p has not settled yet, in as few requests as
// Segment's limits allow, one after the other, and records in p how far
// it got. A request answered 400 or 413 settles its events as rejected:
// Segment answers so only for an oversize body or invalid JSON, so that
// request can never succeed, and the next ones may. Any other failure
// stops the Write, to be resumed by the processor's retry.
func (w *writer) sendItems(ctx context.Context, p *progress, items []item) error {
	var batch []item
	size := w.s.overhead
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := w.s.send(ctx, batch)
		var se *StatusError
		switch {
		case err == nil:
		case errors.As(err, &se) && (se.Code == http.StatusBadRequest || se.Code == http.StatusRequestEntityTooLarge):
			w.s.log.Warn("request rejected, reporting its events failed", zap.Int("events", len(batch)), zap.Error(err))
			for _, it := range batch {
				p.rejected = append(p.rejected, rejection{it.pos, err})
			}
		default:
			return err
		}
		p.done = batch[len(batch)-1].pos + 1
		batch, size = batch[:0], w.s.overhead
		return nil
	}
	for _, it := range items {
		if it.pos < p.done {
			continue
		}
		add := len(it.body)
		if len(batch) > 0 {
			add++ // the comma
		}
		if len(batch) == w.s.cfg.MaxBatchEvents || size+add > w.s.cfg.MaxBatchBytes {
			if err := send(); err != nil {
				return err
			}
			add = len(it.body)
		}
		batch = append(batch, it)
		size += add
	}
	return send()
}

// check reports why Segment would refuse e, of size bytes as sent. The
// gateway checks the same for its own events; events of other producers
// may still miss them, and Segment would answer 200 and drop them.
func (s *Sink) check(e *event.Event, size int) error {
	switch {
	case size > s.maxEvent:
		return fmt.Errorf("segment: event %s is %d bytes, over the limit of %d: %w", e.MessageID, size, s.maxEvent, ErrEventTooLarge)
	case e.MessageID == "":
		return fmt.Errorf("segment: event has no messageId: %w", ErrEventInvalid)
	case len(e.MessageID) > MaxMessageIDLen:
		return fmt.Errorf("segment: event messageId is %d characters, over the limit of %d: %w", len(e.MessageID), MaxMessageIDLen, ErrEventInvalid)
	case e.UserID == "" && e.AnonymousID == "":
		return fmt.Errorf("segment: event %s has no userId or anonymousId: %w", e.MessageID, ErrEventInvalid)
	case e.Type == event.Track && e.Name == "":
		return fmt.Errorf("segment: track event %s has no event name: %w", e.MessageID, ErrEventInvalid)
	}
	return nil
}

func reasonOf(err error) string {
	if errors.Is(err, ErrEventTooLarge) {
		return "too_large"
	}
	return "invalid"
}

// dropped are the fields not sent:
//   - receivedAt is set by Segment when the request arrives; ours is when
//     our gateway got the event, and Segment would overwrite it anyway.
//   - sentAt is the client's clock when it sent the event to our gateway,
//     already used by the gateway to correct timestamp; towards Segment we
//     are the sender, and sentAt is stamped per request at batch level.
//   - writeKey never belongs in an event (the gateway drops it too).
//
// timestamp is kept, and must be: without it Segment would compute
// receivedAt - (sentAt - originalTimestamp), mixing the client's clock in
// originalTimestamp with ours in sentAt. The gateway's timestamp is
// already corrected for the client's clock skew.
var dropped = []string{event.FieldReceivedAt, event.FieldSentAt, event.FieldWriteKey}

// appendItem appends e as one batch item: its fields as stored, keys
// sorted, without the dropped ones.
func appendItem(dst []byte, e *event.Event) []byte {
	names := e.FieldNames()
	slices.Sort(names)
	dst = append(dst, '{')
	first := true
	for _, k := range names {
		if slices.Contains(dropped, k) {
			continue
		}
		v := e.Field(k)
		if len(v) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = httpsink.AppendString(dst, k)
		dst = append(dst, ':')
		dst = append(dst, v...)
	}
	return append(dst, '}')
}

// appendBody appends a /v1/batch body. Its size is the overhead plus the
// items and the commas between them: sentAt always has the same length.
func (s *Sink) appendBody(dst []byte, items []item, sentAt time.Time) []byte {
	dst = append(dst, `{"batch":[`...)
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, it.body...)
	}
	dst = append(dst, `],"context":`...)
	dst = append(dst, library...)
	dst = append(dst, `,"sentAt":"`...)
	dst = sentAt.UTC().AppendFormat(dst, event.TimeLayout)
	return append(dst, `"}`...)
}

// send posts one batch. sentAt is stamped now, so a retried request
// carries the time of its own attempt, as Segment's libraries do.
func (s *Sink) send(ctx context.Context, items []item) error {
	body := s.appendBody(make([]byte, 0, s.overhead+len(items)*800), items, s.now())
	_, err := s.client.Post(ctx, s.url, s.header, body, len(items))
	return classify(err)
}

// classify marks an error answer for the processor: 429, 408 and 5xx stay
// transient (429 and 503 with the delay the server asked for), 400 and
// 413 are left to Write, which rejects the request's events, and every
// other status can never succeed.
func classify(err error) error {
	var se *StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch {
	case se.Code == http.StatusBadRequest || se.Code == http.StatusRequestEntityTooLarge:
		return err
	case httpsink.Refused(err) || se.Code < 400:
		return processor.Permanent(err)
	}
	return err
}
