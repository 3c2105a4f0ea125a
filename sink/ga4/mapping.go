package ga4

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildtelemetry/pipeline/event"
	"github.com/buildtelemetry/pipeline/sink/internal/httpsink"
)

// Limits of the Measurement Protocol.
const (
	// MaxEventsPerRequest is the most events one request may carry.
	MaxEventsPerRequest = 25
	// MaxParams is the most parameters one event may carry.
	MaxParams = 25
	// MaxNameLen bounds event and parameter names.
	MaxNameLen = 40
	// MaxValueLen bounds parameter values, in characters.
	MaxValueLen = 100
	// MaxBodyBytes bounds a request body: it must be under 130 kB.
	MaxBodyBytes = 130_000
	// MaxBackdate is how far back timestamp_micros may date an event.
	MaxBackdate = 72 * time.Hour
	// maxUserIDLen is GA4's limit on user_id.
	maxUserIDLen = 256
)

// backdateMargin keeps timestamp_micros off the edge of the 72-hour
// window: the request takes time to arrive, and an event GA4 finds too old
// is dropped, while one sent without a timestamp is only dated late.
const backdateMargin = time.Minute

// maxDepth bounds how deep nested properties are flattened.
const maxDepth = 4

// Reserved names (the Measurement Protocol reference and
// https://support.google.com/analytics/answer/13316687). Names are
// lower-cased before they are compared, as the mapping lower-cases them.
var (
	reservedEventNames = map[string]bool{
		"ad_activeview": true, "ad_click": true, "ad_exposure": true, "ad_impression": true,
		"ad_query": true, "ad_reward": true, "adunit_exposure": true, "app_background": true,
		"app_clear_data": true, "app_exception": true, "app_remove": true, "app_store_refund": true,
		"app_store_subscription_cancel": true, "app_store_subscription_convert": true,
		"app_store_subscription_renew": true, "app_update": true, "app_upgrade": true,
		"click": true, "dynamic_link_app_open": true, "dynamic_link_app_update": true,
		"dynamic_link_first_open": true, "error": true, "file_download": true,
		"first_open": true, "first_visit": true, "form_start": true, "form_submit": true,
		"in_app_purchase": true, "notification_dismiss": true, "notification_foreground": true,
		"notification_open": true, "notification_receive": true, "os_update": true,
		"page_view": true, "screen_view": true, "scroll": true, "session_start": true,
		"session_start_with_rollout": true, "user_engagement": true, "view_search_results": true,
	}
	// reservedEventPrefixes: the common prefixes, plus video_ (video_start,
	// video_progress, video_complete, listed as video_*).
	reservedEventPrefixes = []string{"_", "firebase_", "ga_", "google_", "gtag.", "video_"}
	// reservedParamNames have a built-in meaning the Measurement Protocol
	// asks for (session_id, engagement_time_msec) or GA4 sets itself: our
	// data never uses them.
	reservedParamNames = map[string]bool{
		"session_id": true, "engagement_time_msec": true, "gclid": true, "session_number": true,
	}
	reservedParamPrefixes = []string{"_", "firebase_", "ga_", "google_", "gtag."}
)

// EventName maps an event name to a legal GA4 event name:
//  1. camelCase boundaries become "_" ("buildComplete" -> "build_Complete"),
//     every run of characters other than ASCII letters and digits becomes
//     one "_", leading and trailing "_" are trimmed, and the result is
//     lower-cased: "build:ci_build_process_completed" ->
//     "build_ci_build_process_completed", "Order Completed" ->
//     "order_completed", "netlifyCI:buildComplete" ->
//     "netlify_ci_build_complete";
//  2. an empty result becomes "unnamed"; one not starting with a letter
//     gets the prefix "e_";
//  3. it is cut to 40 characters (and trailing "_" trimmed);
//  4. a name with a reserved prefix (firebase_, ga_, google_, video_) gets
//     the prefix "e_" (and is cut again); a reserved name ("page_view",
//     "error", ...) gets the suffix "_x" (cut to 38 first).
//
// Names that differ only in case or punctuation map to the same name.
func EventName(name string) string {
	return legalName(name, "e_", reservedEventNames, reservedEventPrefixes)
}

