package profileapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/recommend"
	"github.com/streamcdp/streamcdp/processors/segments"
)

// Fakes of the stores: a survivor "p1" with an alias "old" merged into it,
// a profile "bare" no other store has seen, and "broken" whose reads fail.

type fakeIdentities struct{}

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func (fakeIdentities) Lookup(_ context.Context, id identity.Identifier) (string, bool, error) {
	switch id.Type + "=" + id.Value {
	case "email=ann@example.com", "profile_id=p1", "profile_id=old":
		return "p1", true, nil
	case "profile_id=bare":
		return "bare", true, nil
	case "profile_id=broken":
		return "broken", true, nil
	case "email=slow@example.com":
		return "", false, fmt.Errorf("looking up: %w", context.DeadlineExceeded)
	}
	return "", false, nil
}

func (fakeIdentities) Profile(_ context.Context, id string) (string, []identity.Identifier, error) {
	switch id {
	case "p1", "old":
		return "p1", []identity.Identifier{{Type: "email", Value: "ann@example.com"}, {Type: "user_id", Value: "u1"}}, nil
	case "bare", "broken":
		return id, []identity.Identifier{{Type: "anonymous_id", Value: "a-" + id}}, nil
	case "slow":
		return "", nil, fmt.Errorf("reading: %w", context.DeadlineExceeded)
	}
	return "", nil, fmt.Errorf("%w: %s", identity.ErrNotFound, id)
}

// The fakes' Queue methods answer at once: nothing goes on the pipeline.

func (f fakeIdentities) QueueProfile(ctx context.Context, _ redis.Pipeliner, id string) func() (string, []identity.Identifier, error) {
	return func() (string, []identity.Identifier, error) { return f.Profile(ctx, id) }
}

func (f fakeIdentities) QueueProfileOf(ctx context.Context, _ redis.Pipeliner, id identity.Identifier) func() (string, []identity.Identifier, error) {
	return func() (string, []identity.Identifier, error) {
		p, ok, err := f.Lookup(ctx, id)
		if err != nil {
			return "", nil, err
		}
		if !ok {
			return "", nil, identity.ErrNotFound
		}
		return f.Profile(ctx, p)
	}
}

type fakeFeatures struct{}

func (f fakeFeatures) QueueProfile(ctx context.Context, _ redis.Pipeliner, id string, at time.Time) func() (*features.Profile, error) {
	return func() (*features.Profile, error) { return f.Profile(ctx, id, at) }
}

func (fakeFeatures) Profile(_ context.Context, id string, at time.Time) (*features.Profile, error) {
	switch id {
	case "p1":
		return &features.Profile{ID: id, Version: 7, At: at, LatestEvent: t0,
			Features: map[string]any{"orders_30d": 2.0, "favourite_category_90d": "Kitchen", "last_order_at": nil},
			Traits:   map[string]json.RawMessage{"plan": json.RawMessage(`"pro"`)}}, nil
	case "broken":
		return nil, errors.New("decoding the stored state: corrupt")
	}
	return nil, features.ErrNotFound
}

type fakeSegments struct{}

func (f fakeSegments) QueueMembers(ctx context.Context, _ redis.Pipeliner, id string) func() ([]segments.Membership, string, error) {
	return func() ([]segments.Membership, string, error) { return f.Members(ctx, id) }
}

func (fakeSegments) Members(_ context.Context, id string) ([]segments.Membership, string, error) {
	if id == "p1" {
		return []segments.Membership{{Segment: "high_value", Since: t0}}, id, nil
	}
	return nil, id, segments.ErrNotFound
}

type fakeRecs struct{}

func (f fakeRecs) QueueRecommendations(ctx context.Context, _ redis.Pipeliner, id string) func() (*recommend.List, error) {
	return func() (*recommend.List, error) { return f.Recommendations(ctx, id) }
}

func (f fakeRecs) QueueScores(ctx context.Context, _ redis.Pipeliner, id string) func() (*recommend.Scores, error) {
	return func() (*recommend.Scores, error) { return f.Scores(ctx, id) }
}

func (fakeRecs) Recommendations(_ context.Context, id string) (*recommend.List, error) {
	if id != "p1" {
		return nil, nil
	}
	return &recommend.List{ProfileID: id, Version: 3, Model: "assoc-v1", Time: t0,
		Items: []recommend.Item{{ProductID: "22423", Score: 0.9, Reason: recommend.ReasonRepeat}}}, nil
}

