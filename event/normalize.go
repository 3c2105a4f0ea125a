package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Shape is the body layout of a request, decided by its path.
type Shape int

// The request shapes the gateway accepts.
const (
	// Single is one Segment message: /v1/track, /v1/t, ...
	Single Shape = iota
	// Batch is Segment's {"batch":[...], "sentAt", "context", ...}: /v1/batch.
	Batch
	// Legacy is the telemetry-service payload of the analytics library:
	// /collect and /identify, timestamp in meta.timestamp, no write key.
	Legacy
)

// Default limits, Segment's own.
const (
	DefaultMaxEventBytes = 32 << 10
	// MaxMessageIDLen is Segment's limit on messageId ("under 100 characters").
	MaxMessageIDLen = 99
)

// ErrorKind tells why a request was rejected.
type ErrorKind int

// The kinds of ValidationError.
const (
	// Invalid: the payload can never succeed (bad JSON, wrong types, missing fields).
	Invalid ErrorKind = iota
	// TooLarge: an event is over the per-event size limit.
	TooLarge
)

// ValidationError is returned by DecodeRequest and Normalize for a payload
// that can never succeed. Index is the event's position in a batch, or -1
// for the request as a whole.
type ValidationError struct {
	Kind   ErrorKind
	Index  int
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Index >= 0 {
		fmt.Fprintf(&b, "batch[%d]", e.Index)
	}
	if e.Field != "" {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(e.Field)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

func invalid(index int, field, format string, args ...any) *ValidationError {
	return &ValidationError{Kind: Invalid, Index: index, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Request is a decoded request body: its events, still raw, and the
// request-level fields that apply to all of them.
type Request struct {
	// WriteKey is the body's writeKey, empty when absent.
	WriteKey string
	shape    Shape
	typ      Type
	items    []json.RawMessage
	// bad holds the batch items refused as they were decoded (too large,
	// not an object), by index: NormalizeEach reports them.
	bad map[int]*ValidationError
	// parsed is items[0] already decoded, for single-event requests.
	parsed map[string]json.RawMessage
	// Batch-level fields merged into every item.
	sentAt       json.RawMessage
	context      json.RawMessage
	integrations json.RawMessage
}

// Len returns the number of events in the request.
func (r *Request) Len() int { return len(r.items) }

// DecodeRequest parses a body of the given shape. typ is the message type
// implied by the path (Single and Legacy); it is ignored for Batch. Every
// event must be at most maxEventBytes of JSON (0 means
// DefaultMaxEventBytes). An empty batch is an error: it can never succeed
// and a client sending one has a bug worth seeing.
func DecodeRequest(body []byte, shape Shape, typ Type, maxEventBytes int) (*Request, error) {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultMaxEventBytes
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, invalid(-1, "", "empty body: want a JSON object")
	}
	if body[0] != '{' {
		if !json.Valid(body) {
			return nil, invalid(-1, "", "malformed JSON: %s", jsonSyntaxError(body))
		}
		return nil, invalid(-1, "", "body must be a JSON object")
	}
	r := &Request{shape: shape, typ: typ}
	if shape != Batch && len(body) > maxEventBytes {
		return nil, &ValidationError{Kind: TooLarge, Index: -1, Reason: fmt.Sprintf("event is %d bytes, over the limit of %d", len(body), maxEventBytes)}
	}
	// One decode both validates and parses: the body is read once more
	// only to name a syntax error.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, invalid(-1, "", "malformed JSON: %s", jsonSyntaxError(body))
	}
	if shape != Batch {
		wk, err := optString(top, FieldWriteKey)
		if err != nil {
			return nil, invalid(-1, FieldWriteKey, "%v", err)
		}
		r.WriteKey = wk
		r.items = []json.RawMessage{body}
		r.parsed = top
		return r, nil
	}
	rawBatch, ok := top["batch"]
	if !ok || isNull(rawBatch) {
		return nil, invalid(-1, "batch", "missing: want an array of events")
	}
	if err := json.Unmarshal(rawBatch, &r.items); err != nil {
		return nil, invalid(-1, "batch", "want an array of events")
	}
	if len(r.items) == 0 {
		return nil, invalid(-1, "batch", "empty: want at least one event")
	}
	for i, it := range r.items {
		var bad *ValidationError
		switch {
		case len(it) > maxEventBytes:
			bad = &ValidationError{Kind: TooLarge, Index: i, Reason: fmt.Sprintf("event is %d bytes, over the limit of %d", len(it), maxEventBytes)}
		case len(it) == 0 || it[0] != '{':
			bad = invalid(i, "", "want a JSON object")
		}
		if bad != nil {
			if r.bad == nil {
				r.bad = map[int]*ValidationError{}
			}
			r.bad[i] = bad
		}
	}
	if wk, ok := top[FieldWriteKey]; ok && !isNull(wk) {
		if err := json.Unmarshal(wk, &r.WriteKey); err != nil {
			return nil, invalid(-1, FieldWriteKey, "want a string")
		}
	}
	r.sentAt = nonNull(top[FieldSentAt])
	r.context = nonNull(top[FieldContext])
	r.integrations = nonNull(top[FieldIntegrations])
	if r.context != nil && r.context[0] != '{' {
		return nil, invalid(-1, FieldContext, "want an object")
	}
	if r.integrations != nil && r.integrations[0] != '{' {
		return nil, invalid(-1, FieldIntegrations, "want an object")
	}
	return r, nil
}

func jsonSyntaxError(body []byte) string {
	var v any
	err := json.Unmarshal(body, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	if err != nil {
		return err.Error()
	}
	return "invalid JSON"
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || string(v) == "null"
}

func nonNull(v json.RawMessage) json.RawMessage {
	if isNull(v) {
		return nil
	}
	return bytes.TrimSpace(v)
}

// Meta is what the gateway knows about a request beyond its body.
type Meta struct {
	// Source is the source the write key resolved to.
	Source string
	// ReceivedAt is the server time the request arrived.
	ReceivedAt time.Time
	// Library names the client when the event's context does not, taken
	// from the legacy X-Netlify-Client headers.
	LibraryName, LibraryVersion string
	// IP is the client's address, set as context.ip on events whose
	// client did not set it; empty sets nothing.
	IP string
}

// Normalizer turns decoded requests into events. The zero value is ready to
// use; it is safe for concurrent use.
type Normalizer struct {
	// NewID mints a messageId for an event that has none and no timestamp
	// to derive one from. Defaults to a random UUIDv4.
	NewID func() string
}

// Normalize validates every event of r and returns them normalised. The
// first invalid event fails the whole request, so a client never gets a
// partial acceptance it cannot act on.
//
// Normalisation, in Segment's terms:
//   - type comes from the path for single calls and from the item in a batch;
//   - messageId is kept when given (at most 99 characters); when absent it is
//     derived from the source and the event's bytes if the event carries a
//     timestamp, so a client that retries the same payload gets the same
//     messageId and duplicates collapse downstream; otherwise it is random;
//   - timestamp, originalTimestamp and sentAt accept epoch milliseconds or
//     ISO-8601 and are stored as ISO-8601 UTC; with sentAt, the client's
//     clock skew is removed: timestamp = receivedAt - (sentAt - originalTimestamp);
//   - receivedAt and source are set by the gateway; a body writeKey is dropped;
//   - batch-level context and integrations are merged under each event's own.
func (n *Normalizer) Normalize(r *Request, meta Meta) ([]*Event, error) {
	events, rejected := n.NormalizeEach(r, meta)
	if len(rejected) > 0 {
		return nil, rejected[0].Err
	}
	return events, nil
}

// Rejection is one event of a request that normalisation refused.
type Rejection struct {
	// Index is the event's position in the request (0 for a single call).
	Index int
	// Err says why.
	Err *ValidationError
	// Raw is the event as the client sent it.
	Raw json.RawMessage
}

// NormalizeEach is Normalize going on past invalid events, as Segment's
// API does: it returns the valid events, normalised, and a Rejection for
// each of the others, in request order.
func (n *Normalizer) NormalizeEach(r *Request, meta Meta) ([]*Event, []Rejection) {
	events := make([]*Event, 0, len(r.items))
	var rejected []Rejection
	for i, raw := range r.items {
		idx := i
		if r.shape != Batch {
			idx = -1
		}
		if bad := r.bad[i]; bad != nil {
			rejected = append(rejected, Rejection{Index: i, Err: bad, Raw: raw})
			continue
		}
		e, err := n.normalizeOne(r, raw, idx, meta)
		if err != nil {
			ve, ok := err.(*ValidationError)
			if !ok {
				ve = invalid(idx, "", "%v", err)
			}
			rejected = append(rejected, Rejection{Index: i, Err: ve, Raw: raw})
			continue
		}
		events = append(events, e)
	}
	return events, rejected
}

// normalizeOne checks and normalises one event of r, raw as the client
// sent it, at idx in its batch (-1 outside one). Each step below is one
// group of Segment's rules; the order matters only at the end: the
// derived messageId hashes the event as the client sent it.
func (n *Normalizer) normalizeOne(r *Request, raw json.RawMessage, idx int, meta Meta) (*Event, error) {
	f := r.parsed
	if f == nil || len(r.items) != 1 {
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, invalid(idx, "", "malformed JSON: %v", err)
		}
	}
	e := &Event{Source: meta.Source}
	delete(f, FieldWriteKey)
	delete(f, FieldRejected) // only the gateway marks an event refused
	if err := eventType(e, r, f, idx); err != nil {
		return nil, err
	}
	if err := identity(e, f, idx); err != nil {
		return nil, err
	}
	if err := objects(r, f, idx, meta); err != nil {
		return nil, err
	}
	if err := timestamps(e, r, f, idx, meta); err != nil {
		return nil, err
	}
	if err := n.messageID(e, f, idx, raw, meta.Source); err != nil {
		return nil, err
	}
	e.fields = fieldsOf(f)
	return e, nil
}

// eventType sets e.Type: the path's for a single call, else the field's,
// which a batch item must have and a legacy call may take from its path.
func eventType(e *Event, r *Request, f map[string]json.RawMessage, idx int) error {
	if r.shape == Single {
		e.Type = r.typ
	} else {
		s, err := optString(f, FieldType)
		if err != nil {
			return invalid(idx, FieldType, "%v", err)
		}
		e.Type = Type(s)
		if e.Type == "" {
			if r.shape == Batch {
				return invalid(idx, FieldType, "missing: want one of track, identify, page, screen, group, alias")
			}
			e.Type = r.typ
		}
	}
	if !e.Type.Valid() {
		return invalid(idx, FieldType, "unknown type %q: want one of track, identify, page, screen, group, alias", e.Type)
	}
	f[FieldType] = mustJSON(string(e.Type))
	return nil
}

// identity sets e's user and anonymous IDs, one of which every event
// needs, and the name its type calls for. Numbers are accepted and stored
// as strings, as Segment does.
func identity(e *Event, f map[string]json.RawMessage, idx int) error {
	var err error
	if e.UserID, err = optID(f, FieldUserID); err != nil {
		return invalid(idx, FieldUserID, "%v", err)
	}
	if e.AnonymousID, err = optID(f, FieldAnonymousID); err != nil {
		return invalid(idx, FieldAnonymousID, "%v", err)
	}
	if e.UserID == "" && e.AnonymousID == "" {
		return invalid(idx, "", "missing userId and anonymousId: every event needs one")
	}
	switch e.Type {
	case Track:
		if e.Name, err = optString(f, FieldEvent); err != nil {
			return invalid(idx, FieldEvent, "%v", err)
		}
		if e.Name == "" {
			return invalid(idx, FieldEvent, "missing: a track call needs an event name")
		}
	case Page, Screen:
		if e.Name, err = optString(f, FieldName); err != nil {
			return invalid(idx, FieldName, "%v", err)
		}
	case Group:
		if _, err := optID(f, "groupId"); err != nil {
			return invalid(idx, "groupId", "%v", err)
		}
	case Alias:
		if _, err := optID(f, "previousId"); err != nil {
			return invalid(idx, "previousId", "%v", err)
		}
	}
	return nil
}

// objects checks the object fields (null ones are dropped), merges the
// batch-level context and integrations under the event's own, and fills
// in context.library and context.ip unless the client set them.
func objects(r *Request, f map[string]json.RawMessage, idx int, meta Meta) error {
	for _, name := range []string{FieldProperties, FieldTraits, FieldContext, FieldIntegrations} {
		if v, ok := f[name]; ok {
			if isNull(v) {
				delete(f, name)
				continue
			}
			if v = bytes.TrimSpace(v); v[0] != '{' {
				return invalid(idx, name, "want an object")
			}
		}
	}
	if err := mergeObject(f, FieldContext, r.context); err != nil {
		return invalid(idx, FieldContext, "%v", err)
	}
	if err := mergeObject(f, FieldIntegrations, r.integrations); err != nil {
		return invalid(idx, FieldIntegrations, "%v", err)
	}
	if meta.LibraryName != "" {
		if err := setContextDefaultValue(f, "library", map[string]string{"name": meta.LibraryName, "version": meta.LibraryVersion}); err != nil {
			return invalid(idx, FieldContext, "%v", err)
		}
	}
	if meta.IP != "" {
		if err := setContextDefaultValue(f, "ip", meta.IP); err != nil {
			return invalid(idx, FieldContext, "%v", err)
		}
	}
	return nil
}

// setContextDefaultValue is setContextDefault for a Go value.
func setContextDefaultValue(f map[string]json.RawMessage, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return setContextDefault(f, key, b)
}

// timestamps sets e.Timestamp and e.ReceivedAt and stores every time
// field in one format. timestamp is the client's event time corrected by
// sentAt for its clock's skew; a legacy call may carry it in
// meta.timestamp.
func timestamps(e *Event, r *Request, f map[string]json.RawMessage, idx int, meta Meta) error {
	original, hasOriginal, err := optTime(f, FieldOriginalTimestamp)
	if err != nil {
		return invalid(idx, FieldOriginalTimestamp, "%v", err)
	}
	ts, hasTS, err := optTime(f, FieldTimestamp)
	if err != nil {
		return invalid(idx, FieldTimestamp, "%v", err)
	}
	if !hasTS && r.shape == Legacy {
		// The analytics library puts the event time in meta.timestamp.
		if m, ok := f["meta"]; ok && !isNull(m) && bytes.TrimSpace(m)[0] == '{' {
			var legacyMeta map[string]json.RawMessage
			if json.Unmarshal(m, &legacyMeta) == nil {
				if ts, hasTS, err = optTime(legacyMeta, FieldTimestamp); err != nil {
					return invalid(idx, "meta.timestamp", "%v", err)
				}
			}
		}
	}
	if !hasOriginal && hasTS {
		original, hasOriginal = ts, true
	}
	sentRaw := f[FieldSentAt]
	if isNull(sentRaw) {
		sentRaw = r.sentAt
	}
	sent, hasSent, err := parseTime(sentRaw)
	if err != nil {
		return invalid(idx, FieldSentAt, "%v", err)
	}
	received := meta.ReceivedAt.UTC()
	e.ReceivedAt = received
	switch {
	case hasOriginal && hasSent:
		e.Timestamp = received.Add(-sent.Sub(original))
	case hasOriginal:
		e.Timestamp = original
	default:
		e.Timestamp = received
	}
	// The range is checked after the correction: a CI machine whose clock
	// reads 1970 sends sentAt and originalTimestamp both from 1970, and
	// the corrected time is right. What stays implausible is replaced by
	// receivedAt; originalTimestamp keeps what the client sent.
	if e.Timestamp.Before(minTime) || e.Timestamp.After(received.Add(MaxFutureSkew)) {
		e.Timestamp = received
	}
	if hasOriginal {
		f[FieldOriginalTimestamp] = mustJSON(formatTime(original))
	}
	if hasSent {
		f[FieldSentAt] = mustJSON(formatTime(sent))
	}
	f[FieldTimestamp] = mustJSON(formatTime(e.Timestamp))
	f[FieldReceivedAt] = mustJSON(formatTime(received))
	if meta.Source != "" {
		f[FieldSource] = mustJSON(meta.Source)
	}
	return nil
}

// messageID sets e.MessageID: the client's; or, for an event that says
// when it happened, one derived from the source and the bytes the client
// sent, so that a client's retry of the same event collapses into it;
// else a random one.
func (n *Normalizer) messageID(e *Event, f map[string]json.RawMessage, idx int, raw json.RawMessage, source string) error {
	var err error
	if e.MessageID, err = optString(f, FieldMessageID); err != nil {
		return invalid(idx, FieldMessageID, "%v", err)
	}
	_, hasOriginal := f[FieldOriginalTimestamp]
	switch {
	case len(e.MessageID) > MaxMessageIDLen:
		return invalid(idx, FieldMessageID, "%d characters, over the limit of %d", len(e.MessageID), MaxMessageIDLen)
	case e.MessageID == "" && hasOriginal:
		e.MessageID = derivedID(source, raw)
	case e.MessageID == "":
		e.MessageID = n.newID()
	}
	f[FieldMessageID] = mustJSON(e.MessageID)
	return nil
}

func (n *Normalizer) newID() string {
	if n.NewID != nil {
		return n.NewID()
	}
	return randomUUID()
}

// derivedID is a stable messageId for an event without one: the same source
// and bytes always give the same ID. The "gw-" prefix tells it apart from
// client-minted IDs when debugging duplicates.
func derivedID(source string, raw []byte) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(bytes.TrimSpace(raw))
	return "gw-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// randomUUID is a version 4 UUID: the messageId of an event that has
// neither one nor a timestamp to derive one from.
func randomUUID() string { return uuid.NewString() }

func mustJSON(s string) json.RawMessage {
	return appendString(nil, s)
}

func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

func optString(f map[string]json.RawMessage, name string) (string, error) {
	v, ok := f[name]
	if !ok || isNull(v) {
		delete(f, name)
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", errors.New("want a string")
	}
	return s, nil
}

// optID reads an identifier that may be a string or a number; a number is
// rewritten as a string so every consumer sees one type.
func optID(f map[string]json.RawMessage, name string) (string, error) {
	v, ok := f[name]
	if !ok || isNull(v) {
		delete(f, name)
		return "", nil
	}
	v = bytes.TrimSpace(v)
	switch {
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", errors.New("want a string")
		}
		if s == "" {
			delete(f, name)
		}
		return s, nil
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		s := string(v)
		f[name] = mustJSON(s)
		return s, nil
	}
	return "", errors.New("want a string or a number")
}

// optTime reads and removes nothing: it parses a timestamp field if present.
func optTime(f map[string]json.RawMessage, name string) (time.Time, bool, error) {
	v, ok := f[name]
	if !ok || isNull(v) {
		delete(f, name)
		return time.Time{}, false, nil
	}
	return parseTime(v)
}

// Bounds of a plausible event time, after the sentAt correction: an
// epoch-seconds value sent by mistake would otherwise land in January
// 1970, and a far-future one would poison partitions downstream. An event
// time outside them is replaced by receivedAt (see normalizeOne).
var minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxFutureSkew is how far after receivedAt a corrected event time may
// be and still stand.
const MaxFutureSkew = 24 * time.Hour

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02",
}

