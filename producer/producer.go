// Package producer sends customer events to StreamCDP from Go applications.
//
// A Producer validates each event against the same rules the pipeline
// applies (internal/validate), so a bad event is refused at the call site
// with an error naming the field instead of ending up in the dead-letter
// topic. Valid events are encoded as Avro in the Confluent wire format
// (schemas.Serde, registering event.avsc on start) and produced to the raw
// events topic through an idempotent, batching, compressing Kafka client.
// Records are keyed by userId, else anonymousId, so one person's events stay
// in order on one partition.
//
// The call helpers (Track, Identify, Page, Screen, Group, Alias) fill in
// messageId (a random UUID), timestamp and sentAt when absent, and return as
// soon as the event is queued. Delivery happens in the background: failures
// are counted (Stats), passed to Config.OnError, and returned by the next
// Flush. Use Send for a per-event callback, or SendSync to wait.
//
//	p, err := producer.New(ctx, producer.Config{
//		Brokers:     []string{"127.0.0.1:9092"},
//		RegistryURL: "http://127.0.0.1:8081",
//	})
//	if err != nil { ... }
//	defer p.Close(ctx)
//	err = p.Track(ctx, producer.User("u-42"), "Order Completed",
//		producer.Props{"order_id": "o-1", "revenue": 30.5, "currency": "EUR"})
//
// ProduceLines and LineWriter bulk-load the JSON-lines form (what
// `cdp produce` and `cdp generate` use).
package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

// Version is this library's version, sent as context.library.version.
const Version = "0.1.0"

// LibraryName is sent as context.library.name when the event names none.
const LibraryName = "streamcdp-go"

// Config configures a Producer. Brokers and RegistryURL are required.
type Config struct {
	// Brokers are the Kafka seed brokers (host:port).
	Brokers []string
	// RegistryURL is the Confluent-compatible schema registry.
	RegistryURL string
	// Topic receives the events. Default: TopicPrefix + ".events.raw".
	Topic string
	// TopicPrefix names the deployment's topics (default "cdp").
	TopicPrefix string

	// Linger is how long a partition's batch waits for more records
	// (default 5ms, negative for none): a little latency buys much larger
	// batches.
	Linger time.Duration
	// Compression is none, gzip, snappy, lz4 (default) or zstd. Event
	// batches compress about 4:1 with lz4 at little CPU cost.
	Compression string
	// MaxBuffered bounds records queued but not yet acknowledged (default
	// 10000); sends block while it is full, which is the back-pressure.
	MaxBuffered int
	// DeliveryTimeout fails a record that could not be delivered in this
	// long (default 1 minute), so an unreachable cluster surfaces as errors
	// rather than an ever-growing buffer.
	DeliveryTimeout time.Duration

	// OnError is called with each failed delivery of an event sent without
	// its own callback (the call helpers). It runs on the client's delivery
	// goroutine: keep it short.
	OnError func(Result)

	// Serde encodes events; share one per process if you already have it.
	// Default: a new Serde on RegistryURL.
	Serde *schemas.Serde
	// KafkaOpts are appended to the Kafka client options (TLS, SASL, ...).
	KafkaOpts []kgo.Opt
	// RegistryOpts are appended to the schema registry client options.
	RegistryOpts []sr.ClientOpt
}

// ConfigFromEnv returns a Config from the CDP_* environment that every
// StreamCDP command reads (CDP_KAFKA_BROKERS, CDP_SCHEMA_REGISTRY_URL,
// CDP_TOPIC_PREFIX; see `cdp local env`).
func ConfigFromEnv() (Config, error) {
	s, err := config.Load()
	if err != nil {
		return Config{}, err
	}
	return Config{Brokers: s.KafkaBrokers, RegistryURL: s.SchemaRegistryURL, TopicPrefix: s.TopicPrefix}, nil
}

