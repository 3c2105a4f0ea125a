package deadletter

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/buildtelemetry/pipeline/processor"
)

// line is one NDJSON line of a letter object: one entry, with the letter's
// identity repeated so that every line stands alone (Athena, jq, grep).
// Event is written by hand (see encodeLetter), so it is not marshalled
// from here.
type line struct {
	Sink           string    `json:"sink"`
	Reason         string    `json:"reason"`
	Error          string    `json:"error,omitempty"`
	Stream         string    `json:"stream"`
	Shard          string    `json:"shard"`
	SequenceNumber string    `json:"sequenceNumber"`
	ParkedAt       time.Time `json:"parkedAt"`
	// EntryError is the entry's own error, when it has one; Error is the
	// letter's.
	EntryError string `json:"entryError,omitempty"`
	// Data is an undecodable record's bytes, base64 in JSON.
	Data []byte `json:"data,omitempty"`
}

// decodedLine is line plus the event, as read back.
type decodedLine struct {
	line
	Event json.RawMessage `json:"event,omitempty"`
}

// encodeLetter returns the gzip NDJSON body of a letter.
//
// An event's JSON is spliced into its line verbatim rather than marshalled
// as a json.RawMessage, because encoding/json compacts and HTML-escapes
// raw messages, and the store promises the bytes back unchanged. The one
// exception is an event that spans several lines (a pretty-printed plain
// JSON record): it is compacted, since NDJSON allows no newline in a line
// and JSON allows newlines only as insignificant whitespace.
func encodeLetter(l processor.Letter) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	parkedAt := l.ParkedAt.UTC()
	var compact bytes.Buffer
	for i, e := range l.Entries {
		b, err := json.Marshal(line{
			Sink:           l.Sink,
			Reason:         l.Reason,
			Error:          l.Error,
			Stream:         l.Stream,
			Shard:          l.Shard,
			SequenceNumber: e.SequenceNumber,
			ParkedAt:       parkedAt,
			EntryError:     e.Error,
			Data:           e.Data,
		})
		if err != nil {
			return nil, fmt.Errorf("marshal entry %d: %w", i, err)
		}
		if e.Event != nil {
			ev := e.Event
			if !json.Valid(ev) {
				return nil, fmt.Errorf("entry %d (sequence number %s): %w: event is not valid JSON", i, e.SequenceNumber, ErrInvalidLetter)
			}
			if bytes.ContainsAny(ev, "\r\n") {
				compact.Reset()
				if err := json.Compact(&compact, ev); err != nil {
					return nil, fmt.Errorf("compact entry %d: %w", i, err)
				}
				ev = compact.Bytes()
			}
			b = append(b[:len(b)-1], `,"event":`...) // drop the closing brace
			b = append(b, ev...)
			b = append(b, '}')
		}
		b = append(b, '\n')
		if _, err := zw.Write(b); err != nil {
			return nil, fmt.Errorf("compress entry %d: %w", i, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress letter: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeLetter reads a body written by encodeLetter. It fills Error,
// ParkedAt and Entries; the identity comes from the key. Reading to the
// end of the gzip stream verifies its checksum.
func decodeLetter(r io.Reader) (processor.Letter, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return processor.Letter{}, fmt.Errorf("open gzip: %w", err)
	}
	defer zr.Close()
	dec := json.NewDecoder(zr)
	var l processor.Letter
	for n := 0; ; n++ {
		var ln decodedLine
		if err := dec.Decode(&ln); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return processor.Letter{}, fmt.Errorf("decode line %d: %w", n+1, err)
		}
		if n == 0 {
			l.Error, l.ParkedAt = ln.Error, ln.ParkedAt.UTC()
		}
		e := processor.LetterEntry{SequenceNumber: ln.SequenceNumber, Data: ln.Data, Error: ln.EntryError}
		if len(ln.Event) > 0 {
			e.Event = []byte(ln.Event)
		}
		l.Entries = append(l.Entries, e)
	}
	return l, nil
}