// ParamName maps a property key (nested keys joined with "_") to a legal
// GA4 parameter name by the rules of EventName, with the prefix "p_"
// instead of "e_", and the reserved names session_id,
// engagement_time_msec, gclid and session_number getting the suffix "_x":
// "buildVersion" -> "build_version", "google_ref" -> "p_google_ref",
// "session_id" -> "session_id_x".
func ParamName(key string) string {
	return legalName(key, "p_", reservedParamNames, reservedParamPrefixes)
}

func legalName(s, prefix string, reserved map[string]bool, prefixes []string) string {
	n := snake(s)
	n = cmp.Or(n, "unnamed")
	if !isLetter(n[0]) {
		n = prefix + n
	}
	n = truncName(n, MaxNameLen)
	for _, p := range prefixes {
		if strings.HasPrefix(n, p) {
			n = truncName(prefix+n, MaxNameLen)
			break
		}
	}
	if reserved[n] {
		n = truncName(n, MaxNameLen-2) + "_x"
	}
	return n
}

// snake applies rule 1 of EventName.
func snake(s string) string {
	b := make([]byte, 0, len(s)+4)
	under := func() {
		if len(b) > 0 && b[len(b)-1] != '_' {
			b = append(b, '_')
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUpper(c):
			// A boundary: "aB", "1B", and "ABc" before the B (an acronym
			// ending: "CIBuild" -> "ci_build").
			if i > 0 && (isLower(s[i-1]) || isDigit(s[i-1]) || (isUpper(s[i-1]) && i+1 < len(s) && isLower(s[i+1]))) {
				under()
			}
			b = append(b, c+'a'-'A')
		case isLower(c) || isDigit(c):
			b = append(b, c)
		default:
			under()
		}
	}
	return strings.TrimRight(string(b), "_")
}

func truncName(n string, max int) string {
	if len(n) > max {
		n = n[:max]
	}
	return strings.TrimRight(n, "_")
}

func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool  { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return isUpper(c) || isLower(c) }

// cut returns s cut to at most max characters. Characters are counted in
// UTF-16 code units, as JavaScript (and GA4's limits) count them, so a
// character outside the BMP counts twice: a cut value is within the
// limit whether GA4 counts code points or code units.
func cut(s string, max int) string {
	n := 0
	for i, r := range s {
		w := 1
		if r > 0xFFFF {
			w = 2
		}
		if n+w > max {
			return s[:i]
		}
		n += w
	}
	return s
}

// param is one event parameter: a string or a number.
type param struct {
	name  string
	str   string
	num   string // a JSON number literal, when isNum
	isNum bool
}

// mapped is one event mapped to the Measurement Protocol.
type mapped struct {
	clientID string
	userID   string // "" to omit
	micros   int64  // timestamp_micros, 0 to omit
	name     string
	params   []param
	// dropped counts parameters left out over MaxParams.
	dropped int
}

// errNoIdentity is the cause of events without userId and anonymousId:
// there is nothing to derive a client_id from.
var errNoIdentity = errors.New("no userId or anonymousId to derive client_id from")

// mapper maps events; it holds the settings the mapping depends on.
type mapper struct {
	shared map[string]bool // user IDs shared by many clients
}

