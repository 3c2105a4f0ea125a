// Package ga4 is a sink that forwards events to Google Analytics 4
// through the Measurement Protocol: POST
// /mp/collect?measurement_id=...&api_secret=....
//
// GA4 answers 2xx to any request it received, however bad its data, and
// drops what it finds invalid without a word. So the sink maps every
// event to a legal GA4 event by construction (mapping.go: EventName,
// ParamName, mapEvent), and only transport errors, 5xx and 429 are
// failures the processor retries and its breaker counts; any other 4xx
// can never succeed and is permanent.
//
// With Config.Validate the sink posts to the validation server
// (/debug/mp/collect) instead, which records nothing: every validation
// message is logged at warn and counted. Sink.Validate does the same for a
// command.
//
// The Measurement Protocol has no event ID to deduplicate on, so a
// request that is resent is counted twice: a Write that fails part-way
// remembers which events were accepted and does not resend them when the
// processor retries it. A replay from an older checkpoint still resends.
// Realtime reports need session_id and engagement_time_msec, which we do
// not have: the events show in the standard reports only.
package ga4

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/processor"
	"github.com/buildtelemetry/pipeline/sink/internal/httpsink"
)

// Defaults of Config.
const (
	// DefaultEndpoint is the Measurement Protocol's origin.
	DefaultEndpoint = "https://www.google-analytics.com"
	// DefaultName is the sink's name, the key of its watermark and dead
	// letters.
	DefaultName = "ga4"
	// DefaultTimeout bounds one HTTP request.
	DefaultTimeout = 10 * time.Second
	// DefaultConcurrency is how many requests a writer has in flight.
	// Events of different clients need requests of their own (client_id
	// is per request), so a Netlify batch is about one request per event:
	// sent one at a time over a 50 ms round trip, a 1,000-event batch
	// would take most of the processor's 30 s call timeout.
	DefaultConcurrency = 8
)

// DefaultSharedUserIDs are the userIds many clients share, never sent as
// user_id: Netlify Build sends the constant "buildbot_user".
var DefaultSharedUserIDs = []string{"buildbot_user"}

const (
	collectPath = "/mp/collect"
	debugPath   = "/debug/mp/collect"
)

// Config configures a Sink. Zero values mean the documented defaults.
type Config struct {
	// Endpoint is the Measurement Protocol's origin, without path
	// (DefaultEndpoint).
	Endpoint string
	// MeasurementID is the web stream's measurement ID (G-XXXXXXX).
	// Required.
	MeasurementID string
	// APISecret is the stream's Measurement Protocol API secret.
	// Required. It is never logged nor put in an error.
	APISecret string
	// HTTPClient sends the requests (a client that keeps Concurrency
	// idle connections per host).
	HTTPClient *http.Client
	// Timeout bounds each request (DefaultTimeout).
	Timeout time.Duration
	// Validate sends every request to the validation server, which
	// records nothing, and logs and counts its validation messages. For
	// trying a mapping against a real property, not for production.
	Validate bool
	// SharedUserIDs are userIds never sent as user_id, because many
	// clients share them (DefaultSharedUserIDs; an empty non-nil slice
	// means none).
	SharedUserIDs []string
	// Concurrency is how many requests each writer has in flight
	// (DefaultConcurrency).
	Concurrency int
	// Name is the sink's name (DefaultName). Never change it for a lease
	// table in use: the sink's progress would start over.
	Name string
	// Registerer receives the sink's metrics, prefixed sink_ga4_ and
	// labelled with the sink's name; nil: unregistered.
	Registerer prometheus.Registerer
}

