package profileapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/recommend"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// stack is one test's deployment: the default topology's topics under the
// test's prefix, generated traffic processed by a `cdp run identity
// features segments recommend` process, and the API opened on its stores
// exactly as `cdp api` opens it.
type stack struct {
	env    *testkit.Env
	topo   *topology.Topology
	serde  *schemas.Serde
	lines  [][]byte
	opened *Opened
	at     time.Time
}

func newStack(t testing.TB, persons, events int) *stack {
	t.Helper()
	env := testkit.New(t)
	env.Redis(t) // the stores' keys go when the test ends
	ctx := testkit.Context(t)
	topo, err := topology.Default()
	if err != nil {
		t.Fatal(err)
	}
	adm := env.Admin(t)
	if _, err := topo.Apply(ctx, adm, env.Services.TopicPrefix, topology.WithReplicationFactor(1)); err != nil {
		t.Fatalf("applying the topology: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var names []string
		for _, tp := range topo.Topics {
			names = append(names, env.Services.Topic(tp.Name))
		}
		_, _ = adm.DeleteTopics(ctx, names...)
	})
	s := &stack{env: env, topo: topo, serde: schemas.NewSerde(env.Registry(t))}

	// Traffic of the last two days, so that windows hold values at read time.
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = persons, events, 5
	cfg.Start, cfg.Duration = time.Now().Add(-48*time.Hour).UTC().Truncate(time.Hour), 40*time.Hour
	if _, err := generate.Generate(ctx, cfg, generate.SinkFunc(func(_ context.Context, line []byte) error {
		s.lines = append(s.lines, slices.Clone(line))
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	p, err := producer.New(ctx, producer.Config{Brokers: env.Services.KafkaBrokers, RegistryURL: env.Services.SchemaRegistryURL,
		Topic: env.Services.Topic("events.raw")})
	if err != nil {
		t.Fatal(err)
	}
	w := p.NewLineWriter(ctx, producer.LinesOptions{SendInvalid: true})
	for _, l := range s.lines {
		if err := w.WriteLine(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := w.Close(ctx); err != nil || res.Failed > 0 {
		t.Fatalf("producing: %+v %v", res, err)
	}
	p.Close(ctx)

	// The processors, as their own process, until everything is consumed;
	// then stopped, so the stores hold still while the test reads them.
	logf, err := os.Create(filepath.Join(t.TempDir(), "processors.log"))
	if err != nil {
		t.Fatal(err)
	}
	procs := []string{"identity", "features", "segments", "recommend"}
	cmd := exec.Command(testkit.CDPBinary(t), append(append([]string{"run"}, procs...), "--instance", "api-test", "--metrics-addr", testkit.FreeAddr(t))...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env.ProcessEnv(), logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(stop)
	var consumed []testkit.Consumed
	for _, name := range procs {
		spec, _ := topo.Processor(name)
		c := testkit.Consumed{Group: spec.ConsumerGroup(env.Services.TopicPrefix)}
		for _, in := range spec.Inputs {
			c.Topics = append(c.Topics, env.Services.Topic(in))
		}
		consumed = append(consumed, c)
	}
	func() {
		defer func() {
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("processors' log:\n%s", testkit.Tail(string(b), 40))
			}
		}()
		env.WaitConsumed(t, 3*time.Minute, time.Second, consumed...)
	}()
	stop()

	s.opened, err = Open(ctx, env.Services, topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.opened.Close)
	// One read time for the API and the test's own reads of the stores.
	s.at = time.Now().UTC().Truncate(time.Millisecond)
	s.opened.Service.st.Now = func() time.Time { return s.at }
	return s
}

// client sends requests to an API server with the test's token and checks
// every exchange against the OpenAPI document.
type client struct {
	t    *testing.T
	base string
	conf *conformance
}

func (s *stack) serve(t *testing.T, conf *conformance) *client {
	t.Helper()
	tokens, err := ParseTokens(goodToken, "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(s.opened.Service, Options{Tokens: tokens, Ready: []func(context.Context) error{s.opened.Ready}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &client{t: t, base: srv.URL, conf: conf}
}

// get returns the status and body of GET path with the given token ("-":
// none).
func (c *client) get(path, token string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "-" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.conf.check(req, resp.StatusCode, resp.Header, body, false); err != nil {
		c.t.Error(err)
	}
	return resp.StatusCode, body
}

func (c *client) profile(path string) Profile {
	c.t.Helper()
	status, body := c.get(path, goodToken)
	if status != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, status, body)
	}
	var p Profile
	if err := json.Unmarshal(body, &p); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TestProfilesMatchTheStores runs generated traffic through the real
// processors and reads every profile through the API: by id, by every
// email in the traffic, and by every merged-away id. The values must equal
// what the processors stored and what they emitted on their topics.
func TestProfilesMatchTheStores(t *testing.T) {
	s := newStack(t, 150, 3000)
	conf := newConformance(t)
	c := s.serve(t, conf)
	ctx := testkit.Context(t)

	// What the processors emitted, read back independently of the stores.
	merges := s.merges(t)          // merged-away id -> survivor, chains followed
	changes := s.foldChanges(t)    // profile -> lifetime features and traits
	members := s.memberships(t)    // profile -> segment -> entered time
	profiles := s.resolvedIDs(t)   // every profile id events were resolved to
	emails := emailsOf(t, s.lines) // normalised emails in the traffic
	if len(merges) == 0 || len(profiles) < 50 || len(emails) < 20 {
		t.Fatalf("traffic too thin to test: %d merges, %d profiles, %d emails", len(merges), len(profiles), len(emails))
	}

	// The stores, read with the processors' own readers.
	rdb, err := config.NewRedis(s.env.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	fcfg, fset, err := features.ConfigFrom(s.topo, s.env.Services)
	if err != nil {
		t.Fatal(err)
	}
	freader := features.NewReader(rdb, fcfg, fset)
	rreader, err := recommend.OpenReader(ctx, s.env.Services, rdb)
	if err != nil {
		t.Fatal(err)
	}
	lifetime := map[string]bool{}
	for _, d := range s.topo.Features.Definitions {
		if d.Window == "" || d.Window == "lifetime" {
			lifetime[d.Name] = true
		}
	}

	var withSegments, withRecs, withScores, merged int
	byID := map[string]Profile{}
	for id := range profiles {
		p := c.profile("/v1/profiles/" + url.PathEscape(id))
		survivor := id
		if into, ok := merges[id]; ok {
			survivor = into
			merged++
		}
		if p.ProfileID != survivor || p.RequestedID != id || p.Merged != (survivor != id) {
			t.Errorf("%s: profile_id %s merged %v, want %s (from the merges topic)", id, p.ProfileID, p.Merged, survivor)
			continue
		}
		if survivor != id {
			continue // checked in full under its survivor's id
		}
		byID[id] = p

		// Features and traits: equal to the stored state evaluated at the
		// same read time, and (for the values time does not move) to the
		// changes topic folded in version order.
		st, sid, err := freader.State(ctx, id)
		if err != nil {
			t.Fatalf("%s: reading the feature store: %v", id, err)
		}
		want := freader.View(sid, st, s.at)
		if !reflect.DeepEqual(p.Features, want.Features) || p.FeaturesVersion != want.Version {
			t.Errorf("%s: features v%d %v\nstored v%d %v", id, p.FeaturesVersion, p.Features, want.Version, want.Features)
		}
		emitted := changes[id]
		for name, v := range emitted.features {
			if lifetime[name] && !reflect.DeepEqual(p.Features[name], v) {
				t.Errorf("%s: %s = %v, the changes topic says %v", id, name, p.Features[name], v)
			}
		}
		if p.FeaturesVersion != emitted.version {
			t.Errorf("%s: features_version %d, last change on the topic %d", id, p.FeaturesVersion, emitted.version)
		}
		if !reflect.DeepEqual(jsonTexts(p.Traits), emitted.traits) {
			t.Errorf("%s: traits %v, the changes topic says %v", id, jsonTexts(p.Traits), emitted.traits)
		}

		// Segments: those the membership topic last says the profile entered.
		got := map[string]time.Time{}
		for _, m := range p.Segments {
			got[m.Segment] = m.EnteredAt
		}
		if !reflect.DeepEqual(got, nonNil(members[id])) {
			t.Errorf("%s: segments %v, the membership topic says %v", id, got, members[id])
		}
		if len(p.Segments) > 0 {
			withSegments++
		}

		// Recommendations and scores: what the recommend processor stored.
		list, err := rreader.Recommendations(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		scores, err := rreader.Scores(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p.Recommendations, roundTrip(t, fromList(list))) || !reflect.DeepEqual(p.Scores, roundTrip(t, fromScores(scores))) {
			t.Errorf("%s: recommendations %+v scores %+v, stored %+v %+v", id, p.Recommendations, p.Scores, list, scores)
		}
		if list != nil {
			withRecs++
		}
		if scores != nil {
			withScores++
		}
	}
	t.Logf("%d profile ids (%d merged away), %d emails; %d survivors in segments, %d with recommendations, %d with scores",
		len(profiles), merged, len(emails), withSegments, withRecs, withScores)
	if merged == 0 || withSegments == 0 || withRecs == 0 {
		t.Errorf("the traffic exercised too little: %d merged ids, %d in segments, %d with recommendations", merged, withSegments, withRecs)
	}

	// By email: the profile holding it, identical to the one by id.
	found := 0
	for email := range emails {
		status, body := c.get("/v1/profiles/by-identifier?type=email&value="+url.QueryEscape(strings.ToUpper(email)+" "), goodToken)
		if status == http.StatusNotFound {
			continue // refused by the identity rules (blocked, over a limit)
		}
		if status != http.StatusOK {
			t.Fatalf("by email %s: %d %s", email, status, body)
		}
		found++
		var p Profile
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(p.Identities, Identifier{Type: "email", Value: email}) {
			t.Errorf("by email %s: profile %s does not list it: %v", email, p.ProfileID, p.Identities)
		}
		want, ok := byID[p.ProfileID]
		if !ok {
			t.Errorf("by email %s: profile %s is not a survivor of the traffic", email, p.ProfileID)
			continue
		}
		p.Identifier, want.Identifier = nil, nil
		if !reflect.DeepEqual(p, want) {
			t.Errorf("by email %s:\n%+v\nby id:\n%+v", email, p, want)
		}
	}
	if found < len(emails)*9/10 {
		t.Errorf("only %d of %d emails found", found, len(emails))
	}

	// The errors a client meets, with their stable codes.
	var someID string
	for id := range byID {
		someID = id
		break
	}
	for _, tc := range []struct {
		path, token string
		status      int
		code        string
	}{
		{"/v1/profiles/" + someID, "-", 401, CodeUnauthorized},
		{"/v1/profiles/" + someID, strings.Repeat("z", len(goodToken)), 401, CodeUnauthorized},
		{"/v1/profiles/by-identifier?type=email&value=" + url.QueryEscape(firstKey(emails)), "-", 401, CodeUnauthorized},
		{"/v1/profiles/0000000000000000", goodToken, 404, CodeNotFound},
		{"/v1/profiles/by-identifier?type=email&value=nobody%40nowhere.example", goodToken, 404, CodeNotFound},
		{"/v1/profiles/by-identifier?type=email&value=test%40example.com", goodToken, 404, CodeNotFound}, // blocked by the rules
		{"/v1/profiles/by-identifier?type=shoe_size&value=9", goodToken, 400, CodeInvalidArgument},
		{"/v1/profiles/" + someID + "/events", goodToken, 501, CodeEventsUnavailable},
	} {
		status, body := c.get(tc.path, tc.token)
		var e errorBody
		_ = json.Unmarshal(body, &e)
		if status != tc.status || e.Error.Code != tc.code {
			t.Errorf("GET %s (token %.4s…): %d %s, want %d %s", tc.path, tc.token, status, body, tc.status, tc.code)
		}
	}
	if status, body := c.get("/readyz", "-"); status != 200 {
		t.Errorf("/readyz: %d %s", status, body)
	}
}

// merges reads the merges topic: every merged-away id and its survivor
// now (a survivor merged later is followed).
func (s *stack) merges(t testing.TB) map[string]string {
	t.Helper()
	ctx := testkit.Context(t)
	into := map[string]string{}
	for _, rec := range s.env.ReadAll(t, s.env.Services.Topic("identity.merges")) {
		n, err := s.serde.DecodeNative(ctx, rec.Value, schemas.IdentityMergeSchema)
		if err != nil {
			t.Fatal(err)
		}
		m := n.(map[string]any)
		into[m["from_profile"].(string)] = m["into_profile"].(string)
	}
	out := map[string]string{}
	for from := range into {
		to := into[from]
		for hops := 0; into[to] != ""; hops++ {
			if hops > 100 {
				t.Fatalf("merge cycle at %s", from)
			}
			to = into[to]
		}
		out[from] = to
	}
	return out
}

// resolvedIDs are the profile ids on the resolved topic.
func (s *stack) resolvedIDs(t testing.TB) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, rec := range s.env.ReadAll(t, s.env.Services.Topic("events.resolved")) {
		out[string(rec.Key)] = true
	}
	return out
}

// emitted is a profile's state as its change records built it.
type emitted struct {
	version  int64
	features map[string]any
	traits   map[string]string
}

// foldChanges applies every profile's change records in version order.
func (s *stack) foldChanges(t *testing.T) map[string]*emitted {
	t.Helper()
	ctx := testkit.Context(t)
	var all []schemas.ProfileChange
	for _, rec := range s.env.ReadAll(t, s.env.Services.Topic("profiles.changes")) {
		c, err := s.serde.DecodeProfileChange(ctx, rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c)
	}
	slices.SortStableFunc(all, func(a, b schemas.ProfileChange) int { return int(a.Version - b.Version) })
	out := map[string]*emitted{}
	for _, c := range all {
		e := out[c.ProfileID]
		if e == nil {
			e = &emitted{features: map[string]any{}, traits: map[string]string{}}
			out[c.ProfileID] = e
		}
		e.version = c.Version
		for name, fc := range c.Features {
			switch fc.New.Kind {
			case schemas.FeatureNumber:
				e.features[name] = fc.New.Num
			case schemas.FeatureString:
				e.features[name] = fc.New.Str
			default:
				e.features[name] = nil
			}
		}
		for name, tc := range c.Traits {
			if tc.New == "" {
				delete(e.traits, name)
			} else {
				e.traits[name] = tc.New
			}
		}
	}
	return out
}

// memberships reads the membership topic: each profile's segments whose
// latest change (by version) is entered, with its time.
func (s *stack) memberships(t *testing.T) map[string]map[string]time.Time {
	t.Helper()
	ctx := testkit.Context(t)
	type last struct {
		version int64
		status  string
		at      time.Time
	}
	latest := map[[2]string]last{}
	for _, rec := range s.env.ReadAll(t, s.env.Services.Topic("segments.membership")) {
		n, err := s.serde.DecodeNative(ctx, rec.Value, schemas.SegmentMembershipSchema)
		if err != nil {
			t.Fatal(err)
		}
		m := n.(map[string]any)
		k := [2]string{m["profile_id"].(string), m["segment"].(string)}
		if v := m["version"].(int64); v > latest[k].version {
			latest[k] = last{v, m["status"].(string), m["time"].(time.Time).UTC()}
		}
	}
	out := map[string]map[string]time.Time{}
	for k, l := range latest {
		if l.status != "entered" {
			continue
		}
		if out[k[0]] == nil {
			out[k[0]] = map[string]time.Time{}
		}
		out[k[0]][k[1]] = l.at
	}
	return out
}

// emailsOf returns the normalised emails in the generated lines.
func emailsOf(t testing.TB, lines [][]byte) map[string]bool {
	t.Helper()
	type traits struct {
		Email string `json:"email"`
	}
	out := map[string]bool{}
	for _, l := range lines {
		var ev struct {
			Traits  traits `json:"traits"`
			Context struct {
				Traits traits `json:"traits"`
			} `json:"context"`
		}
		if json.Unmarshal(l, &ev) != nil {
			continue // an invalid line
		}
		for _, e := range []string{ev.Traits.Email, ev.Context.Traits.Email} {
			if e = generate.NormalizeEmail(e); strings.Contains(e, "@") {
				out[e] = true
			}
		}
	}
	return out
}

func jsonTexts(m map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func nonNil(m map[string]time.Time) map[string]time.Time {
	if m == nil {
		return map[string]time.Time{}
	}
	return m
}

// roundTrip gives v as a client decodes it (times lose their monotonic
// reading, zero-length slices become empty).
func roundTrip[T any](t *testing.T, v *T) *T {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(out); err != nil {
		t.Fatal(err)
	}
	return out
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

// TestCommandRefusesToStartWithoutTokens: `cdp api` without any token
// exits with the reason instead of serving personal data to anyone.
func TestCommandRefusesToStartWithoutTokens(t *testing.T) {
	cmd := exec.Command(testkit.CDPBinary(t), "api", "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "CDP_API_TOKENS") // both CDP_API_TOKENS and _FILE
	})
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no API tokens configured") || !strings.Contains(string(out), "--insecure-no-auth") {
		t.Fatalf("cdp api without tokens: %v\n%s", err, out)
	}
}
