package schemas

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Serde encodes and decodes record values in the Confluent wire format
// (magic byte 0, 4-byte big-endian schema id, Avro binary) against a schema
// registry. It is safe for concurrent use; share one per process.
//
// Encoding registers the schema under the topic's subject once (setting the
// subject to BACKWARD and refusing incompatible schemas), then caches the
// id. Decoding fetches each writer schema by id on first sight, once even
// under concurrency, and caches it forever (ids are immutable).
type Serde struct {
	cl          *sr.Client
	eventSchema string
	unknownTTL  time.Duration
	now         func() time.Time
	header      sr.ConfluentHeader

	writers atomic.Pointer[map[int]*writerSchema] // read lock-free on every decode

	// done lists the registrations made, for appendHeader to find without
	// the map: the map's key holds the whole schema text, which costs a
	// hash of a few kilobytes per record, while comparing a caller's schema
	// constant with the same constant is a pointer comparison. Replaced,
	// never changed, under mu.
	done atomic.Pointer[[]doneReg]

	mu       sync.Mutex
	fetching map[int]*flight[*writerSchema]
	unknown  map[int]time.Time // ids the registry did not know, and when asked
	subjects map[subjectKey]*flight[*registered]
	readers  map[string]*avroNode
}

type subjectKey struct{ subject, schema string }

type doneReg struct {
	topic, schema string
	reg           *registered
}

type registered struct {
	id    int
	codec *goavro.Codec
}

// writerSchema is one schema id's parsed form and compiled decoders.
type writerSchema struct {
	id       int
	text     string
	node     *avroNode
	codec    *goavro.Codec
	event    *eventDecoder
	eventErr *DecodeError
	// The ResolvedEvent decoder, for schemas of the resolved topic.
	resolved    recordFn[ResolvedEvent]
	resolvedErr *DecodeError
	// Whether records of this schema are copied into resolved events as
	// they are (see EncodeResolvedFrom); computed on first use.
	spliceOnce sync.Once
	splice     bool
	// Whether the schema is this build's profile_change.avsc, which the
	// hand-written decoder reads.
	currentChange bool
}

// flight is one in-progress registry call that concurrent callers share.
type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// Option configures a Serde.
type Option func(*Serde)

// WithEventSchema makes Encode write events with schema instead of the
// embedded event.avsc (for tests of schema evolution, or a producer pinned
// to an older version).
func WithEventSchema(schema string) Option { return func(s *Serde) { s.eventSchema = schema } }

// WithUnknownIDRetry sets how long a schema id the registry did not know is
// remembered as unknown before it is asked again (default one minute), so a
// stream of records with a bogus id costs one registry call, not one each.
func WithUnknownIDRetry(d time.Duration) Option { return func(s *Serde) { s.unknownTTL = d } }

