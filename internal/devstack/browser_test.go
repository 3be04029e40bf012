package devstack_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamcdp/streamcdp/internal/testkit"
)

// chromiumPath is Debian's chromium (cdp local setup installs it).
const chromiumPath = "/usr/bin/chromium"

// chartPanels are panels whose charts must have rows once traffic flows
// (the others, such as dead letters, may legitimately be empty).
var chartPanels = []string{"events_per_interval", "events_by_type", "active_profiles", "segment_members_now", "funnel", "orders_summary"}

// checkConsole opens the console page in headless chromium with a profile
// lookup of email: no console errors or exceptions, every chart panel has
// data, no panel failed, and the profile shows with its identities and
// recent events. A full-page screenshot is kept in $CDP_ARTIFACTS (default
// $TMPDIR/cdp-artifacts).
func checkConsole(t *testing.T, consoleURL, email, profileID string) {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		msg := "the console test needs Debian's chromium at " + chromiumPath + ": run cdp local setup (apt-get install chromium)"
		if testkit.InCI() {
			t.Fatal(msg)
		}
		t.Log("skipping the browser part: " + msg)
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, tcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer tcancel()

	// Every console message is collected from before the page loads:
	// console.error calls, uncaught exceptions and the browser log's
	// errors (a failed resource load) count as problems.
	var (
		mu       sync.Mutex
		problems []string
	)
	mctx, mcancel := context.WithCancel(ctx)
	messages := chromedp.Console(mctx)
	read := make(chan struct{})
	go func() {
		defer close(read)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	defer func() { mcancel(); <-read }()
	page := consoleURL + "?q=" + url.QueryEscape(email)
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#profile"))); err != nil {
		t.Fatalf("opening %s: %v", page, err)
	}

	// The charts are drawn by the page's script from /panels/{key}; wait
	// until each has rows (data-points is set after drawing).
	deadline := time.Now().Add(90 * time.Second)
	for {
		points, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("figure.panel")].map(f => [f.dataset.key, f.dataset.error ? "error: " + f.dataset.error : f.dataset.points]))`))
		if err != nil {
			t.Fatalf("reading the panels: %v", err)
		}
		var waiting []string
		for k, v := range points {
			if strings.HasPrefix(v, "error") {
				t.Fatalf("panel %s failed: %s", k, v)
			}
		}
		for _, k := range chartPanels {
			if v, ok := points[k]; !ok || v == "-1" || v == "0" {
				waiting = append(waiting, fmt.Sprintf("%s=%s", k, v))
			}
		}
		if len(waiting) == 0 {
			t.Logf("console panels' rows: %v", points)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console panels without data after 90 s: %v (all: %v)", waiting, points)
		}
		// The page redraws every 10 s; reloading fetches at once.
		if err := chromedp.Do(ctx, chromedp.Sleep(2*time.Second), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#profile"))); err != nil {
			t.Fatalf("reloading the console: %v", err)
		}
	}

	shown, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#profile"), "data-profile-id"))
	if err != nil {
		t.Fatalf("reading the profile: %v", err)
	}
	identities, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#p-identities")))
	if err != nil {
		t.Fatalf("reading the identities: %v", err)
	}
	eventRows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#p-events tr").length - 1`))
	if err != nil {
		t.Fatalf("reading the recent events: %v", err)
	}
	shownID := shown.Value
	if shownID != profileID || !strings.Contains(identities, email) {
		t.Errorf("lookup of %s shows profile %q with identities %q; want %s with the email", email, shownID, identities, profileID)
	}
	if eventRows < 1 {
		t.Errorf("lookup of %s shows %d recent events, want at least 1 (from ClickHouse)", email, eventRows)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("CDP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "cdp-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "console.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshot: %s", path)

	mcancel()
	<-read
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the console page logged errors:\n%s", strings.Join(problems, "\n"))
	}
}