// parseTime accepts epoch milliseconds (a JSON number, or a string of
// digits) or an ISO-8601 string.
func parseTime(v json.RawMessage) (time.Time, bool, error) {
	if isNull(v) {
		return time.Time{}, false, nil
	}
	v = bytes.TrimSpace(v)
	var t time.Time
	switch {
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return t, false, errors.New("want epoch milliseconds or an ISO-8601 string")
		}
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			t = time.UnixMilli(ms)
			break
		}
		parsed := false
		for _, layout := range timeLayouts {
			if p, err := time.Parse(layout, s); err == nil {
				t, parsed = p, true
				break
			}
		}
		if !parsed {
			return t, false, fmt.Errorf("%q is not ISO-8601 or epoch milliseconds", s)
		}
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		ms, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return t, false, fmt.Errorf("%s is not epoch milliseconds", v)
		}
		t = time.UnixMilli(int64(ms))
	default:
		return t, false, errors.New("want epoch milliseconds or an ISO-8601 string")
	}
	if t.Year() < 1 || t.Year() > 9999 {
		return t, false, fmt.Errorf("%s has a year outside 1..9999", v)
	}
	return t.UTC(), true, nil
}

// mergeObject merges a batch-level object under an event's own object of
// the same name: the event's keys win.
func mergeObject(f map[string]json.RawMessage, name string, batch json.RawMessage) error {
	if batch == nil {
		return nil
	}
	own, ok := f[name]
	if !ok {
		f[name] = batch
		return nil
	}
	var b, o map[string]json.RawMessage
	if err := json.Unmarshal(batch, &b); err != nil {
		return errors.New("want an object")
	}
	if err := json.Unmarshal(own, &o); err != nil {
		return errors.New("want an object")
	}
	for k, v := range o {
		b[k] = v
	}
	merged, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("merge %s: %w", name, err)
	}
	f[name] = merged
	return nil
}