// NewSerde returns a Serde using the registry client cl.
func NewSerde(cl *sr.Client, opts ...Option) *Serde {
	s := &Serde{
		cl:          cl,
		eventSchema: EventSchema,
		unknownTTL:  time.Minute,
		now:         time.Now,
		fetching:    map[int]*flight[*writerSchema]{},
		unknown:     map[int]time.Time{},
		subjects:    map[subjectKey]*flight[*registered]{},
		readers:     map[string]*avroNode{},
	}
	empty := map[int]*writerSchema{}
	s.writers.Store(&empty)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Encode frames ev for topic with the event schema.
func (s *Serde) Encode(ctx context.Context, topic string, ev Event) ([]byte, error) {
	return s.AppendEncode(ctx, nil, topic, &ev)
}

// AppendEncode appends the framed encoding of ev to dst.
func (s *Serde) AppendEncode(ctx context.Context, dst []byte, topic string, ev *Event) ([]byte, error) {
	if !ev.Type.Valid() {
		return dst, &FieldError{Code: CodeUnknownType, Field: "type", Reason: fmt.Sprintf("%q is not one of track, identify, page, screen, group, alias", ev.Type)}
	}
	return s.appendNative(ctx, dst, topic, s.eventSchema, ToNative(ev))
}

// EncodeNative frames a goavro native value written with schema, registering
// schema under topic's subject on first use. Processors use it for the
// topics StreamCDP emits (ResolvedEventSchema, IdentityMergeSchema, ...).
func (s *Serde) EncodeNative(ctx context.Context, topic, schema string, native any) ([]byte, error) {
	return s.appendNative(ctx, nil, topic, schema, native)
}

// appendHeader registers schema under topic's subject (once) and appends
// the Confluent header with its id.
func (s *Serde) appendHeader(ctx context.Context, dst []byte, topic, schema string) ([]byte, *registered, error) {
	reg := s.lookupRegistered(topic, schema)
	if reg == nil {
		var err error
		if reg, err = s.register(ctx, Subject(topic), schema); err != nil {
			return dst, nil, err
		}
		s.rememberReg(topic, schema, reg)
	}
	start := len(dst)
	dst, err := s.header.AppendEncode(dst, reg.id, nil)
	if err != nil {
		return dst[:start], nil, fmt.Errorf("writing Confluent header for schema id %d: %w", reg.id, err)
	}
	return dst, reg, nil
}

func (s *Serde) appendNative(ctx context.Context, dst []byte, topic, schema string, native any) ([]byte, error) {
	start := len(dst)
	dst, reg, err := s.appendHeader(ctx, dst, topic, schema)
	if err != nil {
		return dst, err
	}
	dst, err = reg.codec.BinaryFromNative(dst, native)
	if err != nil {
		return dst[:start], fmt.Errorf("encoding Avro for topic %s (schema id %d): %w", topic, reg.id, err)
	}
	return dst, nil
}

// Register makes sure schema is registered under topic's subject and
// returns its id. Call it at start-up to surface registry or compatibility
// problems before the first record.
func (s *Serde) Register(ctx context.Context, topic, schema string) (int, error) {
	reg, err := s.register(ctx, Subject(topic), schema)
	if err != nil {
		return 0, err
	}
	return reg.id, nil
}

// lookupRegistered returns the registration of schema under topic's subject if
// appendHeader made it before, or nil.
func (s *Serde) lookupRegistered(topic, schema string) *registered {
	if d := s.done.Load(); d != nil {
		for _, r := range *d {
			if r.topic == topic && r.schema == schema {
				return r.reg
			}
		}
	}
	return nil
}

// rememberReg adds a registration to done. A process writes a handful of
// (topic, schema) pairs; past 64 the list stops growing and the others
// go through the map.
func (s *Serde) rememberReg(topic, schema string, reg *registered) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []doneReg
	if d := s.done.Load(); d != nil {
		list = *d
	}
	if len(list) >= 64 {
		return
	}
	for _, r := range list {
		if r.topic == topic && r.schema == schema {
			return
		}
	}
	list = append(list[:len(list):len(list)], doneReg{topic, schema, reg})
	s.done.Store(&list)
}

func (s *Serde) register(ctx context.Context, subject, schema string) (*registered, error) {
	key := subjectKey{subject, schema}
	s.mu.Lock()
	f, ok := s.subjects[key]
	if ok {
		s.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for schema registration of %s: %w", subject, ctx.Err())
		}
		return f.val, f.err // a failed flight is forgotten, so the next call retries
	}
	f = &flight[*registered]{done: make(chan struct{})}
	s.subjects[key] = f
	s.mu.Unlock()

	f.val, f.err = s.registerOnce(ctx, subject, schema)
	if f.err != nil {
		s.mu.Lock()
		delete(s.subjects, key)
		s.mu.Unlock()
	}
	close(f.done)
	return f.val, f.err
}

