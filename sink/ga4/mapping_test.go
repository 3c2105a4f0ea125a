package ga4

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/buildtelemetry/pipeline/event"
)

func TestEventName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"build:ci_build_process_completed", "build_ci_build_process_completed"},
		{"netlifyCI:buildComplete", "netlify_ci_build_complete"},
		{"cli:sites_create", "cli_sites_create"},
		{"Order Completed", "order_completed"},
		{"HTTPServerError", "http_server_error"},
		{"  spaced -- out  ", "spaced_out"},
		{"_private", "private"},
		{"2fa enabled", "e_2fa_enabled"},
		{"", "unnamed"},
		{":::", "unnamed"},
		{"déployé", "d_ploy"},
		// Reserved names get _x, reserved prefixes e_.
		{"page_view", "page_view_x"},
		{"Page View", "page_view_x"},
		{"error", "error_x"},
		{"session_start", "session_start_x"},
		{"first_visit", "first_visit_x"},
		{"firebase_campaign", "e_firebase_campaign"},
		{"google:click", "e_google_click"},
		{"ga_session", "e_ga_session"},
		{"video_start", "e_video_start"},
		{"gtag.config", "gtag_config"}, // the dot goes, and with it the prefix
		// 40 characters at most, never ending in _.
		{strings.Repeat("abcd_", 12), "abcd_abcd_abcd_abcd_abcd_abcd_abcd_abcd"},
		{strings.Repeat("a", 41), strings.Repeat("a", 40)},
		{"google_" + strings.Repeat("x", 40), "e_google_" + strings.Repeat("x", 31)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := EventName(tc.in); got != tc.want {
				t.Errorf("EventName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParamName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"buildVersion", "build_version"},
		{"siteId", "site_id"},
		{"osName", "os_name"},
		{"repo_provider", "repo_provider"},
		{"session_id", "session_id_x"},
		{"sessionId", "session_id_x"},
		{"engagement_time_msec", "engagement_time_msec_x"},
		{"gclid", "gclid_x"},
		{"session_number", "session_number_x"},
		{"ga_client", "p_ga_client"},
		{"google_ref", "p_google_ref"},
		{"firebase_x", "p_firebase_x"},
		{"_meta", "meta"},
		{"1st", "p_1st"},
		{strings.Repeat("long", 12), strings.Repeat("long", 10)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := ParamName(tc.in); got != tc.want {
				t.Errorf("ParamName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

var mapNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// parse returns the event of raw JSON, as the worker reads it.
func parse(t testing.TB, raw string) *event.Event {
	t.Helper()
	e, err := event.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	return e
}

// show renders params as name=value, numbers bare and strings quoted.
func show(ps []param) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		if p.isNum {
			fmt.Fprintf(&b, "%s=%s", p.name, p.num)
		} else {
			fmt.Fprintf(&b, "%s=%q", p.name, p.str)
		}
	}
	return b.String()
}

func track(props string) string {
	return `{"messageId":"m1","type":"track","event":"Build","anonymousId":"a1","properties":` + props + `}`
}

func TestMapParams(t *testing.T) {
	many := func(n int) string {
		var kv []string
		for i := range n {
			kv = append(kv, fmt.Sprintf(`"p%02d":%d`, i, i))
		}
		return "{" + strings.Join(kv, ",") + "}"
	}
	for _, tc := range []struct {
		name    string
		raw     string
		want    string
		dropped int
	}{
		{"scalars in client order", track(`{"status":"success","steps":4,"duration":45678.5}`),
			`status="success" steps=4 duration=45678.5`, 0},
		{"booleans as strings", track(`{"isCI":true,"isNetlifyCI":false}`), `is_ci="true" is_netlify_ci="false"`, 0},
		{"null and empty left out", track(`{"a":null,"b":"","c":"x"}`), `c="x"`, 0},
		{"long value cut to 100", track(`{"msg":"` + strings.Repeat("é", 150) + `"}`), `msg="` + strings.Repeat("é", 100) + `"`, 0},
		{"astral characters count twice", track(`{"msg":"` + strings.Repeat("🚀", 60) + `"}`), `msg="` + strings.Repeat("🚀", 50) + `"`, 0},
		{"nested objects joined with _", track(`{"repo":{"provider":"github","private":true,"owner":{"type":"org"}},"v":1}`),
			`v=1 repo_provider="github" repo_private="true" repo_owner_type="org"`, 0},
		{"nesting deeper than 4 left out", track(`{"a":{"b":{"c":{"d":{"e":1}},"x":2}}}`), `a_b_x=2`, 0},
		{"array of objects summarised", track(`{"plugins":[{"name":"@netlify/plugin-nextjs","version":"5"},{"name":"netlify-plugin-cache"}]}`),
			`plugin_count=2 plugins="@netlify/plugin-nextjs,netlify-plugin-cache"`, 0},
		{"client's own count wins", track(`{"plugins":[{"name":"a"}],"pluginCount":1}`), `plugin_count=1 plugins="a"`, 0},
		{"scalar array", track(`{"tags":["x",2,true],"dependencies":["a"]}`), `tag_count=3 tags="x,2,true" dependency_count=1 dependencies="a"`, 0},
		{"empty array counted", track(`{"errors":[]}`), `error_count=0`, 0},
		{"unnamed elements only counted", track(`{"matrix":[[1],[2]],"objs":[{"v":1}]}`), `matrix_count=2 obj_count=1`, 0},
		{"long list cut", track(`{"plugins":[` + strings.TrimSuffix(strings.Repeat(`"netlify-plugin-0123456789",`, 10), ",") + `]}`),
			`plugin_count=10 plugins="` + strings.Repeat("netlify-plugin-0123456789,", 4)[:100] + `"`, 0},
		{"reserved names renamed", track(`{"session_id":"s","gclid":"g","google_tag":"t"}`), `session_id_x="s" gclid_x="g" p_google_tag="t"`, 0},
		{"first of colliding names kept", track(`{"siteId":"a","site_id":"b"}`), `site_id="a"`, 0},
		{"25 kept of 30", track(many(30)), strings.TrimSpace(func() string {
			var s string
			for i := range 25 {
				s += fmt.Sprintf("p%02d=%d ", i, i)
			}
			return s
		}()), 5},
		{"scalars before arrays before nested", track(`{"n":{"x":1},"arr":[1],` + many(23)[1:]), strings.TrimSpace(func() string {
			var s string
			for i := range 23 {
				s += fmt.Sprintf("p%02d=%d ", i, i)
			}
			return s + `arr_count=1 arr="1"`
		}()), 1},
		{"page name first", `{"messageId":"m1","type":"page","name":"Pricing","anonymousId":"a","properties":{"path":"/pricing"}}`,
			`page_name="Pricing" path="/pricing"`, 0},
		{"properties not an object", `{"messageId":"m1","type":"track","event":"e","anonymousId":"a","properties":[1]}`, ``, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, skip, err := (&mapper{}).mapEvent(parse(t, tc.raw), mapNow)
			if err != nil || skip {
				t.Fatalf("mapEvent: skip %t, err %v", skip, err)
			}
			if got := show(m.params); got != tc.want {
				t.Errorf("params:\n got %s\nwant %s", got, tc.want)
			}
			if m.dropped != tc.dropped {
				t.Errorf("dropped %d, want %d", m.dropped, tc.dropped)
			}
		})
	}
}

func TestMapEventNameAndType(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      string // "" for skipped
	}{
		{"track", `{"messageId":"m","type":"track","event":"build:ci_build_process_completed","userId":"u"}`, "build_ci_build_process_completed"},
		{"reserved track", `{"messageId":"m","type":"track","event":"Page View","userId":"u"}`, "page_view_x"},
		{"page", `{"messageId":"m","type":"page","name":"Home","userId":"u"}`, "page_viewed"},
		{"screen", `{"messageId":"m","type":"screen","userId":"u"}`, "screen_viewed"},
		{"identify skipped", `{"messageId":"m","type":"identify","userId":"u","traits":{"email":"a@b.c"}}`, ""},
		{"group skipped", `{"messageId":"m","type":"group","userId":"u","groupId":"g"}`, ""},
		{"alias skipped", `{"messageId":"m","type":"alias","userId":"u","previousId":"p"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, skip, err := (&mapper{}).mapEvent(parse(t, tc.raw), mapNow)
			if err != nil {
				t.Fatal(err)
			}
			if skip != (tc.want == "") || m.name != tc.want {
				t.Errorf("got name %q skip %t, want %q", m.name, skip, tc.want)
			}
		})
	}
}

var clientIDFormat = regexp.MustCompile(`^[0-9]{1,10}\.[0-9]{1,10}$`)

func TestClientID(t *testing.T) {
	m := &mapper{shared: map[string]bool{"buildbot_user": true}}
	id := func(raw string) string {
		t.Helper()
		out, _, err := m.mapEvent(parse(t, raw), mapNow)
		if err != nil {
			t.Fatal(err)
		}
		if !clientIDFormat.MatchString(out.clientID) {
			t.Errorf("client_id %q is not <uint32>.<uint32>", out.clientID)
		}
		return out.clientID
	}
	bot := func(site string) string {
		return `{"messageId":"m","type":"track","event":"e","userId":"buildbot_user","source":"netlify-build","properties":{"siteId":"` + site + `"}}`
	}
	siteA := id(bot("site-a"))
	for _, tc := range []struct {
		name, raw string
		same      bool
	}{
		{"same site, other event", `{"messageId":"other","type":"track","event":"x","userId":"buildbot_user","properties":{"status":"ok","siteId":"site-a"}}`, true},
		{"other site", bot("site-b"), false},
		{"no site: by source", `{"messageId":"m","type":"track","event":"e","userId":"buildbot_user","source":"netlify-build"}`, false},
		{"anonymousId wins over the site", `{"messageId":"m","type":"track","event":"e","userId":"buildbot_user","anonymousId":"a1","properties":{"siteId":"site-a"}}`, false},
		{"site_id spelling", `{"messageId":"m","type":"track","event":"e","userId":"buildbot_user","properties":{"site_id":"site-a"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := id(tc.raw); (got == siteA) != tc.same {
				t.Errorf("client_id %q vs site-a's %q: same = %t, want %t", got, siteA, got == siteA, tc.same)
			}
		})
	}
	if a, b := id(`{"messageId":"1","type":"track","event":"e","anonymousId":"x"}`), id(`{"messageId":"2","type":"page","anonymousId":"x"}`); a != b {
		t.Errorf("same anonymousId: %q vs %q, want stable", a, b)
	}
	_, _, err := m.mapEvent(parse(t, `{"messageId":"m","type":"track","event":"e"}`), mapNow)
	if !errors.Is(err, errNoIdentity) {
		t.Errorf("no identity: got %v, want errNoIdentity", err)
	}
}

func TestUserIDAndTimestamp(t *testing.T) {
	m := &mapper{shared: map[string]bool{"buildbot_user": true}}
	ev := func(user string, ts time.Time) string {
		return fmt.Sprintf(`{"messageId":"m","type":"track","event":"e","userId":%q,"timestamp":%q}`, user, ts.Format(event.TimeLayout))
	}
	for _, tc := range []struct {
		name       string
		user       string
		ts         time.Time
		wantUser   string
		wantMicros bool
	}{
		{"shared user omitted", "buildbot_user", mapNow.Add(-time.Hour), "", true},
		{"own user kept", "user-42", mapNow.Add(-time.Hour), "user-42", true},
		{"user over 256 omitted", strings.Repeat("u", 257), mapNow, "", true},
		{"71 h old kept", "u", mapNow.Add(-71 * time.Hour), "u", true},
		{"at the edge, within the margin, omitted", "u", mapNow.Add(-MaxBackdate + 30*time.Second), "u", false},
		{"73 h old omitted", "u", mapNow.Add(-73 * time.Hour), "u", false},
		{"future omitted", "u", mapNow.Add(time.Minute), "u", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := m.mapEvent(parse(t, ev(tc.user, tc.ts)), mapNow)
			if err != nil {
				t.Fatal(err)
			}
			if out.userID != tc.wantUser {
				t.Errorf("user_id %q, want %q", out.userID, tc.wantUser)
			}
			if got := out.micros != 0; got != tc.wantMicros {
				t.Errorf("timestamp_micros %d, want set = %t", out.micros, tc.wantMicros)
			}
			if tc.wantMicros && out.micros != tc.ts.UnixMicro() {
				t.Errorf("timestamp_micros %d, want %d", out.micros, tc.ts.UnixMicro())
			}
		})
	}
}
