package identity_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// redisOutage is how long Redis is down in TestRedisOutagePausesWithoutLoss
// (issue 4 asks for 30 s).
const redisOutage = 30 * time.Second

// privateRedis runs a redis-server of the test's own, so stopping it does
// not disturb other tests. It persists every write (appendfsync always), as
// a production Redis with an AOF would across a restart.
type privateRedis struct {
	t     *testing.T
	dir   string
	port  int
	fsync string
	cmd   *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis { return startPrivateRedisWith(t, "always") }

// startPrivateRedisWith starts a private redis-server with the given
// appendfsync policy and no automatic AOF rewrites (tests cut the file).
func startPrivateRedisWith(t *testing.T, fsync string) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testkit.InCI() {
			t.Fatal("redis-server not installed: run cdp local setup")
		}
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &privateRedis{t: t, dir: t.TempDir(), port: port, fsync: fsync}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", r.fsync, "--auto-aof-rewrite-percentage", "0", "--save", "")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	cl := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	defer cl.Close()
	for i := 0; ; i++ {
		if cl.Ping(context.Background()).Err() == nil {
			return
		}
		if i > 200 {
			r.t.Fatal("private redis-server did not start")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (r *privateRedis) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
	r.cmd = nil
}

// TestRedisOutagePausesWithoutLoss stops Redis for 30 s while events keep
// arriving. The processor must commit nothing while Redis is down, report
// not-ready, and resume by itself when Redis is back, ending with every
// valid event resolved exactly once and the grouping intact.
func TestRedisOutagePausesWithoutLoss(t *testing.T) {
	t.Parallel() // its own Redis; mostly waits out the outage
	rds := startPrivateRedis(t)
	s := newStage(t, 2)
	svc := s.env.Services
	svc.RedisURL = rds.url()

	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 300, 8000, 5
	cfg.DupShare, cfg.InvalidShare = 0.02, 0.01
	lines, truth := generateLines(t, cfg)
	half := len(lines) / 2

	s.write(t, lines[:half])
	procs, runners, stop := s.startWith(t, 1, svc)
	defer stop()
	s.waitConsumed(t, time.Minute)
	adm := s.env.Admin(t)
	before := s.committedTotal(t, adm)

	rds.stop()
	s.write(t, lines[half:])
	time.Sleep(redisOutage)
	if got := s.committedTotal(t, adm); got != before {
		t.Errorf("committed offsets moved from %d to %d while Redis was down", before, got)
	}
	if err := runners[0].Ready(testkit.Context(t)); err == nil {
		t.Errorf("the processor reports ready while Redis is down")
	} else {
		t.Logf("not ready during the outage: %v", err)
	}

	rds.start()
	s.waitConsumed(t, time.Minute)
	stop()

	s.resolvedEachOnce(t, truth)
	p, r := pairwise(grouping(t, procs[0].Graph(), truth), truth)
	if p < 0.99 || r < 0.99 {
		t.Errorf("after the outage: precision %.4f recall %.4f", p, r)
	}
}
