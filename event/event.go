// Package event defines the envelope every message travels in, from the
// gateway through Kinesis to the sinks: the Segment spec's message types,
// normalised (messageId, ISO-8601 timestamps, receivedAt, source), with every
// field the client sent kept. It also defines the Kinesis record format the
// gateway writes and the worker reads (record.go).
//
// The package imports no AWS SDK: it is shared by the gateway and the worker.
package event

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// Type is a Segment message type.
type Type string

// The message types of the Segment spec.
const (
	Track    Type = "track"
	Identify Type = "identify"
	Page     Type = "page"
	Screen   Type = "screen"
	Group    Type = "group"
	Alias    Type = "alias"
)

// Valid reports whether t is one of the Segment spec's message types.
func (t Type) Valid() bool {
	switch t {
	case Track, Identify, Page, Screen, Group, Alias:
		return true
	}
	return false
}

// TimeLayout is the ISO-8601 layout of every timestamp the gateway stores:
// UTC with millisecond precision, as Segment writes them.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// Field names the gateway sets or rewrites. The rest of an event's fields are
// kept as the client sent them.
const (
	FieldMessageID         = "messageId"
	FieldType              = "type"
	FieldEvent             = "event"
	FieldName              = "name"
	FieldUserID            = "userId"
	FieldAnonymousID       = "anonymousId"
	FieldTimestamp         = "timestamp"
	FieldOriginalTimestamp = "originalTimestamp"
	FieldSentAt            = "sentAt"
	FieldReceivedAt        = "receivedAt"
	FieldSource            = "source"
	FieldContext           = "context"
	FieldProperties        = "properties"
	FieldTraits            = "traits"
	FieldIntegrations      = "integrations"
	FieldWriteKey          = "writeKey"
)

// Event is one normalised message. The typed fields mirror the JSON fields
// of the same name for the hot paths of the worker; Fields holds the whole
// object, unknown fields included, and is what MarshalJSON writes.
//
// An Event is not safe for concurrent mutation; concurrent reads are fine.
type Event struct {
	MessageID   string
	Type        Type
	Name        string // "event" of a track, "name" of a page or screen
	UserID      string
	AnonymousID string
	Timestamp   time.Time
	ReceivedAt  time.Time
	Source      string
	// Rejected is the reason the gateway refused the event, for the
	// envelope that carries a refused event to the archive's error output
	// (see RejectedEvent); "" for every event a destination may get.
	Rejected string

	// fields are the top-level fields in the order read, values as raw
	// slices of the decoded bytes. A slice, not a map: the worker holds
	// thousands of events per shard, and a map of a dozen entries costs
	// about a kilobyte while this costs 40 bytes an entry. Lookups scan;
	// events have a dozen fields.
	fields []field
}

// field is one top-level field.
type field struct {
	name  string
	value json.RawMessage
}

// fieldsOf turns decoded fields into the event's form.
func fieldsOf(m map[string]json.RawMessage) []field {
	fs := make([]field, 0, len(m))
	for k, v := range m {
		fs = append(fs, field{intern(k), v})
	}
	// Sorted, as the gateway writes them, so that an event reads back
	// with its fields in the same order whichever way it was decoded.
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.name, b.name) })
	return fs
}

// Field returns the raw JSON of a top-level field, or nil when absent.
func (e *Event) Field(name string) json.RawMessage {
	for i := range e.fields {
		if e.fields[i].name == name {
			return e.fields[i].value
		}
	}
	return nil
}

// FieldNames returns the names of the event's top-level fields, unsorted.
func (e *Event) FieldNames() []string {
	names := make([]string, 0, len(e.fields))
	for _, f := range e.fields {
		names = append(names, f.name)
	}
	return names
}

// HeapSize estimates the bytes the event holds beyond its raw JSON (which
// its field values point into): the struct, the field index and the typed
// strings. The worker charges it against its memory budget.
func (e *Event) HeapSize() int {
	n := int(unsafe.Sizeof(*e)) + cap(e.fields)*int(unsafe.Sizeof(field{}))
	for _, f := range e.fields {
		if !interned(f.name) {
			n += len(f.name)
		}
	}
	return n + len(e.MessageID) + len(e.Name) + len(e.UserID) + len(e.AnonymousID) + len(e.Source) + len(e.Type)
}

// Lookup returns the raw JSON at a dotted path such as
// "properties.buildVersion" or "context.library.name". It reports false when
// any step is missing or is not an object.
func (e *Event) Lookup(path string) (json.RawMessage, bool) {
	head, rest, nested := strings.Cut(path, ".")
	v := e.Field(head)
	if v == nil {
		return nil, false
	}
	for nested {
		head, rest, nested = strings.Cut(rest, ".")
		var ok bool
		if v, ok = objectField(v, head); !ok {
			return nil, false
		}
	}
	return v, true
}

