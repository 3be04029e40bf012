// Package bench runs the whole pipeline (identity, features, segments,
// warehouse and optionally recommend, each as its own `cdp run` child
// process) on generated traffic against the configured services, in an
// isolated namespace: a fresh topic prefix (which also names the consumer
// groups, the transactional ids and the Redis key prefix) and a fresh
// ClickHouse database. `cdp bench` measures it (Run); the end-to-end crash
// test (crash_test.go) kills its processes and compares the final state
// with a clean run's.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
	"github.com/streamcdp/streamcdp/topology"
)

// Pipeline is one isolated namespace on the services and the processes
// that run in it.
type Pipeline struct {
	// Svc is the services with the run's topic prefix and a ClickHouse DSN
	// naming the run's database; children get exactly this.
	Svc      config.Services
	Topo     *topology.Topology
	Database string
	// Bin is the cdp binary the processors run from; LogDir holds one log
	// file per processor.
	Bin, LogDir string
	// RawPartition, when >= 0, sends every raw event to that partition
	// instead of by key: one identity task then sees them in one order,
	// which makes two runs over the same input comparable profile by
	// profile (the crash test).
	RawPartition int32

	log   *zap.Logger
	kcl   *kgo.Client
	adm   *kadm.Client
	rdb   redis.UniversalClient
	admCH driver.Conn
}

// CheckServices connects to every service the pipeline needs and says
// which one is missing and how to start it.
func CheckServices(ctx context.Context, svc config.Services) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hint := `start the local stack (bin/cdp local up; eval "$(bin/cdp local env)") or point the CDP_* variables at running services`
	var errs []error
	cl, err := kgo.NewClient(kgo.SeedBrokers(svc.KafkaBrokers...))
	if err == nil {
		_, err = kadm.NewClient(cl).ListBrokers(ctx)
		cl.Close()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("kafka at %s (CDP_KAFKA_BROKERS) is not reachable: %w", strings.Join(svc.KafkaBrokers, ","), err))
	}
	if rc, err := sr.NewClient(sr.URLs(svc.SchemaRegistryURL)); err != nil {
		errs = append(errs, fmt.Errorf("schema registry %s (CDP_SCHEMA_REGISTRY_URL): %w", svc.SchemaRegistryURL, err))
	} else if _, err := rc.Subjects(ctx); err != nil {
		errs = append(errs, fmt.Errorf("schema registry at %s (CDP_SCHEMA_REGISTRY_URL) is not reachable: %w", svc.SchemaRegistryURL, err))
	}
	if rdb, err := config.NewRedis(svc.RedisURL); err != nil {
		errs = append(errs, fmt.Errorf("redis %s (CDP_REDIS_URL): %w", svc.RedisURL, err))
	} else {
		if err := rdb.Ping(ctx).Err(); err != nil {
			errs = append(errs, fmt.Errorf("redis at %s (CDP_REDIS_URL) is not reachable: %w", svc.RedisURL, err))
		}
		_ = rdb.Close()
	}
	if conn, err := openClickHouse(svc.ClickHouseDSN, ""); err != nil {
		errs = append(errs, fmt.Errorf("clickhouse %s (CDP_CLICKHOUSE_DSN): %w", svc.ClickHouseDSN, err))
	} else {
		if err := conn.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clickhouse at %s (CDP_CLICKHOUSE_DSN) is not reachable: %w", svc.ClickHouseDSN, err))
		}
		_ = conn.Close()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w\n%s", errors.Join(errs...), hint)
	}
	return nil
}

