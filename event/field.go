package event

import (
	"encoding/json"
	"slices"
)

// knownNames are the field names most events carry. Keys read from the
// stream are mapped to these strings instead of allocating a copy per
// event.
var knownNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		FieldMessageID, FieldType, FieldEvent, FieldName, FieldUserID, FieldAnonymousID,
		FieldTimestamp, FieldReceivedAt, FieldSource,
		"properties", "context", "traits", "integrations", "sentAt", "originalTimestamp",
		"groupId", "previousId", "category", "version", "channel", "writeKey",
	} {
		m[n] = n
	}
	return m
}()

// internBytes returns b as a string, shared for known field names.
func internBytes(b []byte) string {
	if s, ok := knownNames[string(b)]; ok { // no allocation: the compiler looks up without copying
		return s
	}
	return string(b)
}

func intern(s string) string {
	if k, ok := knownNames[s]; ok {
		return k
	}
	return s
}

// interned reports whether name is one of the shared known names.
func interned(name string) bool {
	_, ok := knownNames[name]
	return ok
}

// setField sets name in fields, replacing an earlier value: in JSON
// objects with repeated keys the last one wins, as encoding/json does.
func setField(fields []field, name string, v json.RawMessage) []field {
	if i := slices.IndexFunc(fields, func(f field) bool { return f.name == name }); i >= 0 {
		fields[i].value = v
		return fields
	}
	return append(fields, field{name, v})
}

// objectField returns the value of key name in the JSON object v,
// without decoding the object. It reports false when v is not an object
// or has no such key; with repeated keys the last one wins.
func objectField(v json.RawMessage, name string) (json.RawMessage, bool) {
	b := []byte(v)
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	var found json.RawMessage
	ok := false
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, false
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		end, escaped, err := skipString(b, i)
		if err != nil {
			return nil, false
		}
		match := false
		if escaped {
			var key string
			match = json.Unmarshal(b[i:end], &key) == nil && key == name
		} else {
			match = string(b[i+1:end-1]) == name
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipWS(b, i+1)
		vend, err := skipValue(b, i)
		if err != nil {
			return nil, false
		}
		if match {
			found, ok = b[i:vend], true
		}
		i = skipWS(b, vend)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return found, ok
		default:
			return nil, false
		}
	}
}