// String describes the config with the API secret redacted, so that
// logging a Config never leaks it.
func (c Config) String() string {
	return fmt.Sprintf("ga4.Config{Endpoint:%q MeasurementID:%q APISecret:%s Timeout:%v Validate:%t SharedUserIDs:%q Concurrency:%d Name:%q}",
		c.Endpoint, c.MeasurementID, httpsink.Redacted(c.APISecret), c.Timeout, c.Validate, c.SharedUserIDs, c.Concurrency, c.Name)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// ErrClosed is returned by a writer's Write and Flush after Close.
var ErrClosed = errors.New("ga4: writer closed")

// StatusError is a non-2xx answer of the Measurement Protocol.
type StatusError = httpsink.StatusError

// rejects reports whether err can never succeed for this request: a
// 4xx other than 408 and 429, or an error marked permanent.
var rejects = httpsink.Refused

// Sink sends events to GA4. It is safe for concurrent use by several
// shards.
type Sink struct {
	cfg     Config
	query   string // measurement_id and api_secret, encoded
	client  *httpsink.Client
	log     *zap.Logger
	metrics *metrics
	mapper  mapper
	now     func() time.Time
}

var (
	_ processor.PartialWriter = (*writer)(nil)
	_ processor.Sink          = (*Sink)(nil)
	_ processor.Writer        = (*writer)(nil)
)

// New validates cfg and returns a sink. It does no I/O.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.MeasurementID == "" {
		return nil, errors.New("ga4: new sink: MeasurementID is required")
	}
	if cfg.APISecret == "" {
		return nil, errors.New("ga4: new sink: APISecret is required")
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("ga4: new sink: Concurrency %d is negative", cfg.Concurrency)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	if cfg.SharedUserIDs == nil {
		cfg.SharedUserIDs = DefaultSharedUserIDs
	}
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if cfg.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(cfg.Concurrency, t.MaxIdleConnsPerHost)
		cfg.HTTPClient = &http.Client{Transport: t}
	}
	s := &Sink{now: time.Now}
	client, err := httpsink.NewClient(httpsink.Config{
		Package: "ga4", Sink: cfg.Name, Endpoint: cmp.Or(cfg.Endpoint, DefaultEndpoint), Timeout: cfg.Timeout, HTTPClient: cfg.HTTPClient,
		Secrets: []string{cfg.APISecret}, Now: func() time.Time { return s.now() },
		RequestsHelp: "Requests to the Measurement Protocol by status code (\"error\": no response).",
		SentHelp:     "Events in requests answered 2xx (to the validation server in Validate mode).",
	})
	if err != nil {
		return nil, err
	}
	cfg.Endpoint, cfg.Timeout = client.Endpoint(), client.Timeout()
	*s = Sink{
		cfg:     cfg,
		query:   url.Values{"measurement_id": {cfg.MeasurementID}, "api_secret": {cfg.APISecret}}.Encode(),
		client:  client,
		log:     log.With(zap.String("sink", cfg.Name)),
		mapper:  mapper{shared: make(map[string]bool, len(cfg.SharedUserIDs))},
		metrics: newMetrics(cfg.Name),
		now:     s.now,
	}
	for _, id := range cfg.SharedUserIDs {
		s.mapper.shared[id] = true
	}
	m := s.metrics
	if err := client.Register(cfg.Registerer, m.skipped, m.rejected, m.paramsDropped, m.validation); err != nil {
		return nil, err
	}
	return s, nil
}

// Name returns the sink's name.
func (s *Sink) Name() string { return s.cfg.Name }

// IntegrationName is the sink's key in an integrations object: Segment's catalogue name for the GA4 destination.
// An event that turns it off (or turns All off without turning it on) is
// not given to this sink.
func (s *Sink) IntegrationName() string { return IntegrationName }

// IntegrationName is the key that turns this sink on or off in an event's
// integrations object.
const IntegrationName = "Google Analytics 4"

// Open returns a writer for one shard. The sink keeps no per-shard state.
func (s *Sink) Open(context.Context, processor.Shard) (processor.Writer, error) {
	return &writer{s: s, Writer: httpsink.Writer[progress]{ErrClosed: ErrClosed}}, nil
}

// item is one mapped event and where it came from.
type item struct {
	pos      int // in record order, over all events of a Write
	rec, idx int
	m        mapped
	ev       *event.Event
}

// request is one POST: events of one client_id, user_id and
// timestamp_micros.
type request struct {
	items []*item
	body  []byte
}

