package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sort"
	"strings"
)

// WriteKeys resolves write keys to source names. It is safe for concurrent
// use once built.
type WriteKeys struct {
	keys []writeKey
}

type writeKey struct {
	hash   [sha256.Size]byte
	source string
}

// NewWriteKeys builds the key set from a map of write key to source name.
func NewWriteKeys(keys map[string]string) (*WriteKeys, error) {
	w := &WriteKeys{}
	for k, src := range keys {
		if k == "" || src == "" {
			return nil, fmt.Errorf("write key and source must not be empty (source %q)", src)
		}
		w.keys = append(w.keys, writeKey{hash: sha256.Sum256([]byte(k)), source: src})
	}
	// A stable order keeps the compare loop's timing independent of map order.
	sort.Slice(w.keys, func(i, j int) bool { return w.keys[i].source < w.keys[j].source })
	return w, nil
}

// ParseWriteKeys parses "key1=source1,key2=source2".
func ParseWriteKeys(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, src, ok := strings.Cut(pair, "=")
		if !ok || k == "" || src == "" {
			return nil, fmt.Errorf("parse write key %q: want key=source", redact(pair))
		}
		out[k] = src
	}
	return out, nil
}

// Lookup returns the source of a write key. Every configured key is
// compared, in constant time, on every call: neither the position of a
// match nor the length of a common prefix shows in the timing. Comparing
// SHA-256 digests makes all operands the same length.
func (w *WriteKeys) Lookup(key string) (source string, ok bool) {
	h := sha256.Sum256([]byte(key))
	for _, k := range w.keys {
		if subtle.ConstantTimeCompare(h[:], k.hash[:]) == 1 {
			source, ok = k.source, true
		}
	}
	return source, ok
}

// Len returns the number of configured keys.
func (w *WriteKeys) Len() int { return len(w.keys) }

// redact keeps only enough of a secret to recognise it in a log line.
func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:2] + "****"
}