func (c *Config) defaults() error {
	if len(c.Brokers) == 0 || strings.TrimSpace(c.Brokers[0]) == "" {
		return errors.New("producer: Config.Brokers is empty")
	}
	if c.RegistryURL == "" && c.Serde == nil {
		return errors.New("producer: Config.RegistryURL is empty")
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "cdp"
	}
	if c.Topic == "" {
		c.Topic = c.TopicPrefix + ".events.raw"
	}
	switch {
	case c.Linger == 0:
		c.Linger = 5 * time.Millisecond
	case c.Linger < 0:
		c.Linger = 0
	}
	if c.Compression == "" {
		c.Compression = "lz4"
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = 10000
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = time.Minute
	}
	return nil
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("producer: compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// Producer sends events to the raw topic. It is safe for concurrent use;
// create one per process and Close it on shutdown.
type Producer struct {
	cfg    Config
	client *kgo.Client
	serde  *schemas.Serde
	rules  validate.Rules
	now    func() time.Time

	queued, delivered, failed, invalid atomic.Uint64

	mu          sync.Mutex
	failedSince uint64 // failures since the last Flush
	firstErr    error  // the first of them

	closeOnce sync.Once
	closeErr  error
}

// Result is the outcome of one delivery.
type Result struct {
	MessageID string
	Topic     string
	Partition int32
	Offset    int64
	Err       error // nil when the broker acknowledged the record
}

// Callback receives the delivery result of one event. It runs on the Kafka
// client's delivery goroutine, in order per partition: keep it short and do
// not call Flush or Close from it.
type Callback func(Result)

// Stats counts events since New.
type Stats struct {
	Queued    uint64 // handed to the Kafka client
	Delivered uint64 // acknowledged by the broker
	Failed    uint64 // given up on: see Config.OnError and Flush
	Invalid   uint64 // refused before sending
}

// New connects to Kafka and the schema registry. It fails early, with a
// message saying what to fix, when the brokers are unreachable, the topic
// does not exist, or the registry refuses the event schema.
func New(ctx context.Context, cfg Config) (*Producer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	codec, err := compression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	serde := cfg.Serde
	if serde == nil {
		rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(cfg.RegistryURL)}, cfg.RegistryOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("producer: schema registry client for %s: %w", cfg.RegistryURL, err)
		}
		serde = schemas.NewSerde(rc)
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedRecords(cfg.MaxBuffered),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()), // with idempotence (on by default): no loss, no duplicates on retry
	}, cfg.KafkaOpts...)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("producer: kafka client for %v: %w", cfg.Brokers, err)
	}
	p := &Producer{cfg: cfg, client: client, serde: serde, rules: validate.Default(), now: time.Now}
	if err := p.checkTopic(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if _, err := serde.Register(ctx, cfg.Topic, schemas.EventSchema); err != nil {
		client.Close()
		return nil, fmt.Errorf("producer: registering the event schema for %s at %s: %w", cfg.Topic, cfg.RegistryURL, err)
	}
	return p, nil
}

// checkTopic turns "the topic does not exist" into an error at start
// instead of a failed delivery for every event.
func (p *Producer) checkTopic(ctx context.Context) error {
	td, err := kadm.NewClient(p.client).ListTopics(ctx, p.cfg.Topic)
	if err != nil {
		return fmt.Errorf("producer: reaching Kafka at %v: %w", p.cfg.Brokers, err)
	}
	t, ok := td[p.cfg.Topic]
	switch {
	case !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("producer: topic %s does not exist on %v (create the topics with `cdp topology apply`)", p.cfg.Topic, p.cfg.Brokers)
	case t.Err != nil:
		return fmt.Errorf("producer: reading metadata of topic %s: %w", p.cfg.Topic, t.Err)
	}
	return nil
}

// Topic is the topic events are produced to.
func (p *Producer) Topic() string { return p.cfg.Topic }

// Serde is the encoder the producer uses.
func (p *Producer) Serde() *schemas.Serde { return p.serde }

// Stats returns the counters since New.
func (p *Producer) Stats() Stats {
	return Stats{Queued: p.queued.Load(), Delivered: p.delivered.Load(), Failed: p.failed.Load(), Invalid: p.invalid.Load()}
}

// Send validates ev, encodes it and queues it; cb (may be nil) gets the
// delivery result. The returned error is about ev itself (invalid: a
// *schemas.FieldError, see errors.As) or the registry; nothing was sent
// then. messageId, timestamp, sentAt and context.library are filled in when
// absent.
func (p *Producer) Send(ctx context.Context, ev schemas.Event, cb Callback) error {
	rec, err := p.Prepare(ctx, &ev)
	if err != nil {
		return err
	}
	p.produce(ctx, rec, ev.MessageID, cb)
	return nil
}

// SendSync is Send that waits for the broker's acknowledgement.
func (p *Producer) SendSync(ctx context.Context, ev schemas.Event) (Result, error) {
	done := make(chan Result, 1)
	if err := p.Send(ctx, ev, func(r Result) { done <- r }); err != nil {
		return Result{MessageID: ev.MessageID, Err: err}, err
	}
	select {
	case r := <-done:
		return r, r.Err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("producer: waiting for delivery: %w", ctx.Err())
	}
}

// Prepare fills in the defaults of ev, validates it and returns the Kafka
// record Send would produce, without producing it. Tools that produce
// through their own client (transactions) use it; most callers want Send.
func (p *Producer) Prepare(ctx context.Context, ev *schemas.Event) (*kgo.Record, error) {
	now := p.now()
	if err := p.fill(ev, now); err != nil {
		p.invalid.Add(1)
		return nil, err
	}
	if err := p.rules.Check(ev, 0, now); err != nil {
		p.invalid.Add(1)
		return nil, invalidErr(ev, err)
	}
	value, err := p.serde.AppendEncode(ctx, nil, p.cfg.Topic, ev)
	if err != nil {
		return nil, fmt.Errorf("producer: encoding %s event %s: %w", ev.Type, ev.MessageID, err)
	}
	if len(value) > p.rules.MaxBytes {
		p.invalid.Add(1)
		return nil, invalidErr(ev, p.rules.Check(ev, len(value), now))
	}
	return &kgo.Record{Topic: p.cfg.Topic, Key: Key(ev), Value: value}, nil
}

