package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/schemas"
)

// Options are `cdp bench`'s settings.
type Options struct {
	Events  int    // events of the throughput phase
	Persons int    // simulated persons (0: Events/50)
	Seed    uint64 // generator seed
	Span    time.Duration
	// LatencyEvents are produced after the throughput phase has drained,
	// at LatencyRate per second, to measure event -> membership latency
	// when the pipeline is not saturated (0: no latency phase).
	LatencyEvents int
	LatencyRate   float64
	Recommend     bool
	Bin           string // the cdp binary the processors run from
	LogDir        string
	Keep          bool          // leave topics, keys and database behind
	Timeout       time.Duration // for the whole run
	Progress      bool          // progress bars on stderr
	// StackDir is a `cdp local` directory whose run/*.pid name the
	// services' processes, to measure their CPU too (empty: not measured).
	StackDir string
}

// ServiceCPU is a service process's CPU during the throughput phase.
type ServiceCPU struct {
	Name       string  `json:"name"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// Processor is one processor's measurements.
type Processor struct {
	Name string `json:"name"`
	// Records is what its group committed over all its inputs in the
	// throughput phase; Events what it committed of its first input (raw
	// for identity, resolved for features and warehouse, changes for
	// segments).
	Records int64 `json:"records"`
	Events  int64 `json:"first_input_records"`
	// Seconds from the first raw event produced to the moment it had
	// committed everything its inputs held after its upstream was done.
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	EventsPerSec  float64 `json:"first_input_records_per_sec"`
	// PeakPerSec is the highest rate of its first input over a 2 s window.
	PeakPerSec float64 `json:"peak_first_input_per_sec"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerEvent is CPU microseconds per raw event of the phase.
	CPUMicrosPerEvent float64 `json:"cpu_us_per_raw_event"`
}

// Latency is a distribution in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Result is what `cdp bench` reports.
type Result struct {
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Prefix  string    `json:"topic_prefix"`

	Events        int     `json:"events"`
	Persons       int     `json:"persons"`
	Seed          uint64  `json:"seed"`
	ProduceSecs   float64 `json:"produce_seconds"`
	ProducePerSec float64 `json:"produce_per_sec"`
	// EndToEnd is from the first raw event produced to the moment every
	// processor had committed all its inputs (warehouse rows inserted,
	// membership changes committed).
	EndToEndSecs   float64     `json:"end_to_end_seconds"`
	EndToEndPerSec float64     `json:"end_to_end_events_per_sec"`
	Processors     []Processor `json:"processors"`
	// Services is the local stack's processes' CPU (with a stack dir).
	Services []ServiceCPU `json:"services,omitempty"`

	// Latency: produce time of a raw event to the moment a read_committed
	// consumer of the membership topic received a change it triggered.
	// Paced is at LatencyRate after the backlog drained; Saturated is the
	// throughput phase's, which is mostly time in the backlog.
	LatencyRate        float64 `json:"latency_rate"`
	LatencyPaced       Latency `json:"membership_latency_paced"`
	LatencyPacedDecide Latency `json:"membership_latency_paced_decided"`
	LatencySaturated   Latency `json:"membership_latency_saturated"`

	Profiles             int64   `json:"profiles"`
	RedisBytes           int64   `json:"redis_used_memory_delta_bytes"`
	RedisBytesPerProfile float64 `json:"redis_bytes_per_profile"`
	RedisCPUSeconds      float64 `json:"redis_cpu_seconds"`
	ClickHouseRows       int64   `json:"clickhouse_rows_inserted"`
	ClickHouseRowsPerSec float64 `json:"clickhouse_rows_per_sec"`
	ClickHouseEvents     int64   `json:"clickhouse_events"`
	MembershipChanges    int64   `json:"membership_changes"`
	BenchCPUSeconds      float64 `json:"bench_process_cpu_seconds"`
	MachineCPUBusy       float64 `json:"machine_cpu_busy_share"`
	LoadBefore           string  `json:"load_average_before"`
	LoadAfter            string  `json:"load_average_after"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryGiB int    `json:"memory_gib"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
}

