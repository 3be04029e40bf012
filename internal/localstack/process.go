package localstack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidFile is where a service's process id is kept.
func (s *Stack) pidFile(name string) string { return s.path("run", name+".pid") }

// LogFile is where a service's output goes.
func (s *Stack) LogFile(name string) string { return s.path("logs", name+".log") }

// pid returns the recorded process id of a service if that process is alive
// (and not a zombie), else 0.
func (s *Stack) pid(name string) int {
	b, err := os.ReadFile(s.pidFile(name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !alive(pid) {
		return 0
	}
	return pid
}

// alive reports whether pid runs and is not a zombie waiting to be reaped.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// spawn starts a detached process (its own session, so it outlives the
// command that started it and ignores the terminal's Ctrl-C), appends its
// output to the service log and records its pid.
func (s *Stack) spawn(name, path string, args []string) (int, error) {
	for _, d := range []string{s.path("run"), s.path("logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	logf, err := os.OpenFile(s.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening log for %s: %w", name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- %s starting %s %s\n", time.Now().Format(time.RFC3339), filepath.Base(path), strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s (%s): %w", name, path, err)
	}
	pid := cmd.Process.Pid
	// Reap the child if it dies while this process still runs, so it does
	// not linger as a zombie that looks alive.
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(s.pidFile(name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return pid, fmt.Errorf("writing pid file for %s: %w", name, err)
	}
	return pid, nil
}

// stop sends SIGTERM, waits up to grace for the process to exit, then kills it.
func (s *Stack) stop(name string, grace time.Duration) (bool, error) {
	pid := s.pid(name)
	defer os.Remove(s.pidFile(name))
	if pid == 0 {
		return false, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, fmt.Errorf("stopping %s (pid %d): %w", name, pid, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return true, nil
}

// logTail returns the last lines of a service's log, for error messages.
func (s *Stack) logTail(name string, lines int) string {
	b, err := os.ReadFile(s.LogFile(name))
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
