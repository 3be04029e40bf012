// Package testkit connects integration tests to the services named by the
// CDP_* environment (see `cdp local env`) and gives every test its own
// topics, Redis key prefix and ClickHouse database, so tests run in parallel
// without seeing each other's data.
//
// When a variable is missing the test is skipped on a laptop, but fails under
// CI=true: CI must never pass by silently skipping integration tests.
package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamcdp/streamcdp/internal/config"
)

// Env is one test's view of the stack. Every name it hands out is unique to
// the test.
type Env struct {
	// Services points at the stack; its TopicPrefix is unique to the test, so
	// Services.Topic("events.raw") names a topic no other test uses.
	Services config.Services
	// ID is a short random token unique to this test, usable as a prefix.
	ID string
}

var required = map[string]string{
	"CDP_KAFKA_BROKERS":       "Kafka",
	"CDP_SCHEMA_REGISTRY_URL": "schema registry",
	"CDP_REDIS_URL":           "Redis",
	"CDP_CLICKHOUSE_DSN":      "ClickHouse",
}

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// New returns the Env for t, or skips t (fails under CI=true) when the stack
// is not configured. Start one with `cdp local up` and `eval "$(cdp local env)"`,
// or run everything through scripts/test.sh.
func New(t testing.TB) *Env {
	t.Helper()
	var missing []string
	for k, what := range required {
		if os.Getenv(k) == "" {
			missing = append(missing, k+" ("+what+")")
		}
	}
	if len(missing) > 0 {
		msg := "integration test needs the local stack; missing " + strings.Join(missing, ", ") +
			`: run scripts/test.sh, or cdp local up && eval "$(cdp local env)"`
		if InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s, err := config.Load()
	if err != nil {
		t.Fatalf("loading CDP_* environment: %v", err)
	}
	id := randomID()
	s.TopicPrefix = "t" + id
	return &Env{Services: s, ID: id}
}

func randomID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Context returns a context cancelled when the test ends or after five
// minutes: a bound for a test that hangs, generous enough for a whole
// test's work on a loaded two-core machine (a minute was not: producing
// 12k events took over a minute there under -race).
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Kafka returns a client for the stack's brokers, closed when the test ends.
func (e *Env) Kafka(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.Services.KafkaBrokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns a Kafka admin client, closed when the test ends.
func (e *Env) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(e.Kafka(t))
}

// Topic creates the topic Services.Topic(logical) with the given partitions
// and deletes it when the test ends. It returns the physical name.
func (e *Env) Topic(t testing.TB, logical string, partitions int32) string {
	t.Helper()
	name := e.Services.Topic(logical)
	adm := e.Admin(t)
	ctx := Context(t)
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("creating topic %s: %v %v", name, err, resp.Err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, name)
	})
	return name
}

// Registry returns a schema registry client. Tests should register subjects
// named after their own topics so they do not collide.
func (e *Env) Registry(t testing.TB) *sr.Client {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(e.Services.SchemaRegistryURL))
	if err != nil {
		t.Fatalf("schema registry client: %v", err)
	}
	return cl
}

// RedisPrefix is the key prefix this test must use; keys under it are
// deleted when the test ends.
func (e *Env) RedisPrefix() string { return "t" + e.ID + ":" }

// Redis returns a client for the stack's Redis (a cluster client when
// CDP_REDIS_URL names a Redis Cluster). Keys under RedisPrefix are removed
// when the test ends.
func (e *Env) Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	cl, err := config.NewRedis(e.Services.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Ping(Context(t)).Err(); err != nil {
		t.Fatalf("redis at %s: %v", e.Services.RedisURL, err)
	}
	t.Cleanup(func() {
		// A benchmark leaves a few hundred thousand keys: UNLINK them in
		// pipelines (a cluster client splits each by slot), so that the
		// next test does not find the shared Redis growing.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		defer cl.Close()
		keys, err := Keys(ctx, cl, e.RedisPrefix()+"*")
		for len(keys) > 0 && err == nil {
			n := min(len(keys), 1000)
			_, err = cl.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys[:n] {
					p.Unlink(ctx, k)
				}
				return nil
			})
			keys = keys[n:]
		}
		if err != nil {
			t.Logf("testkit: removing the test's Redis keys: %v", err)
		}
	})
	return cl
}

// Keys lists the keys matching pattern, on every master of a cluster.
func Keys(ctx context.Context, cl redis.UniversalClient, pattern string) ([]string, error) {
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	switch c := cl.(type) {
	case *redis.ClusterClient:
		return keys, c.ForEachMaster(ctx, scan)
	case *redis.Client:
		return keys, scan(ctx, c)
	}
	return nil, fmt.Errorf("testkit: listing keys of a %T", cl)
}

// ClickHouseDatabase is the database this test owns.
func (e *Env) ClickHouseDatabase() string { return "t" + e.ID }

// ClickHouse creates the test's database, returns a connection whose default
// database it is, and drops the database when the test ends.
func (e *Env) ClickHouse(t testing.TB) driver.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(e.Services.ClickHouseDSN)
	if err != nil {
		t.Fatalf("parsing CDP_CLICKHOUSE_DSN: %v", err)
	}
	admin, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	ctx := Context(t)
	db := e.ClickHouseDatabase()
	if err := admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		t.Fatalf("creating clickhouse database %s at %s: %v", db, e.Services.ClickHouseDSN, err)
	}
	dbOpts := *opts
	dbOpts.Auth.Database = db
	conn, err := clickhouse.Open(&dbOpts)
	if err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close()
		_ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
		_ = admin.Close()
	})
	return conn
}

// ClickHouseHTTP returns the base URL of ClickHouse's HTTP interface when the
// DSN names one (http://), or derives it from CDP_CLICKHOUSE_HTTP_URL.
func (e *Env) ClickHouseHTTP(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("CDP_CLICKHOUSE_HTTP_URL"); v != "" {
		return v
	}
	u, err := url.Parse(e.Services.ClickHouseDSN)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return fmt.Sprintf("%s://%s", u.Scheme, u.Host)
	}
	t.Fatalf("no ClickHouse HTTP URL: set CDP_CLICKHOUSE_HTTP_URL")
	return ""
}

// CDPBinary returns the cdp binary that tests run as a separate process:
// $CDP_BIN when set (scripts/test.sh builds one), else a fresh build.
func CDPBinary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("CDP_BIN"); b != "" {
		return b
	}
	out := filepath.Join(t.TempDir(), "cdp")
	if b, err := exec.Command("go", "build", "-o", out, "github.com/streamcdp/streamcdp/cmd/cdp").CombinedOutput(); err != nil {
		t.Fatalf("building cdp: %v\n%s", err, b)
	}
	return out
}