// mapEvent maps e for a request sent at now. It reports skip for event
// types GA4 has no event for (identify, group, alias): there is nothing
// to send, and nothing failed.
//
// The mapping:
//   - track: the event name by EventName; page and screen: "page_viewed"
//     and "screen_viewed" (page_view and screen_view are GA4's own), with
//     the page or screen name in the parameter page_name or screen_name;
//   - parameters: see params;
//   - client_id: see clientID;
//   - user_id: userId, unless it is one of the shared IDs (Netlify Build's
//     constant "buildbot_user") or over 256 characters;
//   - timestamp_micros: the event's timestamp when GA4 accepts it: not in
//     the future and at most 72 hours old (less a minute of margin);
//     otherwise omitted, and GA4 dates the event on arrival.
func (m *mapper) mapEvent(e *event.Event, now time.Time) (out mapped, skip bool, err error) {
	var first []param
	switch e.Type {
	case event.Track:
		out.name = EventName(e.Name)
	case event.Page, event.Screen:
		out.name = string(e.Type) + "_viewed"
		if s := cut(e.Name, MaxValueLen); s != "" {
			first = append(first, param{name: string(e.Type) + "_name", str: s})
		}
	default:
		return out, true, nil
	}
	var props []kv
	if raw := e.Field(event.FieldProperties); len(raw) > 0 {
		v, err := decodeOrdered(raw)
		if err != nil {
			return out, false, fmt.Errorf("ga4: decode properties of %s: %w", e.MessageID, err)
		}
		props, _ = v.([]kv) // not an object: no parameters
	}
	out.params, out.dropped = params(first, props)
	if out.clientID, err = clientID(e, props); err != nil {
		return out, false, fmt.Errorf("ga4: map event %s: %w", e.MessageID, err)
	}
	if e.UserID != "" && !m.shared[e.UserID] && len(e.UserID) <= maxUserIDLen {
		out.userID = e.UserID
	}
	if ts := e.Timestamp; !ts.IsZero() && !ts.After(now) && now.Sub(ts) <= MaxBackdate-backdateMargin {
		out.micros = ts.UnixMicro()
	}
	return out, false, nil
}

// clientID derives a stable client_id: the first 8 bytes of the SHA-256 of
// the event's identity, formatted like GA's own "<uint32>.<uint32>". The
// identity is the anonymousId when there is one; else the userId with the
// site: properties.siteId (or site_id) when present, else the event's
// source. Netlify Build's userId is a constant, so its builds are told
// apart by site.
func clientID(e *event.Event, props []kv) (string, error) {
	var key string
	switch {
	case e.AnonymousID != "":
		key = "anonymousId\x00" + e.AnonymousID
	case e.UserID != "":
		site := "source\x00" + e.Source
		for _, f := range props {
			if f.key == "siteId" || f.key == "site_id" {
				if s, ok := scalar(f.val); ok && s != "" {
					site = "site\x00" + s
					break
				}
			}
		}
		key = "userId\x00" + e.UserID + "\x00" + site
	default:
		return "", errNoIdentity
	}
	h := sha256.Sum256([]byte(key))
	b := strconv.AppendUint(make([]byte, 0, 21), uint64(binary.BigEndian.Uint32(h[0:4])), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(binary.BigEndian.Uint32(h[4:8])), 10)
	return string(b), nil
}

// params flattens properties into at most MaxParams parameters, after
// first. The priority, which decides what is kept over 25:
//  1. first (the page or screen name);
//  2. the top-level properties, scalars in the order the client wrote
//     them, then the summaries of arrays;
//  3. nested objects, level by level (breadth first, at most 4 deep),
//     each the same way; a nested key is the keys joined with "_"
//     ("repo": {"provider": ...} -> repo_provider).
//
// Names are mapped by ParamName; a name already taken (two keys that map
// alike, or an array's count that the client also sent, like Netlify's
// pluginCount) keeps the first value. Values:
//   - strings are cut to 100 characters; empty strings and nulls are left
//     out (they would take a slot and say nothing);
//   - numbers are kept as numbers, as written;
//   - booleans become the strings "true" and "false": a custom dimension
//     is a string, and a 1 would be summed as a metric;
//   - an array "xs" becomes "x_count", its length (a plural s is dropped:
//     "plugins" -> "plugin_count", "dependencies" -> "dependency_count"),
//     and "xs", its elements joined with "," and cut to 100 characters;
//     an object element is named by its "name", "id", "key" or "type"
//     string, and elements that are arrays or unnamed objects are only
//     counted.
func params(first []param, props []kv) ([]param, int) {
	out := make([]param, 0, MaxParams)
	dropped := 0
	add := func(p param) {
		for _, q := range out {
			if q.name == p.name {
				return
			}
		}
		if len(out) == MaxParams {
			dropped++
			return
		}
		out = append(out, p)
	}
	for _, p := range first {
		add(p)
	}
	type level struct {
		prefix string
		depth  int
		obj    []kv
	}
	queue := []level{{"", 0, props}}
	for len(queue) > 0 {
		l := queue[0]
		queue = queue[1:]
		for _, f := range l.obj {
			if p, ok := scalarParam(l.prefix+f.key, f.val); ok {
				add(p)
			}
		}
		for _, f := range l.obj {
			if arr, ok := f.val.([]any); ok {
				add(param{name: ParamName(l.prefix + singular(f.key) + "_count"), num: strconv.Itoa(len(arr)), isNum: true})
				if s := joinArray(arr); s != "" {
					add(param{name: ParamName(l.prefix + f.key), str: s})
				}
			}
		}
		for _, f := range l.obj {
			if obj, ok := f.val.([]kv); ok && l.depth+1 < maxDepth {
				queue = append(queue, level{l.prefix + f.key + "_", l.depth + 1, obj})
			}
		}
	}
	return out, dropped
}

