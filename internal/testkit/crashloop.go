package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// CrashLoop runs a `cdp` command (CDPBinary: `run <processor> ...`) again
// and again under a test's services: each of the first Kills runs gets one
// Feed, is SIGKILLed once Progress moved past what it was before the feed
// (after a further Pause, so kills land at different points of the poll,
// apply, produce, commit cycle), and is started again; the last run gets
// Finish, which waits until everything is consumed, and must then stop
// cleanly on SIGTERM. A process that ends by itself, or a loop that passes
// Deadline, fails the test with the end of the processes' log.
type CrashLoop struct {
	// Args are the cdp arguments; --instance crash-test and a free
	// --metrics-addr are added.
	Args []string
	// Env is the processes' environment (Env.ProcessEnv()).
	Env []string
	// Kills is how many runs are killed (default 6).
	Kills int
	// Deadline bounds the whole loop (default 6 minutes).
	Deadline time.Duration
	// Progress is how much input the processor has committed.
	Progress func() int64
	// Total, if set, is all the input: progress cannot move past it.
	Total int64
	// Feed gives a killed run its share of the input (may be nil).
	Feed func()
	// Pause is how long a run lives after its progress, before the kill.
	Pause func(kill int) time.Duration
	// Finish feeds what is left and waits until it is all consumed.
	Finish func()
}

// Run runs the loop and returns how many runs it killed.
func (c CrashLoop) Run(t testing.TB) int {
	t.Helper()
	bin := CDPBinary(t)
	if c.Kills == 0 {
		c.Kills = 6
	}
	if c.Deadline == 0 {
		c.Deadline = 6 * time.Minute
	}
	logs := filepath.Join(t.TempDir(), "cdp.log")
	logTail := func(n int) string {
		b, _ := os.ReadFile(logs)
		return Tail(string(b), n)
	}
	kills, runs := 0, 0
	deadline := time.Now().Add(c.Deadline)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %d runs and %d kills; the log ends:\n%s", runs, kills, logTail(40))
		}
		logf, err := os.OpenFile(logs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		ops := FreeAddr(t)
		cmd := exec.Command(bin, append(c.Args, "--instance", "crash-test", "--metrics-addr", ops)...)
		cmd.Env, cmd.Stdout, cmd.Stderr = c.Env, logf, logf
		proc := Start(t, cmd)
		runs++
		if kills < c.Kills {
			// Measured before feeding: a fast run may commit the whole
			// chunk before a later look.
			before := c.Progress()
			if c.Feed != nil {
				c.Feed()
			}
			for p := c.Progress(); p == before && (c.Total == 0 || p < c.Total) && !proc.Exited() && time.Now().Before(deadline); p = c.Progress() {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(c.Pause(kills))
			if proc.Exited() {
				t.Fatalf("cdp %s ended by itself (%v); the log ends:\n%s", c.Args, proc.Wait(), logTail(40))
			}
			proc.Kill()
			logf.Close()
			kills++
			t.Logf("kill %d after %d records committed", kills, c.Progress())
			continue
		}
		c.Finish()
		// SIGTERM before the process installed its handler would kill it
		// outright: wait until it serves /healthz.
		WaitHealthy(t, ops)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := proc.Wait(); err != nil {
			t.Fatalf("cdp %s after SIGTERM: %v\n%s", c.Args, err, logTail(30))
		}
		logf.Close()
		return kills
	}
}