func (s *Serde) registerOnce(ctx context.Context, subject, schema string) (*registered, error) {
	codec, err := goavro.NewCodec(schema)
	if err != nil {
		return nil, fmt.Errorf("parsing schema for %s: %w", subject, err)
	}
	node, err := parseAvroSchema(schema)
	if err != nil {
		return nil, fmt.Errorf("parsing schema for %s: %w", subject, err)
	}
	sch := sr.Schema{Schema: schema, Type: sr.TypeAvro}
	ss, err := s.cl.LookupSchema(ctx, subject, sch)
	switch {
	case err == nil:
		s.remember(ss.ID, schema, node, codec)
		return &registered{id: ss.ID, codec: codec}, nil
	case !isNotFound(err):
		return nil, registryErr("looking up schema under "+subject, err)
	}

	level, err := s.ensureBackward(ctx, subject)
	if err != nil {
		return nil, err
	}
	if err := s.checkCompatible(ctx, subject, schema, level); err != nil {
		return nil, err
	}
	id, err := s.cl.RegisterSchema(ctx, subject, sch, -1, -1)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && (re.StatusCode == http.StatusConflict || re.ErrorCode == 409) {
			return nil, &IncompatibleError{Subject: subject, Level: level.String(), Problems: []string{re.Message}}
		}
		return nil, registryErr("registering schema under "+subject, err)
	}
	s.remember(id, schema, node, codec)
	return &registered{id: id, codec: codec}, nil
}

// backwardSafe are the levels under which new schemas can read old data.
var backwardSafe = map[sr.CompatibilityLevel]bool{
	sr.CompatBackward: true, sr.CompatBackwardTransitive: true,
	sr.CompatFull: true, sr.CompatFullTransitive: true,
}

// ensureBackward sets the subject's level to BACKWARD unless it already is
// BACKWARD or stricter, so every consumer can read every version it meets.
func (s *Serde) ensureBackward(ctx context.Context, subject string) (sr.CompatibilityLevel, error) {
	cur := s.cl.Compatibility(ctx, subject)[0]
	if cur.Err == nil && cur.Level != sr.CompatBackward && backwardSafe[cur.Level] {
		return cur.Level, nil
	}
	if cur.Err != nil && !isNotFound(cur.Err) {
		return 0, registryErr("reading compatibility of "+subject, cur.Err)
	}
	res := s.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject)[0]
	if res.Err != nil {
		return 0, registryErr("setting compatibility BACKWARD on "+subject, res.Err)
	}
	return sr.CompatBackward, nil
}

// checkCompatible refuses schema when data already written under subject
// could not be read with it. It checks locally (with the Avro resolution
// rules, so the message names the field, and so that registries that do not
// check, like srfake, still cannot accept a breaking change) and then asks
// the registry.
func (s *Serde) checkCompatible(ctx context.Context, subject, schema string, level sr.CompatibilityLevel) error {
	var olds []sr.SubjectSchema
	if level == sr.CompatBackwardTransitive || level == sr.CompatFullTransitive {
		all, err := s.cl.Schemas(ctx, subject)
		if err != nil && !isNotFound(err) {
			return registryErr("listing versions of "+subject, err)
		}
		olds = all
	} else {
		latest, err := s.cl.SchemaByVersion(ctx, subject, -1)
		if err != nil && !isNotFound(err) {
			return registryErr("reading latest version of "+subject, err)
		}
		if err == nil {
			olds = []sr.SubjectSchema{latest}
		}
	}
	if len(olds) == 0 {
		return nil
	}
	inc := &IncompatibleError{Subject: subject, Level: level.String()}
	for _, old := range olds {
		problems, err := CheckBackward(schema, old.Schema.Schema)
		if err != nil {
			return fmt.Errorf("checking schema against %s version %d: %w", subject, old.Version, err)
		}
		for _, p := range problems {
			inc.Problems = append(inc.Problems, fmt.Sprintf("version %d: %s", old.Version, p))
		}
	}
	if len(inc.Problems) > 0 {
		return inc
	}
	against := -1 // latest
	if level == sr.CompatBackwardTransitive || level == sr.CompatFullTransitive {
		against = -2 // all versions
	}
	res, err := s.cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subject, against, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil && !isNotFound(err) {
		return registryErr("checking compatibility with "+subject, err)
	}
	if err == nil && !res.Is {
		inc.Problems = res.Messages
		if len(inc.Problems) == 0 {
			inc.Problems = []string{"the registry gave no reason"}
		}
		return inc
	}
	return nil
}

func isNotFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || sr.IsNotFoundError(re.ErrorCode))
}

func registryErr(doing string, err error) error {
	return fmt.Errorf("%s: %w", doing, &DecodeError{Code: CodeRegistry, Err: err})
}

// remember caches a schema we registered, so decoding our own output needs
// no registry call.
func (s *Serde) remember(id int, text string, node *avroNode, codec *goavro.Codec) {
	w := newWriterSchema(id, text, node, codec)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeWriter(w)
}

// storeWriter publishes w in the lock-free map; s.mu must be held.
func (s *Serde) storeWriter(w *writerSchema) {
	old := *s.writers.Load()
	if _, ok := old[w.id]; ok {
		return
	}
	next := make(map[int]*writerSchema, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[w.id] = w
	s.writers.Store(&next)
}

func newWriterSchema(id int, text string, node *avroNode, codec *goavro.Codec) *writerSchema {
	w := &writerSchema{id: id, text: text, node: node, codec: codec}
	dec, err := compileEventDecoder(node)
	if err != nil {
		w.eventErr = asDecodeError(id, err)
	}
	w.event = dec
	w.resolved, w.resolvedErr = compileResolved(id, node)
	w.currentChange = codec.CanonicalSchema() == profileChangeCanonical
	return w
}

// writer returns the parsed writer schema for id, asking the registry once.
func (s *Serde) writer(ctx context.Context, id int) (*writerSchema, error) {
	if w, ok := (*s.writers.Load())[id]; ok {
		return w, nil
	}
	s.mu.Lock()
	if w, ok := (*s.writers.Load())[id]; ok {
		s.mu.Unlock()
		return w, nil
	}
	if at, ok := s.unknown[id]; ok && s.now().Sub(at) < s.unknownTTL {
		s.mu.Unlock()
		return nil, &DecodeError{Code: CodeUnknownSchemaID, SchemaID: id, Err: errors.New("the schema registry does not know this id")}
	}
	f, ok := s.fetching[id]
	if !ok {
		f = &flight[*writerSchema]{done: make(chan struct{})}
		s.fetching[id] = f
		s.mu.Unlock()
		f.val, f.err = s.fetch(ctx, id)
		s.mu.Lock()
		delete(s.fetching, id)
		var de *DecodeError
		switch {
		case f.err == nil:
			s.storeWriter(f.val)
		case errors.As(f.err, &de) && de.Code == CodeUnknownSchemaID:
			s.rememberUnknown(id)
		}
		s.mu.Unlock()
		close(f.done)
		return f.val, f.err
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		return nil, &DecodeError{Code: CodeRegistry, SchemaID: id, Err: ctx.Err()}
	}
}

// maxUnknownIDs bounds the negative cache against a stream of random ids.
const maxUnknownIDs = 4096

// rememberUnknown records that the registry did not know id; s.mu is held.
func (s *Serde) rememberUnknown(id int) {
	now := s.now()
	if len(s.unknown) >= maxUnknownIDs {
		for k, at := range s.unknown {
			if now.Sub(at) >= s.unknownTTL {
				delete(s.unknown, k)
			}
		}
		if len(s.unknown) >= maxUnknownIDs {
			clear(s.unknown)
		}
	}
	s.unknown[id] = now
}

func (s *Serde) fetch(ctx context.Context, id int) (*writerSchema, error) {
	sch, err := s.cl.SchemaByID(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, &DecodeError{Code: CodeUnknownSchemaID, SchemaID: id, Err: err}
		}
		return nil, &DecodeError{Code: CodeRegistry, SchemaID: id, Err: fmt.Errorf("fetching schema id %d: %w", id, err)}
	}
	if sch.Type != sr.TypeAvro {
		return nil, &DecodeError{Code: CodeWrongSchema, SchemaID: id, Err: fmt.Errorf("schema type is %s, want AVRO", sch.Type)}
	}
	if len(sch.References) > 0 {
		return nil, &DecodeError{Code: CodeWrongSchema, SchemaID: id, Err: errors.New("schemas with references are not supported; inline the referenced types")}
	}
	codec, err := goavro.NewCodec(sch.Schema)
	if err != nil {
		return nil, &DecodeError{Code: CodeWrongSchema, SchemaID: id, Err: fmt.Errorf("invalid Avro schema: %w", err)}
	}
	node, err := parseAvroSchema(sch.Schema)
	if err != nil {
		return nil, &DecodeError{Code: CodeWrongSchema, SchemaID: id, Err: err}
	}
	return newWriterSchema(id, sch.Schema, node, codec), nil
}

