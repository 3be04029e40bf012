package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/streamcdp/streamcdp/internal/localstack"
)

// ClickHouseServer is a ClickHouse server of the test's own (the stack's
// engine, `cdp local serve clickhouse`), so stopping it disturbs no other
// test. Its data directory survives a stop.
type ClickHouseServer struct {
	t             testing.TB
	bin, lib, dir string
	// Log is the server's log file.
	Log       string
	tcp, http int
	cmd       *exec.Cmd
	done      chan struct{} // closed when the server process ended
}

// StartClickHouse starts a ClickHouse server of the test's own on free
// ports, stopped when the test ends. Under CI=true a missing engine fails.
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	lib := localstack.CHDBLibraryPath(localstack.CacheDir())
	if _, err := os.Stat(lib); err != nil {
		if InCI() {
			t.Fatalf("the ClickHouse engine is not installed (%v): run cdp local setup", err)
		}
		t.Skipf("the ClickHouse engine is not installed: %v", err)
	}
	ports, err := localstack.FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ch := &ClickHouseServer{t: t, bin: CDPBinary(t), lib: lib, dir: filepath.Join(dir, "data"), Log: filepath.Join(dir, "clickhouse.log"),
		tcp: ports.ClickHouseTCP, http: ports.ClickHouseHTTP}
	ch.Start()
	t.Cleanup(ch.Stop)
	return ch
}

// DSN is the server's clickhouse:// address (database default).
func (c *ClickHouseServer) DSN() string {
	return fmt.Sprintf("clickhouse://127.0.0.1:%d/default", c.tcp)
}

// Start starts the server (again, on its data) and waits until it answers.
func (c *ClickHouseServer) Start() {
	c.t.Helper()
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	// --engine: unsupervised, so that a test sees the engine exit and
	// decides itself when it comes back.
	c.cmd = exec.Command(c.bin, "local", "serve", "clickhouse", "--engine", "--dir", c.dir, "--lib", c.lib,
		"--tcp-port", strconv.Itoa(c.tcp), "--http-port", strconv.Itoa(c.http))
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done, cmd := make(chan struct{}), c.cmd
	c.done = done
	go func() { _ = cmd.Wait(); close(done) }()
	opts, _ := clickhouse.ParseDSN(c.DSN())
	conn, err := clickhouse.Open(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := conn.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		if i > 600 {
			b, _ := os.ReadFile(c.Log)
			c.t.Fatalf("private ClickHouse did not start: %v\n%s", err, Tail(string(b), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and waits.
func (c *ClickHouseServer) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
}

// Exited reports whether the running server ended without Stop.
func (c *ClickHouseServer) Exited() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
