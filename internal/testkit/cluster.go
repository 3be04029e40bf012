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

// StartRedisCluster starts a Redis Cluster of nodes redis-server processes
// of the test's own, without persistence, stopped when the test ends, and
// returns its redis+cluster:// URL (for Services.RedisURL). It fails under
// CI=true, and skips elsewhere, when redis-server or redis-cli is missing.
func StartRedisCluster(t testing.TB, nodes int) string {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if InCI() {
				t.Fatalf("%s not installed: run cdp local setup", bin)
			}
			t.Skip(bin + " not installed")
		}
	}
	var addrs []string
	for range nodes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", t.TempDir(),
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--appendonly", "no", "--save", "")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	// wait polls every node until ok holds, for up to 10 s.
	wait := func(what string, ok func(*redis.Client) bool) {
		for _, a := range addrs {
			cl := redis.NewClient(&redis.Options{Addr: a})
			for deadline := time.Now().Add(10 * time.Second); !ok(cl); time.Sleep(25 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("cluster node %s: %s", a, what)
				}
			}
			cl.Close()
		}
	}
	wait("did not start", func(cl *redis.Client) bool { return cl.Ping(context.Background()).Err() == nil })
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree before the cluster takes writes.
	wait("never reached cluster_state:ok", func(cl *redis.Client) bool {
		info, _ := cl.ClusterInfo(context.Background()).Result()
		return strings.Contains(info, "cluster_state:ok")
	})
	u := "redis+cluster://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}