func openClickHouse(dsn, database string) (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the DSN: %w", err)
	}
	if database != "" {
		opts.Auth.Database = database
	}
	return clickhouse.Open(opts)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_]`)

// NewPipeline checks the services, creates the namespace named prefix
// (topics from the built-in topology, a ClickHouse database) and returns
// it. Processes are started with Start.
func NewPipeline(ctx context.Context, svc config.Services, prefix, bin, logDir string, log *zap.Logger) (*Pipeline, error) {
	if err := CheckServices(ctx, svc); err != nil {
		return nil, err
	}
	topo, err := topology.Default()
	if err != nil {
		return nil, fmt.Errorf("loading the built-in topology: %w", err)
	}
	p := &Pipeline{Topo: topo, Bin: bin, LogDir: logDir, RawPartition: -1, log: log}
	p.Svc = svc
	p.Svc.TopicPrefix = prefix
	p.Database = unsafeName.ReplaceAllString(prefix, "_")
	u, err := url.Parse(svc.ClickHouseDSN)
	if err != nil {
		return nil, fmt.Errorf("parsing CDP_CLICKHOUSE_DSN: %w", err)
	}
	u.Path = "/" + p.Database
	p.Svc.ClickHouseDSN = u.String()
	if p.kcl, err = kgo.NewClient(kgo.SeedBrokers(svc.KafkaBrokers...)); err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	p.adm = kadm.NewClient(p.kcl)
	if p.rdb, err = config.NewRedis(svc.RedisURL); err != nil {
		p.Close()
		return nil, err
	}
	if _, err := topo.Apply(ctx, p.adm, prefix); err != nil {
		p.Close()
		return nil, fmt.Errorf("creating the topics of prefix %s: %w", prefix, err)
	}
	if p.admCH, err = openClickHouse(svc.ClickHouseDSN, ""); err != nil {
		p.Close()
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if err := p.admCH.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+p.Database); err != nil {
		p.Close()
		return nil, fmt.Errorf("creating clickhouse database %s: %w", p.Database, err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		p.Close()
		return nil, fmt.Errorf("creating the log directory: %w", err)
	}
	return p, nil
}

// Admin is the pipeline's Kafka admin client.
func (p *Pipeline) Admin() *kadm.Client { return p.adm }

// Redis is a client of the services' Redis (keys of every prefix).
func (p *Pipeline) Redis() redis.UniversalClient { return p.rdb }

// ClickHouse opens a connection whose default database is the run's.
func (p *Pipeline) ClickHouse() (driver.Conn, error) {
	return openClickHouse(p.Svc.ClickHouseDSN, "")
}

// Close releases the clients (not the data: see Drop).
func (p *Pipeline) Close() {
	if p.kcl != nil {
		p.kcl.Close()
	}
	if p.rdb != nil {
		_ = p.rdb.Close()
	}
	if p.admCH != nil {
		_ = p.admCH.Close()
	}
}

// Drop deletes what the run left: its topics, its ClickHouse database and
// its Redis keys, so that repeated benchmarks do not fill the machine.
func (p *Pipeline) Drop(ctx context.Context) error {
	var errs []error
	var topics []string
	for _, t := range p.Topo.Topics {
		topics = append(topics, p.Svc.Topic(t.Name))
	}
	if _, err := p.adm.DeleteTopics(ctx, topics...); err != nil {
		errs = append(errs, fmt.Errorf("deleting topics: %w", err))
	}
	var groups []string
	for _, pr := range p.Topo.Processors {
		groups = append(groups, pr.ConsumerGroup(p.Svc.TopicPrefix))
	}
	_, _ = p.adm.DeleteGroups(ctx, groups...)
	if err := p.admCH.Exec(ctx, "DROP DATABASE IF EXISTS "+p.Database); err != nil {
		errs = append(errs, fmt.Errorf("dropping database %s: %w", p.Database, err))
	}
	if err := deleteKeys(ctx, p.rdb, p.Svc.TopicPrefix+":*"); err != nil {
		errs = append(errs, fmt.Errorf("deleting redis keys %s:*: %w", p.Svc.TopicPrefix, err))
	}
	return errors.Join(errs...)
}

func deleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) error {
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 5000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 500 {
				if err := c.Unlink(ctx, batch...).Err(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, del)
	case *redis.Client:
		return del(ctx, c)
	}
	return fmt.Errorf("deleting keys of a %T", rdb)
}

// Env is the environment of a child process: the run's services.
func (p *Pipeline) Env(extra ...string) []string {
	sv := p.Svc
	return append(append(os.Environ(),
		"CDP_KAFKA_BROKERS="+strings.Join(sv.KafkaBrokers, ","),
		"CDP_SCHEMA_REGISTRY_URL="+sv.SchemaRegistryURL,
		"CDP_REDIS_URL="+sv.RedisURL,
		"CDP_IDENTITY_REDIS_URL="+sv.IdentityRedis(),
		"CDP_CLICKHOUSE_DSN="+sv.ClickHouseDSN,
		"CDP_TOPIC_PREFIX="+sv.TopicPrefix,
	), extra...)
}

// Group and Inputs are a processor's consumer group and physical input
// topics.
func (p *Pipeline) Group(name string) string {
	spec, _ := p.Topo.Processor(name)
	return spec.ConsumerGroup(p.Svc.TopicPrefix)
}

func (p *Pipeline) Inputs(name string) []string {
	spec, _ := p.Topo.Processor(name)
	out := make([]string, len(spec.Inputs))
	for i, in := range spec.Inputs {
		out[i] = p.Svc.Topic(in)
	}
	return out
}

// Encode generates cfg's traffic and returns it as records of the raw
// topic (Avro, Confluent framing, keyed as the producer library keys
// them), with each record's message id. Lines the generator makes invalid
// on purpose are left out: the benchmark measures the valid path. Encoding
// happens before anything is produced so that its CPU is not counted as
// the pipeline's.
func (p *Pipeline) Encode(ctx context.Context, cfg generate.Config, progress func()) ([]*kgo.Record, []string, error) {
	prod, err := producer.New(ctx, producer.Config{Brokers: p.Svc.KafkaBrokers, RegistryURL: p.Svc.SchemaRegistryURL, TopicPrefix: p.Svc.TopicPrefix})
	if err != nil {
		return nil, nil, fmt.Errorf("preparing to encode events: %w", err)
	}
	defer func() { _ = prod.Close(ctx) }()
	var (
		recs []*kgo.Record
		ids  []string
	)
	sink := generate.SinkFunc(func(ctx context.Context, line []byte) error {
		if progress != nil {
			progress()
		}
		ev, err := schemas.ParseJSON(line)
		if err != nil {
			return nil // a deliberately invalid line
		}
		rec, err := prod.Prepare(ctx, &ev)
		if err != nil {
			var inv *schemas.FieldError
			if errors.As(err, &inv) {
				return nil
			}
			return err
		}
		recs = append(recs, rec)
		ids = append(ids, ev.MessageID)
		return nil
	})
	if _, err := generate.Generate(ctx, cfg, sink); err != nil {
		return nil, nil, fmt.Errorf("generating events: %w", err)
	}
	return recs, ids, nil
}

// Producer returns a client that produces raw records as fast as the
// broker takes them (or to RawPartition).
func (p *Pipeline) Producer() (*kgo.Client, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(p.Svc.KafkaBrokers...), kgo.ProducerLinger(5 * time.Millisecond),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.MaxBufferedRecords(50_000),
		kgo.ProducerBatchMaxBytes(1 << 20)}
	if p.RawPartition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return cl, nil
}

// Produce sends recs in order, at rate records per second (0: as fast as
// possible), stamping each with the wall clock it was handed to the client
// at, and waits for every acknowledgement. sent is called after each one
// is handed over.
func (p *Pipeline) Produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, rate float64, sent func(i int)) error {
	var (
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	for i, r := range recs {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		if p.RawPartition >= 0 {
			r.Partition = p.RawPartition
		}
		r.Timestamp = time.Now()
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
		if sent != nil {
			sent(i)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flushing raw events: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		return fmt.Errorf("producing raw events: %w", first)
	}
	return nil
}

// Progress is where every processor's group stands at one moment.
type Progress struct {
	At time.Time
	// Committed is each processor's committed records over all its inputs,
	// Ends their end offsets, CaughtUp whether every input partition is
	// committed to its end.
	Committed, Ends map[string]int64
	CaughtUp        map[string]bool
	// First is each processor's committed offsets on its first input.
	First map[string]int64
}

// Look reads the end offsets of the processors' inputs, then their
// committed offsets (in that order, so caught up means caught up with
// everything that existed when the look began).
func (p *Pipeline) Look(ctx context.Context, names []string) (Progress, error) {
	pr := Progress{Committed: map[string]int64{}, Ends: map[string]int64{}, CaughtUp: map[string]bool{}, First: map[string]int64{}}
	var topics []string
	for _, n := range names {
		for _, t := range p.Inputs(n) {
			if !slices.Contains(topics, t) { // kfake refuses a request naming a topic twice
				topics = append(topics, t)
			}
		}
	}
	ends, err := p.endOffsets(ctx, topics)
	if err != nil {
		return pr, err
	}
	for _, n := range names {
		committed, err := p.adm.FetchOffsets(ctx, p.Group(n))
		if errors.Is(err, kerr.GroupIDNotFound) {
			// Not joined yet (a processor just started, slowly on a busy
			// machine): it has committed nothing.
			committed, err = nil, nil
		}
		if err != nil {
			return pr, fmt.Errorf("fetching the offsets of %s: %w", p.Group(n), err)
		}
		inputs := p.Inputs(n)
		caught := true
		for _, t := range inputs {
			ends.Each(func(o kadm.ListedOffset) {
				if o.Topic != t {
					return
				}
				pr.Ends[n] += o.Offset
				at := int64(0)
				if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.At > 0 {
					at = c.At
				}
				pr.Committed[n] += at
				if t == inputs[0] {
					pr.First[n] += at
				}
				if o.Offset > 0 && at < o.Offset {
					caught = false
				}
			})
		}
		pr.CaughtUp[n] = caught
	}
	pr.At = time.Now()
	return pr, nil
}

// Child is one `cdp run <name>` process.
type Child struct {
	Name, Addr string
	Cmd        *exec.Cmd
	LogPath    string
	done       chan struct{}
	err        error
}

// Start runs `cdp run name` with a stable instance id (so a restart fences
// its predecessor and takes its partitions back as a static member) and
// waits until it serves /healthz, failing at once if it exits.
func (p *Pipeline) Start(ctx context.Context, name string, extraEnv ...string) (*Child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(p.LogDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", logPath, err)
	}
	cmd := exec.Command(p.Bin, "run", name, "--instance", name+"-0", "--metrics-addr", addr)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.Env(extraEnv...), logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s run %s: %w", p.Bin, name, err)
	}
	c := &Child{Name: name, Addr: addr, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); logf.Close(); close(c.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c.Exited() {
			return nil, fmt.Errorf("cdp run %s exited at start (%v); its log ends:\n%s", name, c.err, c.LogTail(30))
		}
		if healthy(addr) {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.Kill()
			return nil, fmt.Errorf("cdp run %s did not serve /healthz on %s within 90s; its log ends:\n%s", name, addr, c.LogTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func healthy(addr string) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Exited reports whether the process has ended; Err is how.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *Child) Err() error { <-c.done; return c.err }

// Kill sends SIGKILL and waits for the end.
func (c *Child) Kill() {
	_ = c.Cmd.Process.Kill()
	<-c.done
}

// Stop sends SIGTERM and waits up to timeout before killing.
func (c *Child) Stop(timeout time.Duration) error {
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.Kill()
		return fmt.Errorf("cdp run %s did not stop within %s of SIGTERM; killed", c.Name, timeout)
	}
}

// LogTail is the end of the process's log, for error messages.
func (c *Child) LogTail(n int) string {
	b, _ := os.ReadFile(c.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CPU is the process's user+system CPU time so far (from /proc).
func (c *Child) CPU() (time.Duration, error) {
	return procCPU(c.Cmd.Process.Pid)
}

// clockTick is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture Go supports.
const clockTick = 100

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of pid %d: %w", pid, err)
	}
	// Fields after the command name (which may hold spaces) start at the
	// state, field 3; utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, fmt.Errorf("parsing utime of pid %d: %w", pid, err)
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, fmt.Errorf("parsing stime of pid %d: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// Metric sums the samples of a Prometheus counter the child serves.
func (c *Child) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping %s's metrics: %w", c.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("scraping %s's metrics: %w", c.Name, err)
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// endOffsets lists the end offsets of topics, again after a short pause
// while a partition's answer is a retriable error: the local broker has
// been seen to answer UNKNOWN_TOPIC_OR_PARTITION for a moment about topics
// that exist, while the processors' clients create and fetch.
func (p *Pipeline) endOffsets(ctx context.Context, topics []string) (kadm.ListedOffsets, error) {
	for try := 1; ; try++ {
		ends, err := p.adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("listing end offsets: %w", err)
		}
		var errs []error
		retriable := true
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", o.Topic, o.Partition, o.Err))
				retriable = retriable && kerr.IsRetriable(o.Err)
			}
		})
		if len(errs) == 0 {
			return ends, nil
		}
		if !retriable || try == 5 {
			return nil, fmt.Errorf("listing end offsets (try %d): %w", try, errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(try) * 200 * time.Millisecond):
		}
	}
}