// LookupString is Lookup for string values; numbers and booleans are
// returned in their JSON spelling, so that a version sent as 18 counts the
// same as "18". Objects, arrays and null report false.
func (e *Event) LookupString(path string) (string, bool) {
	v, ok := e.Lookup(path)
	if !ok {
		return "", false
	}
	return scalarString(v)
}

func scalarString(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false
	}
	switch v[0] {
	case '"':
		if len(v) >= 2 && v[len(v)-1] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 && bytes.IndexByte(v[1:len(v)-1], '"') < 0 {
			return string(v[1 : len(v)-1]), true
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	case '{', '[', 'n':
		return "", false
	}
	return string(v), true
}

// Set sets a top-level field to the JSON encoding of v. It does not update
// the typed fields; it is meant for fields the typed ones do not mirror.
func (e *Event) Set(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal field %q: %w", name, err)
	}
	for i := range e.fields {
		if e.fields[i].name == name {
			e.fields[i].value = b
			return nil
		}
	}
	e.fields = append(e.fields, field{name, b})
	return nil
}

// MarshalJSON writes the event's fields as one JSON object, keys sorted.
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(nil), nil
}

// AppendJSON appends the event as one JSON object, keys sorted, to dst.
// Field values are written as they were decoded or set, which json has
// already validated, so unlike json.Marshal this does not re-scan them:
// it is the gateway's hot path.
func (e *Event) AppendJSON(dst []byte) []byte {
	sorted := slices.Clone(e.fields)
	slices.SortFunc(sorted, func(a, b field) int { return strings.Compare(a.name, b.name) })
	size := 2
	for _, f := range sorted {
		size += len(f.name) + len(f.value) + 4
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, '{')
	for i, f := range sorted {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, f.name)
		dst = append(dst, ':')
		v := f.value
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		dst = append(dst, v...)
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string; keys are almost always plain
// ASCII, which is copied as is.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// UnmarshalJSON reads a normalised event, as written by the gateway, and
// fills the typed fields. It checks only what the worker relies on: an
// object with a string messageId and a known type.
func (e *Event) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	if fields == nil {
		return fmt.Errorf("decode event: not an object")
	}
	return e.setFields(fieldsOf(fields))
}

// setFields fills the event from its decoded top-level fields.
func (e *Event) setFields(fields []field) error {
	*e = Event{fields: fields}
	str := func(name string) string {
		s, _ := scalarString(e.Field(name))
		return s
	}
	e.MessageID = str(FieldMessageID)
	if e.MessageID == "" {
		return fmt.Errorf("decode event: missing %s", FieldMessageID)
	}
	if rej := e.Field(FieldRejected); rej != nil {
		reason, _ := objectField(rej, "reason")
		e.Rejected, _ = scalarString(reason)
		e.Rejected = cmp.Or(e.Rejected, RejectedInvalid)
		e.Source = str(FieldSource)
		return nil // a refused event has no type or identity to check
	}
	e.Type = Type(str(FieldType))
	if !e.Type.Valid() {
		return fmt.Errorf("decode event %s: unknown type %q", e.MessageID, e.Type)
	}
	if e.Type == Track {
		e.Name = str(FieldEvent)
	} else {
		e.Name = str(FieldName)
	}
	e.UserID = str(FieldUserID)
	e.AnonymousID = str(FieldAnonymousID)
	e.Source = str(FieldSource)
	var err error
	if s := str(FieldTimestamp); s != "" {
		if e.Timestamp, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("decode event %s: timestamp: %w", e.MessageID, err)
		}
	}
	if s := str(FieldReceivedAt); s != "" {
		if e.ReceivedAt, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("decode event %s: receivedAt: %w", e.MessageID, err)
		}
	}
	return nil
}

// Parse decodes one normalised event.
func Parse(b []byte) (*Event, error) {
	e := new(Event)
	if err := e.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return e, nil
}

// IntegrationAll is the key of an integrations object that turns every
// destination on or off at once, as in Segment's API.
const IntegrationAll = "All"

// Enabled reports whether the event's integrations object lets it reach
// the destination of that name, by Segment's rules: the destination's
// own key decides (false turns it off; true or an object of options turns
// it on), else the All key, else it is on. An event without integrations
// reaches every destination.
func (e *Event) Enabled(destination string) bool {
	v := e.Field(FieldIntegrations)
	if v == nil {
		return true
	}
	if own, ok := objectField(v, destination); ok {
		return !isFalse(own)
	}
	if all, ok := objectField(v, IntegrationAll); ok {
		return !isFalse(all)
	}
	return true
}

func isFalse(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "false" }