func (fakeRecs) Scores(_ context.Context, id string) (*recommend.Scores, error) {
	if id != "p1" {
		return nil, nil
	}
	clv := 120.5
	return &recommend.Scores{ProfileID: id, Version: 2, Time: t0, Model: "bgnbd", Orders: 3, Revenue: 99.5, FirstOrder: t0.AddDate(0, -2, 0),
		LastOrder: t0, R: 5, F: 4, M: 3, RFMSegment: "champions", CLV: &clv, HorizonDays: 365, ChurnDays: 90}, nil
}

type fakeEvents struct{ evs []Event }

func (f fakeEvents) RecentEvents(_ context.Context, _ string, after Cursor, limit int) ([]Event, bool, error) {
	i := 0
	if !after.IsZero() {
		for i < len(f.evs) && f.evs[i].MessageID != after.MessageID {
			i++
		}
		i++
	}
	end := min(i+limit, len(f.evs))
	return f.evs[i:end], end < len(f.evs), nil
}

const goodToken = "0123456789abcdef-good"

func newTestHandler(t testing.TB, events EventStore, o Options) (http.Handler, *prometheus.Registry) {
	t.Helper()
	// The fakes queue nothing, so the pipelines never reach this address.
	unused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = unused.Close() })
	s := NewService(Stores{Redis: unused, Identities: fakeIdentities{}, Features: fakeFeatures{}, Segments: fakeSegments{}, Recommendations: fakeRecs{},
		Events: events, IdentifierTypes: []string{"user_id", "email"}, Now: func() time.Time { return t0.Add(time.Hour) }})
	if o.Tokens == nil {
		tok, err := ParseTokens(goodToken, "")
		if err != nil {
			t.Fatal(err)
		}
		o.Tokens = tok
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	h, err := NewHandler(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return h, reg
}

type handlerCase struct {
	name       string
	method     string
	target     string
	token      string // "-" for no Authorization header
	events     EventStore
	ready      error
	badRequest bool // the request breaks the document on purpose
	status     int
	code       string
	check      func(t *testing.T, body []byte)
}

func profileOf(t *testing.T, body []byte) Profile {
	t.Helper()
	var p Profile
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return p
}

func handlerCases() []handlerCase {
	evs := fakeEvents{evs: []Event{
		{MessageID: "m3", Type: "track", Event: "Order Completed", Timestamp: t0.Add(3 * time.Minute)},
		{MessageID: "m2", Type: "page", Timestamp: t0.Add(2 * time.Minute)},
		{MessageID: "m1", Type: "identify", Timestamp: t0.Add(time.Minute)},
	}}
	return []handlerCase{
		{name: "no token", target: "/v1/profiles/p1", token: "-", status: 401, code: CodeUnauthorized},
		{name: "wrong token", target: "/v1/profiles/p1", token: "0123456789abcdef-bad!", status: 401, code: CodeUnauthorized},
		{name: "token of the right length but wrong", target: "/v1/profiles/p1", token: strings.Repeat("x", len(goodToken)), status: 401, code: CodeUnauthorized},
		{name: "by-identifier needs a token too", target: "/v1/profiles/by-identifier?type=email&value=ann@example.com", token: "-", status: 401, code: CodeUnauthorized},
		{name: "by profile id", target: "/v1/profiles/p1", status: 200, check: func(t *testing.T, b []byte) {
			p := profileOf(t, b)
			if p.ProfileID != "p1" || p.RequestedID != "p1" || p.Merged || p.Identifier != nil {
				t.Errorf("ids: %+v", p)
			}
			if len(p.Identities) != 2 || p.Identities[0] != (Identifier{"email", "ann@example.com"}) {
				t.Errorf("identities %+v", p.Identities)
			}
			if p.Features["orders_30d"] != 2.0 || p.Features["favourite_category_90d"] != "Kitchen" || p.Features["last_order_at"] != nil {
				t.Errorf("features %v", p.Features)
			}
			if _, ok := p.Features["last_order_at"]; !ok {
				t.Error("a feature without a value must be present as null")
			}
			if string(p.Traits["plan"]) != `"pro"` || p.FeaturesVersion != 7 || !p.LatestEventAt.Equal(t0) || !p.FeaturesAt.Equal(t0.Add(time.Hour)) {
				t.Errorf("traits %s version %d latest %v at %v", p.Traits["plan"], p.FeaturesVersion, p.LatestEventAt, p.FeaturesAt)
			}
			if len(p.Segments) != 1 || p.Segments[0].Segment != "high_value" || !p.Segments[0].EnteredAt.Equal(t0) {
				t.Errorf("segments %+v", p.Segments)
			}
			if p.Recommendations == nil || p.Recommendations.Items[0].ProductID != "22423" || p.Recommendations.Version != 3 {
				t.Errorf("recommendations %+v", p.Recommendations)
			}
			if p.Scores == nil || *p.Scores.CLV != 120.5 || p.Scores.RFMSegment != "champions" || p.Scores.PAlive != nil {
				t.Errorf("scores %+v", p.Scores)
			}
		}},
		{name: "merged-away id resolves to the survivor", target: "/v1/profiles/old", status: 200, check: func(t *testing.T, b []byte) {
			p := profileOf(t, b)
			if p.ProfileID != "p1" || p.RequestedID != "old" || !p.Merged || p.FeaturesVersion != 7 {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "profile only the graph knows", target: "/v1/profiles/bare", status: 200, check: func(t *testing.T, b []byte) {
			p := profileOf(t, b)
			if len(p.Features) != 0 || len(p.Segments) != 0 || p.Recommendations != nil || p.Scores != nil || p.LatestEventAt != nil {
				t.Errorf("got %+v", p)
			}
			if !strings.Contains(string(b), `"segments":[]`) || !strings.Contains(string(b), `"features":{}`) {
				t.Errorf("empty collections must be [] and {}, not null: %s", b)
			}
		}},
		{name: "unknown profile", target: "/v1/profiles/nobody", status: 404, code: CodeNotFound},
		{name: "profile id too long", target: "/v1/profiles/" + strings.Repeat("x", 300), badRequest: true, status: 400, code: CodeInvalidArgument},
		{name: "profile store timeout", target: "/v1/profiles/slow", status: 503, code: CodeUnavailable},
		{name: "by email, case and spaces as the graph normalises", target: "/v1/profiles/by-identifier?type=email&value=ann@example.com", status: 200, check: func(t *testing.T, b []byte) {
			p := profileOf(t, b)
			if p.ProfileID != "p1" || p.Identifier == nil || *p.Identifier != (Identifier{"email", "ann@example.com"}) {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "by profile_id identifier", target: "/v1/profiles/by-identifier?type=profile_id&value=old", status: 200, check: func(t *testing.T, b []byte) {
			if p := profileOf(t, b); p.ProfileID != "p1" {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "unknown email", target: "/v1/profiles/by-identifier?type=email&value=bob@example.com", status: 404, code: CodeNotFound},
		{name: "unknown identifier type", target: "/v1/profiles/by-identifier?type=shoe_size&value=9", status: 400, code: CodeInvalidArgument},
		{name: "missing value", target: "/v1/profiles/by-identifier?type=email", badRequest: true, status: 400, code: CodeInvalidArgument},
		{name: "store timeout", target: "/v1/profiles/by-identifier?type=email&value=slow@example.com", status: 503, code: CodeUnavailable},
		{name: "by-identifier store failure", target: "/v1/profiles/by-identifier?type=profile_id&value=broken", status: 500, code: CodeInternal},
		{name: "store failure", target: "/v1/profiles/broken", status: 500, code: CodeInternal, check: func(t *testing.T, b []byte) {
			if strings.Contains(string(b), "corrupt") {
				t.Errorf("internal details leaked to the client: %s", b)
			}
		}},
		{name: "write method", method: "POST", target: "/v1/profiles/p1", status: 405, code: CodeMethodNotAllowed},
		{name: "unknown route", target: "/v2/whatever", status: 404, code: CodeNotFound},
		{name: "unknown route without a token", target: "/v2/whatever", token: "-", status: 401, code: CodeUnauthorized},
		{name: "healthz needs no token", target: "/healthz", token: "-", status: 200},
		{name: "readyz", target: "/readyz", token: "-", status: 200},
		{name: "readyz with a store down", target: "/readyz", token: "-", ready: errors.New("redis: connection refused"), status: 503, code: CodeUnavailable},
		{name: "openapi.json needs no token", target: "/openapi.json", token: "-", status: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"openapi":"3.0.3"`) {
				t.Errorf("not the document: %.100s", b)
			}
		}},
		{name: "events without a warehouse", target: "/v1/profiles/p1/events", status: 501, code: CodeEventsUnavailable},
		{name: "events, first page", target: "/v1/profiles/old/events?limit=2", events: evs, status: 200, check: func(t *testing.T, b []byte) {
			var p EventPage
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if p.ProfileID != "p1" || len(p.Events) != 2 || p.Events[0].MessageID != "m3" || p.NextCursor == "" {
				t.Errorf("got %+v", p)
			}
			c, err := DecodeCursor(p.NextCursor)
			if err != nil || c.MessageID != "m2" || !c.Time.Equal(t0.Add(2*time.Minute)) {
				t.Errorf("cursor %+v %v", c, err)
			}
		}},
		{name: "events, last page", target: "/v1/profiles/p1/events?limit=2&cursor=" + Cursor{Time: t0.Add(2 * time.Minute), MessageID: "m2"}.Encode(), events: evs, status: 200, check: func(t *testing.T, b []byte) {
			var p EventPage
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Events) != 1 || p.Events[0].MessageID != "m1" || p.NextCursor != "" {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "events of an unknown profile", target: "/v1/profiles/nobody/events", events: evs, status: 404, code: CodeNotFound},
		{name: "events, limit out of range", target: "/v1/profiles/p1/events?limit=0", events: evs, badRequest: true, status: 400, code: CodeInvalidArgument},
		{name: "events, limit not a number", target: "/v1/profiles/p1/events?limit=ten", events: evs, badRequest: true, status: 400, code: CodeInvalidArgument},
		{name: "events, bad cursor", target: "/v1/profiles/p1/events?cursor=!!", events: evs, status: 400, code: CodeInvalidArgument},
		{name: "events, store timeout", target: "/v1/profiles/p1/events", events: failingEvents{}, status: 503, code: CodeUnavailable},
		{name: "events, store failure", target: "/v1/profiles/p1/events", events: failingEvents{err: errors.New("bad row")}, status: 500, code: CodeInternal},
		{name: "events need a token", target: "/v1/profiles/p1/events", token: "-", events: evs, status: 401, code: CodeUnauthorized},
	}
}

type failingEvents struct{ err error }

func (f failingEvents) RecentEvents(context.Context, string, Cursor, int) ([]Event, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	return nil, false, context.DeadlineExceeded
}

// TestHandlers runs every case and checks each exchange against the
// OpenAPI document; together the cases must produce every documented
// response of every operation.
func TestHandlers(t *testing.T) {
	conf := newConformance(t)
	for _, tc := range handlerCases() {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{}
			if tc.ready != nil {
				o.Ready = []func(context.Context) error{func(context.Context) error { return tc.ready }}
			}
			h, _ := newTestHandler(t, tc.events, o)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, tc.target, nil)
			switch tc.token {
			case "":
				req.Header.Set("Authorization", "Bearer "+goodToken)
			case "-":
			default:
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.code != "" {
				var e errorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
					t.Errorf("error body %s, want code %s", body, tc.code)
				}
			}
			if tc.status == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
			if tc.check != nil {
				tc.check(t, body)
			}
			if tc.status == 405 || strings.HasPrefix(tc.target, "/v2/") {
				return // not in the document by design
			}
			if err := conf.check(req, rec.Code, rec.Header(), body, tc.badRequest); err != nil {
				t.Error(err)
			}
		})
	}
	if m := conf.missing(); len(m) > 0 {
		t.Errorf("documented responses no case produced:\n%s", strings.Join(m, "\n"))
	}
}

func TestNoAuthMode(t *testing.T) {
	// The fakes queue nothing, so the pipelines never reach this address.
	unused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = unused.Close() })
	s := NewService(Stores{Redis: unused, Identities: fakeIdentities{}, Features: fakeFeatures{}, Segments: fakeSegments{}})
	h, err := NewHandler(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/profiles/old", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"profile_id":"p1"`) {
		t.Errorf("without tokens: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "recommendations") {
		t.Errorf("no recommender, yet recommendations: %s", rec.Body)
	}
}

func TestCORS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		origins []string
		origin  string
		want    string
	}{
		{"off by default", nil, "https://shop.example.com", ""},
		{"allowed origin", []string{"https://shop.example.com"}, "https://shop.example.com", "https://shop.example.com"},
		{"other origin", []string{"https://shop.example.com"}, "https://evil.example.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, nil, Options{CORSOrigins: tc.origins})
			pre := httptest.NewRequest(http.MethodOptions, "/v1/profiles/p1", nil)
			pre.Header.Set("Origin", tc.origin)
			pre.Header.Set("Access-Control-Request-Method", "GET")
			pre.Header.Set("Access-Control-Request-Headers", "authorization")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, pre)
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tc.want {
				t.Errorf("preflight: Access-Control-Allow-Origin %q, want %q (status %d)", got, tc.want, rec.Code)
			}
			req := httptest.NewRequest(http.MethodGet, "/v1/profiles/p1", nil)
			req.Header.Set("Origin", tc.origin)
			req.Header.Set("Authorization", "Bearer "+goodToken)
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := rec.Header().Get("Access-Control-Allow-Origin"); rec.Code != 200 || got != tc.want {
				t.Errorf("GET: status %d, Access-Control-Allow-Origin %q, want %q", rec.Code, got, tc.want)
			}
		})
	}
}

func TestMetricsByRouteAndStatus(t *testing.T) {
	h, reg := newTestHandler(t, nil, Options{})
	for _, target := range []string{"/v1/profiles/p1", "/v1/profiles/old", "/v1/profiles/nobody"} {
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+goodToken)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/profiles/p1", nil))
	want := map[string]int{"/v1/profiles/{profile_id} GET 200": 2, "/v1/profiles/{profile_id} GET 404": 1, "/v1/profiles/{profile_id} GET 401": 1}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "cdp_api_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["route"]+" "+l["method"]+" "+l["code"]] = int(m.GetHistogram().GetSampleCount())
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("request counts by route/method/code %v, want %v", got, want)
	}
	if n := testutil.CollectAndCount(reg, "cdp_api_requests_in_flight"); n != 1 {
		t.Errorf("in-flight gauge: %d series", n)
	}
}

func TestParseTokens(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("# personalization service\n"+strings.Repeat("f", 20)+"\n\n  "+strings.Repeat("g", 16)+"  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spaced := filepath.Join(dir, "spaced")
	if err := os.WriteFile(spaced, []byte("name "+strings.Repeat("h", 20)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env, file string
		n               int
		err             string
	}{
		{"env, comma separated", strings.Repeat("a", 16) + "," + strings.Repeat("b", 32), "", 2, ""},
		{"file with comments and blanks", "", file, 2, ""},
		{"both", strings.Repeat("a", 16), file, 3, ""},
		{"none", " , ", "", 0, "no API tokens configured"},
		{"too short", "short-token", "", 0, "want at least 16"},
		{"missing file", "", filepath.Join(dir, "nope"), 0, "reading the tokens file"},
		{"a line with a space", "", spaced, 0, "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseTokens(tc.env, tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.Len() != tc.n {
				t.Errorf("%d tokens, want %d", tok.Len(), tc.n)
			}
		})
	}
	tok, _ := ParseTokens(strings.Repeat("a", 16)+","+strings.Repeat("b", 16), "")
	if a, b := tok.check(strings.Repeat("a", 16)), tok.check(strings.Repeat("b", 16)); a == "" || b == "" || a == b {
		t.Errorf("fingerprints %q %q: want two different non-empty ones", a, b)
	}
	if tok.check(strings.Repeat("a", 15)) != "" || tok.check("") != "" {
		t.Error("a prefix or an empty token was accepted")
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{Time: time.Date(2026, 11, 3, 10, 0, 0, 123456000, time.UTC), MessageID: "a:b:c"}
	got, err := DecodeCursor(c.Encode())
	if err != nil || !got.Time.Equal(c.Time) || got.MessageID != c.MessageID {
		t.Errorf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"!!", "bm9jb2xvbg", "MTIz"} { // not base64; no colon; no id
		if _, err := DecodeCursor(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("DecodeCursor(%q) = %v, want invalid argument", bad, err)
		}
	}
}