func invalidErr(ev *schemas.Event, err error) error {
	return fmt.Errorf("producer: invalid %s event %s: %w", ev.Type, ev.MessageID, err)
}

// fill sets what the producing library is responsible for, as Segment's
// libraries do: a unique messageId, the time of the call and of sending.
func (p *Producer) fill(ev *schemas.Event, now time.Time) error {
	if ev.MessageID == "" {
		ev.MessageID = uuid.NewString()
	}
	if ev.OriginalTimestamp.IsZero() {
		ev.OriginalTimestamp = now
	}
	if ev.SentAt.IsZero() {
		ev.SentAt = now
	}
	if ev.Context.Library == (schemas.Library{}) {
		ev.Context.Library = schemas.Library{Name: LibraryName, Version: Version}
	}
	return normalizeCommerce(ev)
}

// normalizeCommerce moves the typed e-commerce properties of a spec event
// into ev.Commerce, as the JSON form does, so an event built with plain
// Properties reads the same downstream as one from `cdp produce`.
func normalizeCommerce(ev *schemas.Event) error {
	if ev.Type != schemas.Track || ev.Commerce != nil || len(ev.Properties) == 0 || !schemas.CommerceEvents[ev.Event] {
		return nil
	}
	b, err := ev.MarshalJSON()
	if err != nil {
		return fmt.Errorf("producer: encoding properties of %q: %w", ev.Event, err)
	}
	parsed, err := schemas.ParseJSON(b)
	if err != nil {
		return invalidErr(ev, err)
	}
	ev.Commerce, ev.Properties = parsed.Commerce, parsed.Properties
	return nil
}

// Key is the record key of ev: userId, else anonymousId, else nil (spread
// over partitions). Keying by person keeps one person's events in order.
func Key(ev *schemas.Event) []byte {
	switch {
	case ev.UserID != "":
		return []byte(ev.UserID)
	case ev.AnonymousID != "":
		return []byte(ev.AnonymousID)
	}
	return nil
}

// SendRaw produces value as it is, without validation, keyed by key, to the
// producer's topic. It exists for test traffic that must exercise the
// dead-letter path (cdp generate --invalid-share) and for re-submitting
// stored bytes; applications should use Send.
func (p *Producer) SendRaw(ctx context.Context, key, value []byte, cb Callback) {
	p.produce(ctx, &kgo.Record{Topic: p.cfg.Topic, Key: key, Value: value}, "", cb)
}

func (p *Producer) produce(ctx context.Context, rec *kgo.Record, messageID string, cb Callback) {
	p.queued.Add(1)
	p.client.Produce(ctx, rec, func(r *kgo.Record, err error) {
		res := Result{MessageID: messageID, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Err: err}
		if err != nil {
			res.Err = fmt.Errorf("producer: delivering event %s to %s: %w", messageID, r.Topic, err)
			p.deliveryFailed(res, cb == nil)
		} else {
			p.delivered.Add(1)
		}
		if cb != nil {
			cb(res)
		}
	})
}

func (p *Producer) deliveryFailed(res Result, notify bool) {
	p.failed.Add(1)
	p.mu.Lock()
	p.failedSince++
	if p.firstErr == nil {
		p.firstErr = res.Err
	}
	p.mu.Unlock()
	if notify && p.cfg.OnError != nil {
		p.cfg.OnError(res)
	}
}

// DeliveryError is returned by Flush when events failed delivery since the
// previous Flush.
type DeliveryError struct {
	Failed uint64
	First  error
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("producer: %d event(s) failed delivery; first: %v", e.Failed, e.First)
}

func (e *DeliveryError) Unwrap() error { return e.First }

// Flush waits until every queued event is acknowledged or has failed, and
// returns a *DeliveryError when any failed since the previous Flush.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.client.Flush(ctx); err != nil {
		return fmt.Errorf("producer: flushing: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failedSince == 0 {
		return nil
	}
	err := &DeliveryError{Failed: p.failedSince, First: p.firstErr}
	p.failedSince, p.firstErr = 0, nil
	return err
}

// Close flushes (see Flush) and closes the Kafka client. Later sends fail.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.closeErr = p.Flush(ctx)
		p.client.Close()
	})
	return p.closeErr
}

// Props are the properties of a track, page or screen call, or the traits
// of an identify or group call. Values are encoded as JSON.
type Props map[string]any

func (ps Props) raw(field string) (map[string]json.RawMessage, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	m := make(map[string]json.RawMessage, len(ps))
	for k, v := range ps {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, &schemas.FieldError{Code: schemas.CodeWrongType, Field: field + "." + k, Reason: "cannot be encoded as JSON: " + err.Error()}
		}
		m[k] = b
	}
	return m, nil
}