// group packs items into requests: one per client_id, user_id and
// timestamp_micros (they are request fields), in the order each first
// appears, each at most MaxEventsPerRequest events and under
// MaxBodyBytes.
func group(items []*item) []request {
	type key struct {
		client, user string
		micros       int64
	}
	idx := make(map[key]int)
	var groups [][]*item
	for _, it := range items {
		k := key{it.m.clientID, it.m.userID, it.m.micros}
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], it)
	}
	var reqs []request
	for _, g := range groups {
		head := appendHead(nil, &g[0].m)
		var (
			cur  request
			body = head
			ev   []byte
		)
		for _, it := range g {
			ev = appendEvent(ev[:0], &it.m)
			// The comma and the closing "]}" count too. One event is
			// always under the limit: 25 parameters of 40-character names
			// and 100-character values take under 20 kB, even escaped.
			if len(cur.items) == MaxEventsPerRequest || (len(cur.items) > 0 && len(body)+1+len(ev)+2 >= MaxBodyBytes) {
				cur.body = append(body, "]}"...)
				reqs = append(reqs, cur)
				cur, body = request{}, append([]byte(nil), head...)
			}
			if len(cur.items) > 0 {
				body = append(body, ',')
			}
			body = append(body, ev...)
			cur.items = append(cur.items, it)
		}
		cur.body = append(body, "]}"...)
		reqs = append(reqs, cur)
	}
	return reqs
}

// appendHead appends a body's fields up to the events array.
func appendHead(dst []byte, m *mapped) []byte {
	dst = append(dst, `{"client_id":"`...)
	dst = append(dst, m.clientID...)
	dst = append(dst, '"')
	if m.userID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = httpsink.AppendString(dst, m.userID)
	}
	if m.micros != 0 {
		dst = append(dst, `,"timestamp_micros":`...)
		dst = strconv.AppendInt(dst, m.micros, 10)
	}
	return append(dst, `,"events":[`...)
}

// writer sends one shard's records. As the Writer contract allows, it is
// not safe for concurrent use. Its progress remembers which events of a
// failed Write were settled, so that the processor's retry with the same
// records does not send them again: GA4 would count them twice.
type writer struct {
	s *Sink
	httpsink.Writer[progress]
}

// progress is how far a Write got through its records.
type progress struct {
	// offsets maps each record's sequence number to the position of its
	// first event.
	offsets map[string]int
	done    []bool // by position: sent, skipped or failed
	// failed are the events that can never be delivered, by position:
	// unmappable, or in a request answered with a 4xx.
	failed map[int]error
	// remote counts the failed ones the server refused.
	remote int
	// mappable counts the events that are not skipped, as found by the
	// first attempt, which maps them all.
	mappable int
	// retry is set once the records are written again.
	retry bool
}

// init readies a new progress for recs.
func (p *progress) init(recs []processor.Record) {
	p.offsets, p.failed = make(map[string]int, len(recs)), map[int]error{}
	pos := 0
	for _, r := range recs {
		p.offsets[r.SequenceNumber] = pos
		pos += len(r.Events)
	}
	p.done = make([]bool, pos)
}