// setContextDefault sets context.<key> to value unless the event's
// context has it: what a client sets is never overwritten.
func setContextDefault(f map[string]json.RawMessage, key string, value json.RawMessage) error {
	v, ok := f[FieldContext]
	if !ok {
		f[FieldContext] = append(append(append(append([]byte(`{"`), key...), `":`...), value...), '}')
		return nil
	}
	ctx := map[string]json.RawMessage{}
	if err := json.Unmarshal(v, &ctx); err != nil {
		return errors.New("want an object")
	}
	if _, ok := ctx[key]; ok {
		return nil
	}
	ctx[key] = value
	b, err := json.Marshal(ctx)
	if err != nil {
		return err
	}
	f[FieldContext] = b
	return nil
}

// FieldRejected is the field of the envelope that carries a refused event
// through the stream to the archive's error output: an object with the
// reason, the error and the event's index in its request.
const FieldRejected = "_rejected"

// Reasons a refused event is filed under (the S3 error prefix
// errors/<reason>/).
const (
	// RejectedInvalid: the event breaks a rule of the API (no userId or
	// anonymousId, a track without a name, a field of the wrong type...).
	RejectedInvalid = "invalid-event"
	// RejectedTooLarge: the event is over the per-event limit.
	RejectedTooLarge = "event-too-large"
)