// splitFrame checks the Confluent header and returns the schema id and the
// Avro body.
func (s *Serde) splitFrame(b []byte) (int, []byte, error) {
	switch {
	case len(b) == 0:
		return 0, nil, &DecodeError{Code: CodeEmpty, Err: errors.New("record value is empty")}
	case b[0] != 0:
		return 0, nil, &DecodeError{Code: CodeWrongMagic, Err: fmt.Errorf("first byte is 0x%02x, want 0x00 (Confluent framing)", b[0])}
	case len(b) < 5:
		return 0, nil, &DecodeError{Code: CodeTruncated, Err: fmt.Errorf("%d bytes, the Confluent header alone is 5", len(b))}
	}
	id, body, err := s.header.DecodeID(b)
	if err != nil {
		return 0, nil, &DecodeError{Code: CodeWrongMagic, Err: err}
	}
	return id, body, nil
}

// Decode reads a framed event written with any registered version of the
// event schema. Errors are *DecodeError with a stable Code; IsTransient
// tells registry outages (retry) from bad records (dead-letter).
func (s *Serde) Decode(ctx context.Context, b []byte) (Event, error) {
	var ev Event
	err := s.DecodeInto(ctx, b, &ev)
	return ev, err
}

// DecodeInto is Decode into a caller-owned Event, which it overwrites.
func (s *Serde) DecodeInto(ctx context.Context, b []byte, ev *Event) error {
	id, body, err := s.splitFrame(b)
	if err != nil {
		*ev = Event{}
		return err
	}
	w, err := s.writer(ctx, id)
	if err != nil {
		*ev = Event{}
		return err
	}
	if w.eventErr != nil {
		*ev = Event{}
		return w.eventErr
	}
	if de := w.event.decode(body, ev); de != nil {
		de.SchemaID = id
		return de
	}
	return nil
}

// DecodeNative reads a framed record into goavro's native form. With
// readerSchema empty it is the writer's shape; otherwise it is resolved to
// readerSchema (fields matched by name, reader-only fields given their
// default, writer-only fields dropped), which is how a consumer built for
// one version reads data written with another.
func (s *Serde) DecodeNative(ctx context.Context, b []byte, readerSchema string) (any, error) {
	id, body, err := s.splitFrame(b)
	if err != nil {
		return nil, err
	}
	w, err := s.writer(ctx, id)
	if err != nil {
		return nil, err
	}
	native, rest, err := w.codec.NativeFromBinary(body)
	if err != nil {
		return nil, &DecodeError{Code: CodeBadAvro, SchemaID: id, Err: err}
	}
	if len(rest) > 0 {
		return nil, &DecodeError{Code: CodeBadAvro, SchemaID: id, Err: fmt.Errorf("%w: %d", errTrailing, len(rest))}
	}
	if readerSchema == "" {
		return native, nil
	}
	reader, err := s.readerNode(readerSchema)
	if err != nil {
		return nil, err
	}
	out, err := resolveNative(reader, w.node, native, "")
	if err != nil {
		return nil, &DecodeError{Code: CodeWrongType, SchemaID: id, Err: err}
	}
	return out, nil
}

func (s *Serde) readerNode(schema string) (*avroNode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.readers[schema]; ok {
		return n, nil
	}
	n, err := parseAvroSchema(schema)
	if err != nil {
		return nil, fmt.Errorf("reader schema: %w", err)
	}
	s.readers[schema] = n
	return n, nil
}
