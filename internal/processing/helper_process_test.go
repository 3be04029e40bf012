package processing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/processing"
)

// TestMain lets a test run a runner in a child process (this test binary
// again), so that it can SIGKILL or SIGSTOP it.
func TestMain(m *testing.M) {
	if spec := os.Getenv("CDP_PROCESSING_HELPER"); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

// helperSpec is what a child runner is told.
type helperSpec struct {
	Kind           string // "timers" or "slowlog"
	Brokers        []string
	RedisURL       string
	Prefix         string
	Group          string
	Inputs         []string
	Out            string
	Instance       string
	Static         bool
	SessionTimeout time.Duration
	// RebalanceTimeout bounds how long a rebalance waits for a member that
	// does not answer (a stopped process).
	RebalanceTimeout   time.Duration
	ProcessingTimeout  time.Duration
	TransactionTimeout time.Duration
	StepDelay          time.Duration
}

func runHelper(raw string) int {
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper spec:", err)
		return 2
	}
	log, _ := zap.NewDevelopment()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	opt, err := redis.ParseURL(spec.RedisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	cfg := processing.Config{
		Name: spec.Kind, Brokers: spec.Brokers, Group: spec.Group, Inputs: spec.Inputs, InstanceID: spec.Instance,
		StaticMembership: spec.Static, SessionTimeout: spec.SessionTimeout, RebalanceTimeout: spec.RebalanceTimeout, MaxPollRecords: 20,
		MaxBackoff: 200 * time.Millisecond, Logger: log, Journal: journal.New(rdb, spec.Prefix, spec.Kind),
	}
	cfg.ProcessingTimeout, cfg.TransactionTimeout = spec.ProcessingTimeout, spec.TransactionTimeout
	var p processing.Processor
	switch spec.Kind {
	case "timers":
		p = &timerProc{out: spec.Out}
	case "slowlog":
		p = &slowLogProc{instance: spec.Instance, delay: spec.StepDelay}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", spec.Kind)
		return 2
	}
	r, err := processing.New(cfg, p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

// child is a runner in a child process.
type child struct {
	t   *testing.T
	cmd *exec.Cmd
	log *os.File
}

func startChild(t *testing.T, spec helperSpec, logPath string) *child {
	t.Helper()
	raw, _ := json.Marshal(spec)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CDP_PROCESSING_HELPER="+string(raw))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, log: f}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) signal(s syscall.Signal) { _ = c.cmd.Process.Signal(s) }

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
	c.log.Close()
}

func logContains(t *testing.T, path, s string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), s)
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