// RejectedReason is the reason a rejection is filed under.
func RejectedReason(err *ValidationError) string {
	if err.Kind == TooLarge {
		return RejectedTooLarge
	}
	return RejectedInvalid
}

// RejectedEvent returns the envelope of a refused event: what the gateway
// writes to the stream in its place, so that nothing a client sent is
// lost, while no destination but the archive's error output takes it.
// The event itself is kept as sent under rawEvent, or, when over maxBytes,
// its first maxBytes bytes as a string under rawEventTruncated. Its
// messageId, returned with it, derives from the source and the bytes, so
// a client's retry of the same request files it once.
func RejectedEvent(rej Rejection, meta Meta, maxBytes int) (messageID string, envelope []byte) {
	type why struct {
		Reason string `json:"reason"`
		Error  string `json:"error"`
		Index  int    `json:"index"`
	}
	env := struct {
		MessageID  string          `json:"messageId"`
		Rejected   why             `json:"_rejected"`
		Source     string          `json:"source,omitempty"`
		ReceivedAt string          `json:"receivedAt"`
		Raw        json.RawMessage `json:"rawEvent,omitempty"`
		Truncated  string          `json:"rawEventTruncated,omitempty"`
	}{
		MessageID:  "gw-rej-" + derivedID(meta.Source, rej.Raw)[len("gw-"):],
		Rejected:   why{RejectedReason(rej.Err), rej.Err.Error(), rej.Index},
		Source:     meta.Source,
		ReceivedAt: formatTime(meta.ReceivedAt.UTC()),
	}
	if len(rej.Raw) <= maxBytes && json.Valid(rej.Raw) {
		env.Raw = rej.Raw
	} else {
		env.Truncated = string(rej.Raw[:min(len(rej.Raw), maxBytes)])
	}
	b, _ := json.Marshal(env) // strings and valid raw JSON always marshal
	return env.MessageID, b
}