// Run runs the benchmark and returns its result.
func Run(ctx context.Context, svc config.Services, o Options, log *zap.Logger) (*Result, error) {
	if o.Events <= 0 {
		return nil, errors.New("--events must be positive")
	}
	if o.Persons == 0 {
		o.Persons = max(100, o.Events/50)
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	res := &Result{Started: time.Now().UTC(), Machine: machine(), Events: o.Events, Persons: o.Persons, Seed: o.Seed,
		LatencyRate: o.LatencyRate, LoadBefore: loadAvg()}
	res.Prefix = fmt.Sprintf("bench%s", time.Now().UTC().Format("20060102t150405"))
	if o.LogDir == "" {
		o.LogDir = fmt.Sprintf("%s/cdp-%s-logs", os.TempDir(), res.Prefix)
	}
	p, err := NewPipeline(ctx, svc, res.Prefix, o.Bin, o.LogDir, log)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if !o.Keep {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := p.Drop(ctx); err != nil {
				log.Warn("cleaning up after the benchmark", zap.Error(err))
			}
		}()
	}
	log.Info("benchmark namespace", zap.String("topic_prefix", res.Prefix), zap.String("clickhouse_database", p.Database),
		zap.String("logs", o.LogDir))

	// 1. Traffic, encoded up front so its CPU is not the pipeline's.
	gcfg := generate.DefaultConfig()
	gcfg.Seed, gcfg.Persons, gcfg.Events = o.Seed, o.Persons, o.Events+o.LatencyEvents
	gcfg.Duration = o.Span
	gcfg.Start = time.Now().UTC().Add(-o.Span).Truncate(time.Hour)
	bar := newBar(o.Progress, int64(gcfg.Events), "generating")
	recs, ids, err := p.Encode(ctx, gcfg, func() { _ = bar.Add(1) })
	_ = bar.Finish()
	if err != nil {
		return nil, err
	}
	if len(recs) < o.Events {
		return nil, fmt.Errorf("the generator made only %d valid events of %d", len(recs), o.Events)
	}
	phase1, phase2 := recs[:o.Events], recs[o.Events:]
	log.Info("generated", zap.Int("throughput_events", len(phase1)), zap.Int("latency_events", len(phase2)))

	// 2. The processors, as child processes.
	names := []string{"identity", "features", "segments", "warehouse"}
	if o.Recommend {
		names = append(names, "recommend")
	}
	children := map[string]*Child{}
	defer func() {
		for _, c := range children {
			if err := c.Stop(30 * time.Second); err != nil {
				log.Warn("stopping a processor", zap.String("processor", c.Name), zap.Error(err))
			}
		}
	}()
	for _, n := range names {
		c, err := p.Start(ctx, n)
		if err != nil {
			return nil, err
		}
		children[n] = c
	}
	// Wait until every group owns its partitions, so the clock does not
	// count the first join.
	if err := waitReady(ctx, children); err != nil {
		return nil, err
	}
	cpu0 := map[string]time.Duration{}
	for n, c := range children {
		if cpu0[n], err = c.CPU(); err != nil {
			return nil, err
		}
	}
	mem0, err := redisInfo(ctx, p, "memory", "used_memory")
	if err != nil {
		return nil, err
	}
	rcpu0, err := redisCPU(ctx, p)
	if err != nil {
		return nil, err
	}
	selfCPU0 := selfCPU()
	busy0, total0 := machineCPU()
	svcPids := stackPids(o.StackDir)
	svcCPU0 := map[string]time.Duration{}
	for n, pid := range svcPids {
		svcCPU0[n], _ = procCPU(pid)
	}

	// 3. The membership topic, watched as a consumer would.
	sentAt := make(map[string]time.Time, len(recs))
	var sentMu sync.Mutex
	watch, err := newWatcher(ctx, p)
	if err != nil {
		return nil, err
	}
	defer watch.stop()

	// 4. Throughput: every event as fast as the broker takes it.
	prod, err := p.Producer()
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	sampler := newSampler(ctx, p, names, children)
	defer sampler.stop()
	t0 := time.Now()
	bar = newBar(o.Progress, int64(len(phase1)), "producing")
	if err := p.Produce(ctx, prod, phase1, 0, func(i int) {
		sentMu.Lock()
		sentAt[ids[i]] = phase1[i].Timestamp
		sentMu.Unlock()
		_ = bar.Add(1)
	}); err != nil {
		return nil, err
	}
	_ = bar.Finish()
	res.ProduceSecs = time.Since(t0).Seconds()
	res.ProducePerSec = float64(len(phase1)) / res.ProduceSecs
	done, err := sampler.waitDone(ctx, int64(len(phase1)), o.Progress)
	if err != nil {
		return nil, err
	}
	res.EndToEndSecs = done.at.Sub(t0).Seconds()
	res.EndToEndPerSec = float64(len(phase1)) / res.EndToEndSecs
	cpu1 := map[string]time.Duration{}
	for n, c := range children {
		if cpu1[n], err = c.CPU(); err != nil {
			return nil, err
		}
	}
	busy1, total1 := machineCPU()
	for _, n := range []string{"kafka", "registry", "redis", "clickhouse"} {
		if pid, ok := svcPids[n]; ok {
			if c, err := procCPU(pid); err == nil {
				res.Services = append(res.Services, ServiceCPU{Name: n, CPUSeconds: (c - svcCPU0[n]).Seconds()})
			}
		}
	}
	if total1 > total0 {
		res.MachineCPUBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	for _, n := range names {
		pr := Processor{Name: n, Records: done.per[n].Committed[n], Events: done.per[n].First[n],
			Seconds: done.per[n].At.Sub(t0).Seconds(), CPUSeconds: (cpu1[n] - cpu0[n]).Seconds()}
		pr.RecordsPerSec = float64(pr.Records) / pr.Seconds
		pr.EventsPerSec = float64(pr.Events) / pr.Seconds
		pr.CPUMicrosPerEvent = pr.CPUSeconds * 1e6 / float64(len(phase1))
		pr.PeakPerSec = sampler.peak(n, 2*time.Second)
		res.Processors = append(res.Processors, pr)
	}
	if v, err := children["warehouse"].Metric(ctx, "cdp_warehouse_rows_inserted_total"); err == nil {
		res.ClickHouseRows = int64(v)
		res.ClickHouseRowsPerSec = v / done.per["warehouse"].At.Sub(t0).Seconds()
	} else {
		log.Warn("reading the warehouse's row counter", zap.Error(err))
	}
	mem1, err := redisInfo(ctx, p, "memory", "used_memory")
	if err != nil {
		return nil, err
	}
	rcpu1, err := redisCPU(ctx, p)
	if err != nil {
		return nil, err
	}
	res.RedisBytes = mem1 - mem0
	res.RedisCPUSeconds = rcpu1 - rcpu0
	sat := watch.latencies(sentAt, &sentMu, false)
	res.LatencySaturated = summarize(sat)

	// 5. Latency: the rest at a rate the pipeline keeps up with.
	if len(phase2) > 0 {
		mark := time.Now()
		bar = newBar(o.Progress, int64(len(phase2)), fmt.Sprintf("latency phase at %.0f/s", o.LatencyRate))
		if err := p.Produce(ctx, prod, phase2, o.LatencyRate, func(i int) {
			sentMu.Lock()
			sentAt[ids[o.Events+i]] = phase2[i].Timestamp
			sentMu.Unlock()
			_ = bar.Add(1)
		}); err != nil {
			return nil, err
		}
		_ = bar.Finish()
		if _, err := sampler.waitDone(ctx, int64(len(recs)), false); err != nil {
			return nil, err
		}
		if err := watch.waitEnd(ctx, p); err != nil {
			return nil, err
		}
		watch.mu.Lock()
		watch.since = mark
		watch.mu.Unlock()
		res.LatencyPaced = summarize(watch.latencies(sentAt, &sentMu, false))
		res.LatencyPacedDecide = summarize(watch.latencies(sentAt, &sentMu, true))
	}
	res.BenchCPUSeconds = (selfCPU() - selfCPU0).Seconds()

	// 6. Counts from the stores.
	if err := counts(ctx, p, res); err != nil {
		return nil, err
	}
	if res.Profiles > 0 {
		res.RedisBytesPerProfile = float64(res.RedisBytes) / float64(res.Profiles)
	}
	watch.mu.Lock()
	res.MembershipChanges = int64(watch.total)
	watch.mu.Unlock()
	res.LoadAfter = loadAvg()
	return res, nil
}

// stackPids reads the local stack's pid files.
func stackPids(dir string) map[string]int {
	out := map[string]int{}
	if dir == "" {
		return out
	}
	for _, n := range []string{"kafka", "registry", "redis", "clickhouse"} {
		b, err := os.ReadFile(filepath.Join(dir, "run", n+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out[n] = pid
		}
	}
	return out
}

// waitReady waits until every child reports /readyz (its tasks open).
func waitReady(ctx context.Context, children map[string]*Child) error {
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range children {
		for !ready(c.Addr) {
			if c.Exited() {
				return fmt.Errorf("cdp run %s exited (%v); its log ends:\n%s", c.Name, c.Err(), c.LogTail(30))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cdp run %s was not ready within 2 minutes; its log ends:\n%s", c.Name, c.LogTail(30))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

var httpClient = http.Client{Timeout: 2 * time.Second}

func ready(addr string) bool {
	resp, err := httpClient.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func newBar(on bool, total int64, what string) *progressbar.ProgressBar {
	if !on {
		return progressbar.DefaultSilent(total)
	}
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
}

// sampler looks at the groups' progress every 250 ms.
type sampler struct {
	p        *Pipeline
	names    []string
	children map[string]*Child
	mu       sync.Mutex
	samples  []Progress
	err      error
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func newSampler(ctx context.Context, p *Pipeline, names []string, children map[string]*Child) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{p: p, names: names, children: children, cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			pr, err := p.Look(ctx, names)
			s.mu.Lock()
			if err == nil {
				s.samples = append(s.samples, pr)
			} else if ctx.Err() == nil {
				s.err = err
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() { s.cancel(); s.wg.Wait() }

// done is when each processor finished a phase.
type done struct {
	at  time.Time
	per map[string]Progress
}

// upstream is what must be finished before a processor can be.
var upstream = map[string][]string{
	"features":  {"identity"},
	"segments":  {"features"},
	"warehouse": {"identity", "features", "segments"},
	"recommend": {"identity"},
}

// waitDone waits until identity has committed raw events and every
// processor, after its upstream finished, has committed all its inputs.
func (s *sampler) waitDone(ctx context.Context, raw int64, progress bool) (done, error) {
	bar := newBar(progress, raw, "pipeline")
	defer func() { _ = bar.Finish() }()
	seen := 0
	d := done{per: map[string]Progress{}}
	for {
		s.mu.Lock()
		samples, err := s.samples[seen:], s.err
		seen = len(s.samples)
		s.mu.Unlock()
		if err != nil {
			return d, err
		}
		for _, pr := range samples {
			least := pr.First["identity"]
			for _, n := range s.names {
				if n != "segments" && n != "recommend" {
					least = min(least, pr.First[n])
				}
			}
			_ = bar.Set64(min(least, raw))
			for _, n := range s.names {
				if _, ok := d.per[n]; ok || !pr.CaughtUp[n] {
					continue
				}
				ok := true
				for _, u := range upstream[n] {
					if _, fin := d.per[u]; !fin && slices.Contains(s.names, u) {
						ok = false
					}
				}
				if n == "identity" {
					ok = pr.First["identity"] >= raw
				}
				if ok {
					d.per[n] = pr
					d.at = pr.At
				}
			}
			if len(d.per) == len(s.names) {
				return d, nil
			}
		}
		for _, c := range s.children {
			if c.Exited() {
				return d, fmt.Errorf("cdp run %s exited during the benchmark (%v); its log ends:\n%s", c.Name, c.Err(), c.LogTail(30))
			}
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("waiting for the pipeline to drain: %w (finished: %d of %d processors)", ctx.Err(), len(d.per), len(s.names))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// peak is the highest rate of a processor's first input over window.
func (s *sampler) peak(name string, window time.Duration) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := 0.0
	j := 0
	for i, pr := range s.samples {
		for j < i && pr.At.Sub(s.samples[j].At) > window {
			j++
		}
		if j > 0 {
			dt := pr.At.Sub(s.samples[j-1].At).Seconds()
			if r := float64(pr.First[name]-s.samples[j-1].First[name]) / dt; dt > 0 && r > best {
				best = r
			}
		}
	}
	return best
}

// watcher consumes the membership topic (read_committed) and notes when
// each change became visible.
type watcher struct {
	cl     *kgo.Client
	serde  *schemas.Serde
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	seen   []seenChange
	total  int
	offs   map[int32]int64
	since  time.Time
	err    error
}

type seenChange struct {
	trigger    string
	visible    time.Time
	decided    time.Time
	hasTrigger bool
}

func newWatcher(ctx context.Context, p *Pipeline) (*watcher, error) {
	topic := p.Svc.Topic("segments.membership")
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Svc.KafkaBrokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.KeepControlRecords())
	if err != nil {
		return nil, fmt.Errorf("membership consumer: %w", err)
	}
	rc, err := sr.NewClient(sr.URLs(p.Svc.SchemaRegistryURL))
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{cl: cl, serde: schemas.NewSerde(rc), cancel: cancel, offs: map[int32]int64{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				w.mu.Lock()
				w.offs[r.Partition] = r.Offset + 1
				w.mu.Unlock()
				if r.Attrs.IsControl() {
					return
				}
				native, err := w.serde.DecodeNative(ctx, r.Value, schemas.SegmentMembershipSchema)
				if err != nil {
					w.mu.Lock()
					w.err = fmt.Errorf("decoding a membership record: %w", err)
					w.mu.Unlock()
					return
				}
				m := native.(map[string]any)
				sc := seenChange{visible: now}
				if tr, ok := m["trigger_message_id"].(map[string]any); ok {
					sc.trigger, sc.hasTrigger = tr["string"].(string)
				}
				if t, ok := m["evaluated_at"].(time.Time); ok {
					sc.decided = t
				}
				w.mu.Lock()
				w.total++
				if sc.hasTrigger {
					w.seen = append(w.seen, sc)
				}
				w.mu.Unlock()
			})
		}
	}()
	return w, nil
}

func (w *watcher) stop() { w.cancel(); w.wg.Wait(); w.cl.Close() }

// waitEnd waits until the watcher has read the topic to its current end.
func (w *watcher) waitEnd(ctx context.Context, p *Pipeline) error {
	ends, err := p.adm.ListEndOffsets(ctx, p.Svc.Topic("segments.membership"))
	if err != nil {
		return fmt.Errorf("end offsets of the membership topic: %w", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		behind := false
		w.mu.Lock()
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 && w.offs[o.Partition] < o.Offset {
				behind = true
			}
		})
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return err
		}
		if !behind {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the membership consumer did not reach the end of the topic within a minute")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// latencies are, per change with a known trigger produced in this run
// (and visible after since, when set), visible (or decided) minus the
// trigger's produce time.
func (w *watcher) latencies(sentAt map[string]time.Time, sentMu *sync.Mutex, decided bool) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	sentMu.Lock()
	defer sentMu.Unlock()
	var out []time.Duration
	for _, c := range w.seen {
		at, ok := sentAt[c.trigger]
		if !ok || (!w.since.IsZero() && at.Before(w.since)) {
			continue
		}
		end := c.visible
		if decided {
			end = c.decided
		}
		out = append(out, end.Sub(at))
	}
	return out
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(f float64) float64 {
		i := int(f*float64(len(ds))+0.5) - 1
		return float64(ds[min(max(i, 0), len(ds)-1)]) / float64(time.Millisecond)
	}
	return Latency{Count: len(ds), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: q(1)}
}

// counts fills what the stores hold at the end.
func counts(ctx context.Context, p *Pipeline, res *Result) error {
	conn, err := p.ClickHouse()
	if err != nil {
		return err
	}
	defer conn.Close()
	var events, profiles uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&events); err != nil {
		return fmt.Errorf("counting the events in ClickHouse: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT uniqExact(if(c.profile_id != '', c.profile_id, e.profile_id))
		FROM events AS e LEFT JOIN profile_canonical AS c ON c.alias_id = e.profile_id`).Scan(&profiles); err != nil {
		return fmt.Errorf("counting the profiles in ClickHouse: %w", err)
	}
	res.ClickHouseEvents, res.Profiles = int64(events), int64(profiles)
	return nil
}

func redisInfo(ctx context.Context, p *Pipeline, section, field string) (int64, error) {
	s, err := p.rdb.Info(ctx, section).Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO %s: %w", section, err)
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("redis INFO %s has no %s", section, field)
}

// redisCPU is the Redis server's CPU seconds (user + system) so far.
func redisCPU(ctx context.Context, p *Pipeline) (float64, error) {
	s, err := p.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO cpu: %w", err)
	}
	var sum float64
	for _, line := range strings.Split(s, "\r\n") {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				sum += x
			}
		}
	}
	return sum, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the busy and total jiffies of all CPUs (/proc/stat).
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		m.MemoryGiB = int((uint64(si.Totalram)*uint64(si.Unit) + 1<<29) >> 30)
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var sb strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			sb.WriteByte(byte(c))
		}
		m.Kernel = sb.String()
	}
	return m
}
