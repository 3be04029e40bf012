package devstack_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/localstack"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// devProcess is a running `cdp dev` whose output lines are collected.
type devProcess struct {
	p     *testkit.Process
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startDev(t *testing.T, bin, dir string) *devProcess {
	t.Helper()
	cmd := exec.Command(bin, "dev", "--dir", dir, "--free-ports", "--rate", "100", "--interval", "2s",
		"--api-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	d := &devProcess{done: make(chan struct{})}
	d.p = testkit.Start(t, cmd)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if !d.p.Exited() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-d.done:
			case <-time.After(60 * time.Second):
				d.p.Kill()
			}
		}
	})
	return d
}

func (d *devProcess) output() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.lines...)
}

// waitFor polls cond over the output until it holds, the process dies or
// the deadline passes.
func (d *devProcess) waitFor(t *testing.T, what string, deadline time.Duration, cond func(lines []string) bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		lines := d.output()
		if cond(lines) {
			return
		}
		if d.p.Exited() || time.Now().After(end) {
			t.Fatalf("waiting for %s: not seen (process exited: %v); output:\n%s", what, d.p.Exited(), testkit.Tail(strings.Join(lines, "\n"), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop sends SIGINT, as Ctrl-C does, and requires a clean exit.
func (d *devProcess) stop(t *testing.T) {
	t.Helper()
	if err := d.p.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.p.Wait() }()
	select {
	case err := <-errc:
		<-d.done
		if err != nil {
			t.Fatalf("cdp dev after SIGINT: %v (want exit code 0); output:\n%s", err, testkit.Tail(strings.Join(d.output(), "\n"), 30))
		}
	case <-time.After(90 * time.Second):
		d.p.Kill()
		t.Fatalf("cdp dev did not stop within 90 s of SIGINT; output:\n%s", testkit.Tail(strings.Join(d.output(), "\n"), 30))
	}
}

var (
	summaryRe = regexp.MustCompile(`^dev: .*events_in=(\d+) .*profiles=(\d+) .*segments=(\S*)$`)
	curlRe    = regexp.MustCompile(`^one live profile: curl -s -H 'Authorization: Bearer (\S+)' '(\S+)'$`)
	urlRe     = regexp.MustCompile(`^(console|API): (http://\S+)$`)
)

type summaryLine struct {
	events, profiles int64
	segments         string
}

func summaries(lines []string) []summaryLine {
	var out []summaryLine
	for _, l := range lines {
		if m := summaryRe.FindStringSubmatch(l); m != nil {
			e, _ := strconv.ParseInt(m[1], 10, 64)
			p, _ := strconv.ParseInt(m[2], 10, 64)
			out = append(out, summaryLine{events: e, profiles: p, segments: m[3]})
		}
	}
	return out
}

func match(lines []string, re *regexp.Regexp) map[string][]string {
	out := map[string][]string{}
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			out[m[1]] = m
		}
	}
	return out
}

// requireTools skips the test on a machine without what `cdp dev` starts
// (fails under CI=true, where scripts/test.sh installed it).
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing = append(missing, "redis-server")
	}
	if _, err := os.Stat(localstack.CHDBLibraryPath(localstack.CacheDir())); err != nil {
		missing = append(missing, "the ClickHouse engine")
	}
	if len(missing) > 0 {
		msg := "cdp dev needs " + strings.Join(missing, " and ") + ": run cdp local setup"
		if testkit.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// TestDev drives `cdp dev` as a user would, with its output piped (so one
// summary line every --interval): the numbers grow, the API serves the
// sample profile with the printed token and refuses calls without it, the
// profile's segments follow its events (a cart add enters cart_abandoners,
// an order exits it) as `cdp produce` sends them to the running platform, the
// console page works in a real browser, Ctrl-C stops everything with exit
// code 0 and no process left, and a second run resumes the counts.
func TestDev(t *testing.T) {
	requireTools(t)
	bin := testkit.CDPBinary(t)
	dir := filepath.Join(t.TempDir(), "dev")

	run := startDev(t, bin, dir)
	run.waitFor(t, "two summary lines with growing event counts", 3*time.Minute, func(lines []string) bool {
		s := summaries(lines)
		return len(s) >= 2 && s[0].events < s[len(s)-1].events && s[len(s)-1].profiles > 0
	})
	run.waitFor(t, "the sample curl", 2*time.Minute, func(lines []string) bool { return len(match(lines, curlRe)) > 0 })
	var curl []string
	for _, m := range match(run.output(), curlRe) {
		curl = m
	}
	token, profileURL := curl[1], curl[2]
	urls := match(run.output(), urlRe)
	if urls["console"] == nil || urls["API"] == nil {
		t.Fatalf("no console or API URL in the output:\n%s", strings.Join(run.output(), "\n"))
	}
	consoleURL := urls["console"][2]

	// The API: the sample profile with the token, 401 without it.
	var profile struct {
		ProfileID  string `json:"profile_id"`
		Identities []struct{ Type, Value string }
		Segments   []struct{ Segment string }
		Version    int64 `json:"features_version"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		status, body := get(t, profileURL, token)
		if status != http.StatusOK {
			t.Fatalf("GET %s with the printed token: %d %s", profileURL, status, body)
		}
		if err := json.Unmarshal(body, &profile); err != nil {
			t.Fatalf("profile JSON: %v\n%s", err, body)
		}
		if len(profile.Segments) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if profile.ProfileID == "" || len(profile.Identities) == 0 || len(profile.Segments) == 0 {
		t.Fatalf("sample profile %s: want an id, identities and at least one segment, got %+v", profileURL, profile)
	}
	t.Logf("sample profile %s: %d identities, segments %v, features version %d", profile.ProfileID, len(profile.Identities), profile.Segments, profile.Version)
	for _, tok := range []string{"", "not-the-token-0123456789"} {
		if status, body := get(t, profileURL, tok); status != http.StatusUnauthorized {
			t.Errorf("GET %s with token %q: %d %s, want 401", profileURL, tok, status, body)
		}
	}
	var email, userID string
	for _, id := range profile.Identities {
		switch id.Type {
		case "email":
			email = id.Value
		case "user_id":
			userID = id.Value
		}
	}

	// The sample profile's own segments change with its traffic: a cart
	// add puts it in cart_abandoners, an order after it takes it out.
	who := fmt.Sprintf(`"userId":%q`, userID)
	if userID == "" {
		if email == "" {
			t.Fatalf("sample profile %s has neither a user_id nor an email identity: %+v", profile.ProfileID, profile.Identities)
		}
		who = fmt.Sprintf(`"anonymousId":"dev-test-visitor","context":{"traits":{"email":%q}}`, email)
	}
	now := time.Now().UTC()
	inCart := func() (bool, []string) {
		status, body := get(t, profileURL, token)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", profileURL, status, body)
		}
		var p struct{ Segments []struct{ Segment string } }
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("profile JSON: %v\n%s", err, body)
		}
		var names []string
		in := false
		for _, s := range p.Segments {
			names = append(names, s.Segment)
			in = in || s.Segment == "cart_abandoners"
		}
		return in, names
	}
	for _, step := range []struct {
		event, props string
		want         bool
	}{
		{"Product Added", `{"product_id":"dev-test-1","price":10,"quantity":1}`, true},
		{"Order Completed", `{"order_id":"dev-test-order","revenue":10,"currency":"EUR","products":[{"product_id":"dev-test-1","price":10,"quantity":1}]}`, false},
	} {
		now = now.Add(time.Second)
		produceTo(t, bin, dir, fmt.Sprintf(`{"type":"track","event":%q,%s,"timestamp":%q,"properties":%s}`,
			step.event, who, now.Format(time.RFC3339Nano), step.props))
		deadline := time.Now().Add(time.Minute)
		for {
			in, names := inCart()
			if in == step.want {
				t.Logf("after %s: segments %v", step.event, names)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s for %s: in cart_abandoners %v a minute later, want %v (segments %v)", step.event, profile.ProfileID, in, step.want, names)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Segments move as traffic flows: the sizes differ between the first
	// summary line with any member and the latest.
	run.waitFor(t, "segment sizes to change", 2*time.Minute, func(lines []string) bool {
		s := summaries(lines)
		first := ""
		for _, l := range s {
			if first == "" && strings.ContainsAny(strings.ReplaceAll(l.segments, ":0", ""), "123456789") {
				first = l.segments
			}
		}
		return first != "" && s[len(s)-1].segments != first
	})

	checkConsole(t, consoleURL, email, profile.ProfileID)

	before := summaries(run.output())
	run.stop(t)
	final := summaries(run.output())
	last := final[len(final)-1].events
	if last < before[len(before)-1].events {
		t.Fatalf("final summary has %d events, fewer than before the stop (%d)", last, before[len(before)-1].events)
	}
	requireNoProcesses(t, dir)

	// A second run resumes on the same data: its counts start where the
	// first run's ended.
	run2 := startDev(t, bin, dir)
	run2.waitFor(t, "a summary line of the second run", 3*time.Minute, func(lines []string) bool { return len(summaries(lines)) > 0 })
	first := summaries(run2.output())[0]
	if first.events < last || first.profiles == 0 {
		t.Fatalf("second run starts at %d events and %d profiles; the first ended at %d events", first.events, first.profiles, last)
	}
	if status, _ := get(t, profileURL2(run2, profileURL), token); status != http.StatusOK {
		t.Errorf("second run: the sample profile with the same token: %d, want 200", status)
	}
	run2.stop(t)
	requireNoProcesses(t, dir)
}

// profileURL2 is the sample profile's URL on the second run's API port.
func profileURL2(run *devProcess, first string) string {
	api := match(run.output(), urlRe)["API"]
	if api == nil {
		return first
	}
	base := strings.TrimSuffix(api[2], "/openapi.json")
	i := strings.Index(first, "/v1/")
	return base + first[i:]
}

func get(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// requireNoProcesses fails if any process still runs with dir on its
// command line (the stack's services do) or from a pid file under it.
func requireNoProcesses(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || !strings.Contains(string(cmdline), dir) {
				continue
			}
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
				continue // a zombie: it has exited
			}
			left = append(left, fmt.Sprintf("%d: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, l := range left {
				if pid, err := strconv.Atoi(strings.SplitN(l, ":", 2)[0]); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL) // do not leak them past the test
				}
			}
			t.Fatalf("processes left running after cdp dev stopped:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// produceTo sends JSON event lines through `cdp produce`, pointed at the
// dev stack in dir.
func produceTo(t *testing.T, bin, dir string, lines ...string) {
	t.Helper()
	st, ok, err := localstack.Open(dir)
	if err != nil || !ok {
		t.Fatalf("opening the dev stack in %s: found %v, %v", dir, ok, err)
	}
	env := os.Environ() // the last value of a key wins
	for _, kv := range st.Env() {
		env = append(env, kv[0]+"="+kv[1])
	}
	cmd := exec.Command(bin, "produce", "--file", "-")
	cmd.Env, cmd.Stdin = env, strings.NewReader(strings.Join(lines, "\n")+"\n")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cdp produce: %v\n%s", err, b)
	}
}