// scalarParam maps one scalar property, reporting false for what is left
// out (nulls, empty strings, objects and arrays).
func scalarParam(key string, v any) (param, bool) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return param{}, false
		}
		return param{name: ParamName(key), str: cut(v, MaxValueLen)}, true
	case json.Number:
		if len(v) > MaxValueLen {
			return param{name: ParamName(key), str: cut(string(v), MaxValueLen)}, true
		}
		return param{name: ParamName(key), num: string(v), isNum: true}, true
	case bool:
		return param{name: ParamName(key), str: strconv.FormatBool(v)}, true
	}
	return param{}, false
}

// singular drops a plural s from an array's key, for its count.
func singular(key string) string {
	switch {
	case strings.HasSuffix(key, "ies") && len(key) > 3:
		return key[:len(key)-3] + "y"
	case strings.HasSuffix(key, "s") && len(key) > 1 && !strings.HasSuffix(key, "ss") &&
		!strings.HasSuffix(key, "us") && !strings.HasSuffix(key, "is"):
		return key[:len(key)-1]
	}
	return key
}

// joinArray joins the names of an array's elements with ",", cut to
// MaxValueLen.
func joinArray(arr []any) string {
	var b strings.Builder
	for _, v := range arr {
		s, ok := scalar(v)
		if !ok {
			if obj, isObj := v.([]kv); isObj {
				s, ok = label(obj)
			}
		}
		if !ok || s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
		if b.Len() > 4*MaxValueLen { // enough to cut from
			break
		}
	}
	return cut(b.String(), MaxValueLen)
}

// label names an object element of an array.
func label(obj []kv) (string, bool) {
	for _, k := range []string{"name", "id", "key", "type"} {
		for _, f := range obj {
			if f.key == k {
				if s, ok := f.val.(string); ok && s != "" {
					return s, true
				}
			}
		}
	}
	return "", false
}

// scalar returns a string, number or boolean value as text.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// kv is one member of a JSON object decoded in order: GA4's parameter
// priority follows the order the client wrote.
type kv struct {
	key string
	val any // string, json.Number, bool, nil, []kv (object) or []any (array)
}

// decodeOrdered decodes JSON keeping the order of object members.
func decodeOrdered(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return decodeValue(dec)
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		obj := []kv{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string) // object keys are strings
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			obj = append(obj, kv{k, v})
		}
		_, err = dec.Token() // '}'
		return obj, err
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err = dec.Token() // ']'
		return arr, err
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// appendEvent appends m's event object: {"name":...,"params":{...}}.
// Names are legal by construction, so they need no escaping.
func appendEvent(dst []byte, m *mapped) []byte {
	dst = append(dst, `{"name":"`...)
	dst = append(dst, m.name...)
	dst = append(dst, '"')
	if len(m.params) > 0 {
		dst = append(dst, `,"params":{`...)
		for i, p := range m.params {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = append(dst, p.name...)
			dst = append(dst, `":`...)
			if p.isNum {
				dst = append(dst, p.num...)
			} else {
				dst = httpsink.AppendString(dst, p.str)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// sortedPositions returns the keys of m in order.
func sortedPositions[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