// Write sends every event of recs, grouped into requests by client,
// Concurrency requests at a time, and returns when all are settled:
//   - nil: all were sent (or skipped: identify, group and alias have no
//     GA4 event), and recs are durable;
//   - *processor.PartialError: the events listed can never be delivered
//     (no identity to derive a client_id from, or a request answered with
//     a 4xx); the rest were sent;
//   - processor.Permanent: GA4 refused every event with a 4xx;
//   - any other error is transient (network, timeout, 5xx, 408, 429 with
//     processor.RetryAfter); after the first, no more requests are
//     started. A retry with the same records sends only what was not
//     sent.
func (w *writer) Write(ctx context.Context, recs []processor.Record) error {
	if len(recs) == 0 {
		return w.Flush(ctx) // nil, or ErrClosed after Close
	}
	p, retry, err := w.Resume(recs)
	if err != nil {
		return err
	}
	if p.retry = retry; !retry {
		p.init(recs)
	}
	now := w.s.now()
	var items []*item
	pos := -1
	for ri := range recs {
		for ei, e := range recs[ri].Events {
			pos++
			if p.done[pos] {
				continue
			}
			m, skip, err := w.s.mapper.mapEvent(e, now)
			switch {
			case skip:
				w.s.metrics.skipped.WithLabelValues(string(e.Type)).Inc()
				p.done[pos] = true
				continue
			case err != nil:
				w.s.metrics.rejected.WithLabelValues("unmappable").Inc()
				p.failed[pos], p.done[pos] = err, true
				p.mappable++
				continue
			}
			if !p.retry {
				p.mappable++
			}
			if m.dropped > 0 {
				w.s.metrics.paramsDropped.Add(float64(m.dropped))
			}
			items = append(items, &item{pos: pos, rec: ri, idx: ei, m: m, ev: e})
		}
	}
	reqs := group(items)
	errs := w.s.sendAll(ctx, reqs)
	var transient error
	var wait time.Duration
	for i, r := range reqs {
		err := errs[i]
		switch {
		case err == errNotSent:
			continue
		case err == nil:
		case rejects(err):
			w.s.log.Warn("request refused, reporting its events failed", zap.Int("events", len(r.items)), zap.Error(err))
			w.s.metrics.rejected.WithLabelValues("refused").Add(float64(len(r.items)))
			for _, it := range r.items {
				p.failed[it.pos] = err
				p.remote++
			}
		default:
			if transient == nil {
				transient = err
			}
			wait = max(wait, processor.RetryAfterOf(err))
			continue
		}
		for _, it := range r.items {
			p.done[it.pos] = true
		}
	}
	if transient != nil {
		if processor.RetryAfterOf(transient) < wait {
			transient = processor.RetryAfter(transient, wait)
		}
		return transient
	}
	w.Settled(recs)
	if len(p.failed) == 0 {
		return nil
	}
	positions := sortedPositions(p.failed)
	if p.remote == len(p.failed) && p.remote == p.mappable {
		return processor.Permanent(p.failed[positions[0]])
	}
	pe := &processor.PartialError{}
	for _, at := range positions {
		ri, ei := processor.EventAt(recs, at)
		pe.Failed = append(pe.Failed, processor.FailedEvent{Record: &recs[ri], Index: ei, Err: p.failed[at]})
	}
	return pe
}

// Delivered reports whether event index of record seq was sent (or had
// no GA4 counterpart) by the last Write, which failed: the processor
// parks only the rest, since GA4 would count a resent event twice.
func (w *writer) Delivered(seq string, index int) bool {
	p := w.Pending()
	if p == nil {
		return false
	}
	off, ok := p.offsets[seq]
	pos := off + index
	return ok && index >= 0 && pos < len(p.done) && p.done[pos] && p.failed[pos] == nil
}

// errNotSent marks a request sendAll did not start.
var errNotSent = errors.New("not sent")

// sendAll sends reqs, Concurrency at a time, and returns each one's
// error (errNotSent for those not started). After a transient failure it
// starts no more: the destination is likely down, and the processor will
// retry.
func (s *Sink) sendAll(ctx context.Context, reqs []request) []error {
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = errNotSent
	}
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.cfg.Concurrency)
	)
	for i := range reqs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil || stop.Load() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := s.send(ctx, &reqs[i])
			if err != nil && !rejects(err) {
				stop.Store(true)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errs
}

// send posts one request, to the validation server in Validate mode.
func (s *Sink) send(ctx context.Context, r *request) error {
	if s.cfg.Validate {
		msgs, err := s.validate(ctx, r)
		for _, m := range msgs {
			s.metrics.validation.WithLabelValues(m.ValidationCode).Inc()
			s.log.Warn("ga4 validation message", zap.String("event", m.EventName), zap.String("message_id", m.MessageID),
				zap.String("code", m.ValidationCode), zap.String("field", m.FieldPath), zap.String("description", m.Description))
		}
		return err
	}
	_, err := s.post(ctx, collectPath, r)
	return err
}

// post sends r's body to path and returns the start of a 2xx response's
// body.
func (s *Sink) post(ctx context.Context, path string, r *request) ([]byte, error) {
	return s.client.Post(ctx, s.cfg.Endpoint+path+"?"+s.query, nil, r.body, len(r.items))
}

