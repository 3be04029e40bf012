package localstack_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/localstack"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// The stack's ClickHouse runs under a supervisor: when the engine exits by
// itself (SIGKILLed here, as the chDB engine exits under a client killed
// mid-insert) it comes back on its data, under the same supervisor pid;
// SIGTERM to the supervisor stops the engine, and so does SIGKILL (the
// engine dies with its parent).
func TestClickHouseEngineComesBack(t *testing.T) {
	lib := localstack.CHDBLibraryPath(localstack.CacheDir())
	if _, err := os.Stat(lib); err != nil {
		if testkit.InCI() {
			t.Fatalf("the ClickHouse engine is not installed (%v): run cdp local setup", err)
		}
		t.Skipf("the ClickHouse engine is not installed: %v", err)
	}
	bin := testkit.CDPBinary(t)
	ports, err := localstack.FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "clickhouse.log")
	start := func() *exec.Cmd {
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd := exec.Command(bin, "local", "serve", "clickhouse", "--dir", filepath.Join(dir, "data"), "--lib", lib,
			"--tcp-port", strconv.Itoa(ports.ClickHouseTCP), "--http-port", strconv.Itoa(ports.ClickHouseHTTP))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	query := func(q string) (string, error) {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/?query=%s", ports.ClickHouseHTTP, url.QueryEscape(q)), "text/plain", nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, b)
		}
		return strings.TrimSpace(string(b)), nil
	}
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		return testkit.Tail(string(b), 20)
	}
	// waitCount waits until the engine answers with the table's 3 rows.
	waitCount := func(what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			got, err := query("SELECT count() FROM t")
			if err == nil && got == "3" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: count %q (%v) after 2 minutes; the log ends:\n%s", what, got, err, logTail())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	sup := start()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := query("CREATE TABLE IF NOT EXISTS t (x UInt32) ENGINE = MergeTree ORDER BY x"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse did not answer within 2 minutes; the log ends:\n%s", logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := query("INSERT INTO t VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}
	engine := childOf(t, sup.Process.Pid)
	if err := syscall.Kill(engine, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitCount("after the engine was SIGKILLed")
	again := childOf(t, sup.Process.Pid)
	if again == engine {
		t.Fatalf("the engine pid %d did not change after SIGKILL", engine)
	}
	if !strings.Contains(logTail(), "starting it again") {
		t.Errorf("the supervisor's log does not say it restarted the engine:\n%s", logTail())
	}

	// SIGTERM: supervisor and engine end.
	if err := sup.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, sup, 30*time.Second)
	waitGone(t, again)

	// SIGKILL of the supervisor takes the engine with it.
	sup = start()
	waitCount("after a restart of the supervisor")
	engine = childOf(t, sup.Process.Pid)
	if err := sup.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, sup, 30*time.Second)
	waitGone(t, engine)
}

// childOf finds the one child process of pid, waiting up to a minute for
// it to appear.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		var kids []int
		for _, p := range stats {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...: comm may hold spaces, so read
			// after its closing parenthesis.
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
				id, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				kids = append(kids, id)
			}
		}
		if len(kids) == 1 {
			return kids[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has children %v, want one", pid, kids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("the supervisor (pid %d) did not exit within %s", cmd.Process.Pid, within)
	}
}

// waitGone waits until pid no longer exists (or is a zombie).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := syscall.Kill(pid, 0)
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		s := string(b)
		zombie := len(s) > 0 && strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z")
		if errors.Is(err, syscall.ESRCH) || zombie {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the engine (pid %d) still runs 30 s after its supervisor ended", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
