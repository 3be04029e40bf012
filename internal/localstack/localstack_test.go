package localstack_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamcdp/streamcdp/internal/localstack"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// requireTools fails (CI) or skips (laptop) when the stack cannot run here.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, c := range []string{"redis-server", "redis-cli", "kcat", "curl"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if _, err := os.Stat(localstack.CHDBLibraryPath(localstack.CacheDir())); err != nil {
		missing = append(missing, "the ClickHouse engine")
	}
	if len(missing) > 0 {
		msg := "missing " + strings.Join(missing, ", ") + ": run cdp local setup"
		if testkit.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestStackSurvivesCrashes starts a private stack, writes data to every
// service, kills the broker and ClickHouse with SIGKILL, and checks that
// status names exactly those as down and that up brings them back with the
// topics, records, schema ids and table rows intact. It also checks that
// third-party clients (kcat, redis-cli, curl) work against the stack.
func TestStackSurvivesCrashes(t *testing.T) {
	requireTools(t)
	bin := testkit.CDPBinary(t)
	dir := t.TempDir()
	if out, err := run(t, bin, "local", "up", "--dir", dir, "--ports", "auto"); err != nil {
		t.Fatalf("cdp local up: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = run(t, bin, "local", "down", "--dir", dir) })
	st, ok, err := localstack.Open(dir)
	if err != nil || !ok {
		t.Fatalf("opening stack: ok=%v err=%v", ok, err)
	}
	env := map[string]string{}
	for _, kv := range st.Env() {
		env[kv[0]] = kv[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Kafka: a topic with three records.
	cl, err := kgo.NewClient(kgo.SeedBrokers(env["CDP_KAFKA_BROKERS"]), kgo.DefaultProduceTopic("crash.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "crash.test"); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	for i := range 3 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("r%d", i))).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	// Registry: two schemas; remember their ids.
	reg, err := sr.NewClient(sr.URLs(env["CDP_SCHEMA_REGISTRY_URL"]))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, name := range []string{"a", "b"} {
		ss, err := reg.CreateSchema(ctx, name+"-value", sr.Schema{Type: sr.TypeAvro,
			Schema: fmt.Sprintf(`{"type":"record","name":"%s","fields":[{"name":"x","type":"int"}]}`, strings.ToUpper(name))})
		if err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		ids[name] = ss.ID
	}
	// ClickHouse: a table with 1000 rows.
	chURL := env["CDP_CLICKHOUSE_HTTP_URL"]
	chQuery(t, chURL, "CREATE TABLE crash_test (a UInt64) ENGINE = MergeTree ORDER BY a")
	chQuery(t, chURL, "INSERT INTO crash_test SELECT number FROM numbers(1000)")
	// Redis via redis-cli.
	if out, err := run(t, "redis-cli", "-u", env["CDP_REDIS_URL"], "SET", "crash:k", "v"); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("redis-cli SET: %v %q", err, out)
	}

	for _, svc := range []string{"kafka", "clickhouse"} {
		if err := st.Kill(svc); err != nil {
			t.Fatalf("kill %s: %v", svc, err)
		}
	}
	out, err := run(t, bin, "local", "status", "--dir", dir)
	if err == nil {
		t.Fatalf("status exited 0 with two services down:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		want := map[string]string{"kafka": "DOWN", "clickhouse": "DOWN", "registry": "up", "redis": "up"}[f[0]]
		if want != "" && f[1] != want {
			t.Errorf("status of %s = %s, want %s\n%s", f[0], f[1], want, out)
		}
	}

	// The same command again, --ports auto included: the stack keeps its
	// ports (moving them would strand the running services and the env).
	if out, err := run(t, bin, "local", "up", "--dir", dir, "--ports", "auto"); err != nil {
		t.Fatalf("cdp local up after crash: %v\n%s", err, out)
	}
	if after, _, err := localstack.Open(dir); err != nil || after.Ports != st.Ports {
		t.Fatalf("ports after cdp local up --ports auto: %+v (%v), before %+v", after.Ports, err, st.Ports)
	}
	if out, err := run(t, bin, "local", "status", "--dir", dir); err != nil {
		t.Fatalf("status after restart: %v\n%s", err, out)
	}

	// Records are back, in full.
	cons, err := kgo.NewClient(kgo.SeedBrokers(env["CDP_KAFKA_BROKERS"]), kgo.ConsumeTopics("crash.test"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := map[string]bool{}
	for len(got) < 3 && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	if len(got) != 3 || !got["r0"] || !got["r2"] {
		t.Errorf("records after broker restart = %v, want r0 r1 r2", got)
	}
	// Schema ids are unchanged and new ids continue after them.
	for name, id := range ids {
		ss, err := reg.SchemaByVersion(ctx, name+"-value", 1)
		if err != nil || ss.ID != id {
			t.Errorf("schema %s after restart: id %d err %v, want id %d", name, ss.ID, err, id)
		}
	}
	if ss, err := reg.CreateSchema(ctx, "c-value", sr.Schema{Type: sr.TypeAvro,
		Schema: `{"type":"record","name":"C","fields":[{"name":"x","type":"int"}]}`}); err != nil || ss.ID != ids["b"]+1 {
		t.Errorf("next schema id = %d (err %v), want %d", ss.ID, err, ids["b"]+1)
	}
	if got := strings.TrimSpace(chQuery(t, chURL, "SELECT count() FROM crash_test")); got != "1000" {
		t.Errorf("clickhouse rows after restart = %s, want 1000", got)
	}
	if v := chQuery(t, chURL, "SELECT version()"); !strings.HasPrefix(v, "26.") {
		t.Errorf("clickhouse version %q, want 26.x", v)
	}

	// Third-party clients.
	if out, err := run(t, "kcat", "-b", env["CDP_KAFKA_BROKERS"], "-L"); err != nil || !strings.Contains(out, `topic "crash.test" with 2 partitions`) {
		t.Errorf("kcat -L: %v\n%s", err, out)
	}
	if out, err := run(t, "redis-cli", "-u", env["CDP_REDIS_URL"], "GET", "crash:k"); err != nil || strings.TrimSpace(out) != "v" {
		t.Errorf("redis-cli GET after restart: %v %q", err, out)
	}
	if out, err := run(t, "curl", "-sf", chURL+"/?query=SELECT+version()"); err != nil || !strings.HasPrefix(out, "26.") {
		t.Errorf("curl ClickHouse version: %v %q", err, out)
	}
}

func chQuery(t *testing.T, base, q string) string {
	t.Helper()
	resp, err := http.Post(base+"/?"+url.Values{"query": {q}}.Encode(), "text/plain", nil)
	if err != nil {
		t.Fatalf("clickhouse %q: %v", q, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("clickhouse %q: %s %s", q, resp.Status, b.String())
	}
	return b.String()
}

// TestTakenPortIsExplained checks that up refuses a taken port with a
// message naming the fix.
func TestTakenPortIsExplained(t *testing.T) {
	requireTools(t)
	bin := testkit.CDPBinary(t)
	ports, err := localstack.FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", ports.Kafka), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.ListenAndServe() }()
	defer srv.Close()
	time.Sleep(100 * time.Millisecond)
	dir := t.TempDir()
	out, err := run(t, bin, "local", "up", "--dir", dir, "--kafka-port", fmt.Sprint(ports.Kafka),
		"--registry-port", fmt.Sprint(ports.Registry), "--redis-port", fmt.Sprint(ports.Redis),
		"--clickhouse-port", fmt.Sprint(ports.ClickHouseTCP), "--clickhouse-http-port", fmt.Sprint(ports.ClickHouseHTTP))
	t.Cleanup(func() { _, _ = run(t, bin, "local", "down", "--dir", dir) })
	if err == nil {
		t.Fatalf("up succeeded on a taken port:\n%s", out)
	}
	for _, want := range []string{fmt.Sprintf("port %d", ports.Kafka), "in use", "--ports auto"} {
		if !strings.Contains(out, want) {
			t.Errorf("error %q lacks %q", out, want)
		}
	}
}
