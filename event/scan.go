package event

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ParseTrusted decodes an event the gateway wrote: JSON it already
// validated, carried in a record whose zstd checksum verified. It splits
// the top-level object in one pass without re-validating nested values,
// several times faster than Parse, which is what lets one worker core
// keep up with several shards. Anything that does not look like an object
// fails; use Parse for JSON from other producers.
func ParseTrusted(b []byte) (*Event, error) {
	fields, err := splitObject(b)
	if err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	e := &Event{}
	if err := e.setFields(fields); err != nil {
		return nil, err
	}
	return e, nil
}

var errNotObject = errors.New("not a JSON object")

// splitObject returns the top-level fields of a JSON object, values as
// raw slices of b.
func splitObject(b []byte) ([]field, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	fields := make([]field, 0, 16)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return fields, trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, fmt.Errorf("want a key at byte %d", i)
		}
		end, escaped, err := skipString(b, i)
		if err != nil {
			return nil, err
		}
		var key string
		if escaped {
			if err := json.Unmarshal(b[i:end], &key); err != nil {
				return nil, fmt.Errorf("key at byte %d: %w", i, err)
			}
		} else {
			key = internBytes(b[i+1 : end-1])
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, fmt.Errorf("want ':' at byte %d", i)
		}
		i = skipWS(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return nil, err
		}
		fields = setField(fields, key, b[i:vend])
		i = skipWS(b, vend)
		if i >= len(b) {
			return nil, errors.New("unterminated object")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return fields, trailing(b, i+1)
		default:
			return nil, fmt.Errorf("want ',' or '}' at byte %d", i)
		}
	}
}

func trailing(b []byte, i int) error {
	if skipWS(b, i) != len(b) {
		return fmt.Errorf("data after the object at byte %d", i)
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, nil
		}
	}
	return 0, false, fmt.Errorf("unterminated string at byte %d", i)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing value")
	}
	switch b[i] {
	case '"':
		end, _, err := skipString(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unterminated value at byte %d", i)
	}
	j := i
	for j < len(b) {
		c := b[j]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' || c == '\t' || c == '\r' {
			break
		}
		j++
	}
	if j == i {
		return 0, fmt.Errorf("missing value at byte %d", i)
	}
	return j, nil
}
