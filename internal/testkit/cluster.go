package testkit

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of redis-server processes of the
// test's own (without persistence unless asked), stopped when the test ends.
type RedisCluster struct {
	Ports []int
}

// StartRedisCluster starts a Redis Cluster of nodes masters (no replicas)
// on free ports. Under CI=true a missing redis-server fails the test.
func StartRedisCluster(t testing.TB, nodes int) *RedisCluster {
	t.Helper()
	return StartRedisClusterWith(t, nodes, "--appendonly", "no")
}

// StartRedisClusterWith is StartRedisCluster with extra redis-server
// arguments for every node, such as the local stack's persistence
// ("--appendonly", "yes", "--appendfsync", "always") for a benchmark that
// compares the two.
func StartRedisClusterWith(t testing.TB, nodes int, args ...string) *RedisCluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if InCI() {
				t.Fatalf("%s not installed: run cdp local setup", bin)
			}
			t.Skip(bin + " not installed")
		}
	}
	c := &RedisCluster{}
	var addrs []string
	for range nodes {
		port := clusterPort(t)
		dir := t.TempDir()
		out := &lockedWriter{}
		cmd := exec.Command("redis-server", append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", ""}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		p := Start(t, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = p.Wait() })
		c.Ports = append(c.Ports, port)
		a := fmt.Sprintf("127.0.0.1:%d", port)
		addrs = append(addrs, a)
		cl := redis.NewClient(&redis.Options{Addr: a})
		deadline := time.Now().Add(time.Minute)
		for cl.Ping(context.Background()).Err() != nil {
			if p.Exited() || time.Now().After(deadline) {
				t.Fatalf("cluster node %s did not start (exited: %v):\n%s", a, p.Exited(), Tail(out.String(), 20))
			}
			time.Sleep(25 * time.Millisecond)
		}
		cl.Close()
	}
	create := append([]string{"--cluster", "create"}, addrs...)
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree before the cluster takes writes.
	for _, a := range addrs {
		cl := redis.NewClient(&redis.Options{Addr: a})
		for i := 0; ; i++ {
			info, _ := cl.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if i > 2400 { // a minute
				t.Fatalf("cluster node %s never reached cluster_state:ok", a)
			}
			time.Sleep(25 * time.Millisecond)
		}
		cl.Close()
	}
	return c
}

// URL is the cluster's redis+cluster:// URL (see internal/config).
func (c *RedisCluster) URL() string {
	u := fmt.Sprintf("redis+cluster://127.0.0.1:%d", c.Ports[0])
	for i, p := range c.Ports[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += fmt.Sprintf("%saddr=127.0.0.1:%d", sep, p)
	}
	return u
}

// clusterPort is a free port whose cluster bus port (port + 10000) is
// free too and valid: a kernel-chosen ephemeral port above 55535 has no
// bus port, and redis-server then refuses to start.
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		l.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("no free port with a free cluster bus port")
	return 0
}

// lockedWriter collects a child's stdout and stderr, read while it runs.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
