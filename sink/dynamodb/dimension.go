package dynamodb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/buildtelemetry/pipeline/event"
)

// MaxValueBytes is the longest value counted: longer ones are cut (on a
// UTF-8 boundary) to this many bytes. Versions, platforms and plugin names
// are far shorter; the cap keeps a client sending junk from making items
// that grow by kilobytes per value.
const MaxValueBytes = 128

// Dimension is one property counted per value: the events of a day that
// carry each value.
type Dimension struct {
	// Name is the counter's name, the partition key of its items
	// ("buildVersion"). Letters, digits, '_', '-' and '.'; never rename a
	// dimension in use, its counts would start over under the new name.
	Name string
	// Path is the event property counted, a dotted path as for
	// event.Event.Lookup ("properties.buildVersion"). A string, number or
	// boolean counts as its JSON spelling (18 and "18" are one value). An
	// array counts each distinct element once per event: a scalar element
	// as itself, an object as "<name>@<version>" from its name and version
	// fields (just "<name>" without a version), which is what Netlify
	// Build's properties.plugins holds. Anything else is not counted.
	Path string
}

// DefaultDimensions returns the dimensions counted when Config.Dimensions
// is empty: the fields of Netlify Build's build:ci_build_process_completed
// that teams ask about.
func DefaultDimensions() []Dimension {
	return []Dimension{
		{Name: "buildVersion", Path: "properties.buildVersion"},
		{Name: "nodeVersion", Path: "properties.nodeVersion"},
		{Name: "osPlatform", Path: "properties.osPlatform"},
		{Name: "framework", Path: "properties.framework"},
		{Name: "status", Path: "properties.status"},
		{Name: "plugin", Path: "properties.plugins"},
	}
}

// ParseDimensions parses a comma-separated list of name=path pairs, the
// format of an environment variable:
//
//	buildVersion=properties.buildVersion,plugin=properties.plugins
//
// A bare name stands for name=properties.<name>. Spaces around items are
// ignored. The empty string gives nil (the defaults).
func ParseDimensions(s string) ([]Dimension, error) {
	var dims []Dimension
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		name, path = strings.TrimSpace(name), strings.TrimSpace(path)
		if !ok {
			path = "properties." + name
		}
		dims = append(dims, Dimension{Name: name, Path: path})
	}
	if err := validateDimensions(dims); err != nil {
		return nil, fmt.Errorf("dynamodb: parse dimensions %q: %w", s, err)
	}
	return dims, nil
}

func validateDimensions(dims []Dimension) error {
	seen := map[string]bool{}
	var errs []error
	for i, d := range dims {
		switch {
		case d.Name == "":
			errs = append(errs, fmt.Errorf("dimension %d: empty name", i))
		case strings.IndexFunc(d.Name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
		}) >= 0:
			errs = append(errs, fmt.Errorf("dimension %q: name may hold only letters, digits, '_', '-' and '.'", d.Name))
		case seen[d.Name]:
			errs = append(errs, fmt.Errorf("dimension %q: name used twice", d.Name))
		}
		seen[d.Name] = true
		if d.Path == "" || strings.HasPrefix(d.Path, ".") || strings.HasSuffix(d.Path, ".") || strings.Contains(d.Path, "..") {
			errs = append(errs, fmt.Errorf("dimension %q: invalid path %q", d.Name, d.Path))
		}
	}
	return errors.Join(errs...)
}

// extractor finds the values of every dimension in an event. Dimensions
// under one parent object ("properties.*") share one decoding of it per
// event. It is not safe for concurrent use.
type extractor struct {
	dims    []Dimension
	parents []string // per dimension: the parent path, "" for a top-level field
	leaves  []string // per dimension: the last path step
	cache   map[string]map[string]json.RawMessage
}

func newExtractor(dims []Dimension) *extractor {
	x := &extractor{dims: dims, cache: map[string]map[string]json.RawMessage{}}
	for _, d := range dims {
		parent, leaf := "", d.Path
		if i := strings.LastIndexByte(d.Path, '.'); i >= 0 {
			parent, leaf = d.Path[:i], d.Path[i+1:]
		}
		x.parents = append(x.parents, parent)
		x.leaves = append(x.leaves, leaf)
	}
	return x
}

// values appends to dst the distinct values of dimension i in e.
// reset must be called between events.
func (x *extractor) values(dst []string, e *event.Event, i int) []string {
	raw := x.lookup(e, i)
	if len(raw) == 0 {
		return dst
	}
	if raw[0] != '[' {
		if v, ok := scalarValue(raw); ok {
			dst = append(dst, v)
		}
		return dst
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw, &elems) != nil {
		return dst
	}
	start := len(dst)
	for _, el := range elems {
		v, ok := elementValue(el)
		if ok && !slices.Contains(dst[start:], v) {
			dst = append(dst, v)
		}
	}
	return dst
}

func (x *extractor) reset() { clear(x.cache) }

func (x *extractor) lookup(e *event.Event, i int) json.RawMessage {
	parent, leaf := x.parents[i], x.leaves[i]
	if parent == "" {
		return trimJSON(e.Field(leaf))
	}
	obj, ok := x.cache[parent]
	if !ok {
		if raw, found := e.Lookup(parent); found {
			raw = trimJSON(raw)
			if len(raw) > 0 && raw[0] == '{' {
				_ = json.Unmarshal(raw, &obj) // obj stays nil if it does not decode
			}
		}
		x.cache[parent] = obj
	}
	return trimJSON(obj[leaf])
}

func trimJSON(b json.RawMessage) json.RawMessage { return bytes.TrimSpace(b) }

// scalarValue is a string, number or boolean as a value; null, objects
// and empty strings are not values.
func scalarValue(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '{', '[', 'n':
		return "", false
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return cleanValue(s)
	}
	return cleanValue(string(raw))
}

// elementValue is an array element as a value: a scalar, or an object's
// "name@version".
func elementValue(raw json.RawMessage) (string, bool) {
	raw = trimJSON(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return scalarValue(raw)
	}
	var obj struct {
		Name    json.RawMessage `json:"name"`
		Version json.RawMessage `json:"version"`
	}
	if json.Unmarshal(raw, &obj) != nil {
		return "", false
	}
	name, ok := scalarValue(trimJSON(obj.Name))
	if !ok {
		return "", false
	}
	if version, ok := scalarValue(trimJSON(obj.Version)); ok {
		return cleanValue(name + "@" + version)
	}
	return name, true
}

// cleanValue trims spaces and cuts the value to MaxValueBytes.
func cleanValue(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) > MaxValueBytes {
		s = s[:MaxValueBytes]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s, s != ""
}
