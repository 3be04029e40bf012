package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// service describes one process of the stack.
type service struct {
	name string
	// what the process is, for status output
	what string
	// ports it listens on
	ports func(Ports) []int
	// command returns the program and arguments that run the service in the
	// foreground; self is the path of the cdp binary.
	command func(s *Stack, self string) (string, []string, error)
	// health checks the running service and returns a short detail line.
	health func(ctx context.Context, s *Stack) (string, error)
	// startTimeout bounds how long `up` waits for health.
	startTimeout time.Duration
}

// Services are started in this order: the registry has no dependency on the
// broker here, but listing Kafka first matches how users think of the stack.
var services = []service{
	{
		name: "kafka", what: "Kafka broker (kfake)",
		ports: func(p Ports) []int { return []int{p.Kafka} },
		command: func(s *Stack, self string) (string, []string, error) {
			return self, []string{"local", "serve", "kafka", "--dir", s.path("kafka"), "--port", strconv.Itoa(s.Ports.Kafka)}, nil
		},
		health:       kafkaHealth,
		startTimeout: 30 * time.Second,
	},
	{
		name: "registry", what: "schema registry (srfake, journaled)",
		ports: func(p Ports) []int { return []int{p.Registry} },
		command: func(s *Stack, self string) (string, []string, error) {
			return self, []string{"local", "serve", "registry", "--dir", s.path("registry"), "--port", strconv.Itoa(s.Ports.Registry)}, nil
		},
		health:       registryHealth,
		startTimeout: 15 * time.Second,
	},
	{
		name: "redis", what: "Redis (redis-server)",
		ports: func(p Ports) []int { return []int{p.Redis} },
		command: func(s *Stack, _ string) (string, []string, error) {
			bin, err := exec.LookPath("redis-server")
			if err != nil {
				return "", nil, errors.New("redis-server is not installed: run `cdp local setup` (or apt-get install redis-server)")
			}
			dir := s.path("redis")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", nil, fmt.Errorf("creating %s: %w", dir, err)
			}
			// An append-only file fsynced at every write keeps features and
			// the identity graph across any crash: each processing step is one
			// script call, so this costs an fsync per step, not per event
			// (measured about 4% of identity's throughput, see the README).
			// lazyfree: large keys are freed off the main thread. Snapshots
			// are off because the AOF already has everything.
			return bin, []string{"--port", strconv.Itoa(s.Ports.Redis), "--bind", Host, "--dir", dir,
				"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
				"--lazyfree-lazy-expire", "yes", "--lazyfree-lazy-user-del", "yes",
				"--logfile", ""}, nil
		},
		health:       redisHealth,
		startTimeout: 15 * time.Second,
	},
	{
		name: "clickhouse", what: "ClickHouse (chDB engine)",
		ports: func(p Ports) []int { return []int{p.ClickHouseTCP, p.ClickHouseHTTP} },
		command: func(s *Stack, self string) (string, []string, error) {
			if s.CHDBLibrary == "" {
				return "", nil, errors.New("the ClickHouse engine is not installed: run `cdp local setup`")
			}
			if _, err := os.Stat(s.CHDBLibrary); err != nil {
				return "", nil, fmt.Errorf("the ClickHouse engine %s is missing: run `cdp local setup`", s.CHDBLibrary)
			}
			return self, []string{"local", "serve", "clickhouse", "--dir", s.path("clickhouse"), "--lib", s.CHDBLibrary,
				"--tcp-port", strconv.Itoa(s.Ports.ClickHouseTCP), "--http-port", strconv.Itoa(s.Ports.ClickHouseHTTP)}, nil
		},
		health:       clickhouseHealth,
		startTimeout: 90 * time.Second,
	},
}

// ServiceNames lists the stack's services in start order.
func ServiceNames() []string {
	names := make([]string, len(services))
	for i, sv := range services {
		names[i] = sv.name
	}
	return names
}

func kafkaHealth(ctx context.Context, s *Stack) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr(s.Ports.Kafka)), kgo.MetadataMinAge(time.Second))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx)
	if err != nil {
		return "", fmt.Errorf("metadata: %w", err)
	}
	return fmt.Sprintf("%d broker(s), %d topic(s)", len(md.Brokers), len(md.Topics.Names())), nil
}

func registryHealth(ctx context.Context, s *Stack) (string, error) {
	body, err := httpGet(ctx, "http://"+addr(s.Ports.Registry)+"/subjects")
	if err != nil {
		return "", err
	}
	var subjects []string
	if err := json.Unmarshal(body, &subjects); err != nil {
		return "", fmt.Errorf("unexpected /subjects answer %q", body)
	}
	return fmt.Sprintf("%d subject(s)", len(subjects)), nil
}

func redisHealth(ctx context.Context, s *Stack) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr(s.Ports.Redis), DialTimeout: time.Second, MaxRetries: -1})
	defer cl.Close()
	if err := cl.Ping(ctx).Err(); err != nil {
		return "", err
	}
	info, err := cl.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	n, _ := cl.DBSize(ctx).Result()
	return fmt.Sprintf("redis %s, %d key(s)", infoField(info, "redis_version"), n), nil
}

func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return "?"
}

func clickhouseHealth(ctx context.Context, s *Stack) (string, error) {
	body, err := httpGet(ctx, "http://"+addr(s.Ports.ClickHouseHTTP)+"/?query="+url.QueryEscape("SELECT version()"))
	if err != nil {
		return "", fmt.Errorf("http: %w", err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr(s.Ports.ClickHouseTCP))
	if err != nil {
		return "", fmt.Errorf("native port: %w", err)
	}
	c.Close()
	return "ClickHouse " + strings.TrimSpace(string(body)), nil
}

func httpGet(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