// ValidationMessage is one message of the validation server, with the
// event it is about.
type ValidationMessage struct {
	// FieldPath, Description and ValidationCode are the server's
	// ("NAME_INVALID", "NAME_RESERVED", "VALUE_INVALID",
	// "VALUE_REQUIRED", "VALUE_OUT_OF_BOUNDS", ...).
	FieldPath      string `json:"fieldPath"`
	Description    string `json:"description"`
	ValidationCode string `json:"validationCode"`
	// Index is the event's index in the events given to Validate (-1 when
	// the server's message does not say which event of a request, or in
	// a writer); MessageID and EventName are its messageId and GA4 name
	// ("" when unknown).
	Index     int    `json:"-"`
	MessageID string `json:"-"`
	EventName string `json:"-"`
}

// Validate maps events as the sink does and sends them to the validation
// server (/debug/mp/collect), which records nothing, and returns every
// message it has, each with its event. Events without a client identity
// are reported locally, with the code VALUE_REQUIRED; identify, group and
// alias events are skipped, as the sink skips them. An error means the
// validation server could not be asked.
func (s *Sink) Validate(ctx context.Context, events []*event.Event) ([]ValidationMessage, error) {
	now := s.now()
	var out []ValidationMessage
	var items []*item
	for i, e := range events {
		m, skip, err := s.mapper.mapEvent(e, now)
		switch {
		case skip:
			continue
		case err != nil:
			out = append(out, ValidationMessage{FieldPath: "client_id", Description: err.Error(), ValidationCode: "VALUE_REQUIRED",
				Index: i, MessageID: e.MessageID, EventName: m.name})
			continue
		}
		items = append(items, &item{pos: i, m: m, ev: e})
	}
	reqs := group(items)
	for i := range reqs {
		msgs, err := s.validate(ctx, &reqs[i])
		if err != nil {
			return out, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// validate sends one request to the validation server and returns its
// messages, each attributed to the request's event it names.
func (s *Sink) validate(ctx context.Context, r *request) ([]ValidationMessage, error) {
	body, err := s.post(ctx, debugPath, r)
	if err != nil {
		return nil, err
	}
	var resp struct {
		ValidationMessages []ValidationMessage `json:"validationMessages"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("ga4: decode validation response: %w", err)
	}
	for i := range resp.ValidationMessages {
		m := &resp.ValidationMessages[i]
		m.Index = -1
		at := eventIndex(m, len(r.items))
		if at < 0 {
			continue
		}
		it := r.items[at]
		m.Index, m.MessageID, m.EventName = it.pos, it.ev.MessageID, it.m.name
	}
	return resp.ValidationMessages, nil
}

// eventIndex finds which event of a request of n events a message is
// about: the only one, or the one its description or field path names
// ("Event at index: [3] ...", "events[3].params"); -1 if none.
func eventIndex(m *ValidationMessage, n int) int {
	if n == 1 {
		return 0
	}
	for _, text := range []string{m.Description, m.FieldPath} {
		for _, marker := range []string{"index: [", "events["} {
			if i := strings.Index(text, marker); i >= 0 {
				rest := text[i+len(marker):]
				if j := strings.IndexByte(rest, ']'); j > 0 {
					if k, err := strconv.Atoi(rest[:j]); err == nil && k >= 0 && k < n {
						return k
					}
				}
			}
		}
	}
	return -1
}

// metrics are the sink's own Prometheus metrics, prefixed sink_ga4_,
// besides its client's requests, bytes and events sent.
type metrics struct {
	skipped       *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	paramsDropped prometheus.Counter
	validation    *prometheus.CounterVec
}

func newMetrics(name string) *metrics {
	labels := prometheus.Labels{"sink": name}
	return &metrics{
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sink_ga4_events_skipped_total", ConstLabels: labels,
			Help: "Events with no GA4 counterpart, not sent, by type."}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sink_ga4_events_rejected_total", ConstLabels: labels,
			Help: "Events reported failed, by reason (unmappable, refused)."}, []string{"reason"}),
		paramsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "sink_ga4_params_dropped_total", ConstLabels: labels,
			Help: "Event parameters left out over GA4's 25 per event."}),
		validation: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sink_ga4_validation_messages_total", ConstLabels: labels,
			Help: "Messages of the validation server in Validate mode, by validation code."}, []string{"code"}),
	}
}
