package testkit

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of redis-server processes of the
// test's own, without persistence, stopped when the test ends.
type RedisCluster struct {
	Ports []int
}

// StartRedisCluster starts a Redis Cluster of nodes masters (no replicas)
// on free ports. Under CI=true a missing redis-server fails the test.
func StartRedisCluster(t testing.TB, nodes int) *RedisCluster {
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
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		dir := t.TempDir()
		cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--appendonly", "no", "--save", "")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		c.Ports = append(c.Ports, port)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	for _, a := range addrs {
		cl := redis.NewClient(&redis.Options{Addr: a})
		for i := 0; cl.Ping(context.Background()).Err() != nil; i++ {
			if i > 200 {
				t.Fatalf("cluster node %s did not start", a)
			}
			time.Sleep(25 * time.Millisecond)
		}
		cl.Close()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
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
			if i > 400 {
				t.Fatalf("cluster node %s never reached cluster_state:ok", a)
			}
			time.Sleep(25 * time.Millisecond)
		}
		cl.Close()
	}
	return c
}

// url is the cluster's redis+cluster:// URL.
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
