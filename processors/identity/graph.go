package identity

import (
	"cmp"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	_ "embed"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/journal"
)

// Identifier is one identifier of an event: a type (user_id, anonymous_id,
// email, phone, device_id or a custom type named in the rules) and a value.
type Identifier struct{ Type, Value string }

// Input is one event to resolve.
type Input struct {
	// MessageID deduplicates: a second event with the same id within the
	// rules' dedup window (in event time) is a duplicate. Empty disables
	// deduplication for the event.
	MessageID string
	// Identifiers as found in the event; Resolve normalises them.
	Identifiers []Identifier
	// Time is the event time; it places the event in the dedup window and
	// stamps the merges it causes.
	Time time.Time
	// Offset locates the event in its input partition; within a batch
	// offsets must increase. A journaled Resolve stores each event's
	// receipt under it.
	Offset int64
	// Decided, when set, is a dead-letter decision made before the graph
	// was asked (the event could not be decoded or is invalid; see
	// DeadLetterReceipt): the graph journals it as it is and changes
	// nothing, so a replay repeats the decision.
	Decided string
}

// Merge records that profile From was merged into profile Into: From is
// now an alias of Into.
type Merge struct {
	// ID is unique to the merge and stable across replays.
	ID string
	// From is the merged-away (younger) profile, Into the survivor.
	From, Into string
	// Moved are the identifiers that were From's and are now Into's, sorted.
	Moved []Identifier
	// TriggerMessageID is the event that linked the two profiles.
	TriggerMessageID string
	// Rule says why: "linked_by:<type>", the type of the event's
	// highest-priority identifier that belonged to From.
	Rule string
	// Time is the triggering event's time.
	Time time.Time
}

// Rejection is an identifier of an event that was not linked, and why.
type Rejection struct {
	Identifier Identifier
	// Rule is one of the Rule* constants: blocked, invalid, unknown_type,
	// limit, merge_protection.
	Rule string
	// Reason is a sentence for people, starting with Rule.
	Reason string
}

// Result is what resolving one Input did.
type Result struct {
	// ProfileID is the profile the event belongs to; empty for duplicates
	// and dead letters.
	ProfileID string
	// DeadLetter is set when the event goes to the dead-letter topic: it
	// was decided before (Input.Decided), or none of its identifiers
	// survived the rules (code no_usable_identifier; Rejected says why).
	DeadLetter *dlq.Failure
	// Duplicate is true when the message id was seen within the dedup
	// window; the graph was not changed.
	Duplicate bool
	// Merges the event caused, oldest merged-away profile first.
	Merges []Merge
	// Rejected identifiers: those Normalize refused (as given), then those
	// the limits refused (normalised).
	Rejected []Rejection
}

// ErrNotFound is returned by Profile for an unknown profile id.
var ErrNotFound = errors.New("identity: profile not found")

//go:embed resolve.lua
var resolveSrc string

//go:embed read.lua
var readSrc string

// Defaults of the options.
const (
	DefaultPrefix    = "cdp:"
	DefaultSpace     = "default"
	DefaultChunkSize = 1000
	// maxChunk keeps one script's reply-stream entry under the 8000
	// values Redis' Lua can unpack, and one call short enough not to stall
	// other clients of the shard.
	maxChunk = 1000
)

type options struct {
	prefix, space string
	rules         Rules
	chunk         int
	buckets, load int
}

// Option configures NewGraph.
type Option func(*options)

// WithPrefix sets the key prefix (default "cdp:"). Tests pass testkit's
// per-test prefix.
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithSpace names the identity space (default "default"): one graph, one
// hash tag, so one Redis Cluster shard (see the package documentation).
// Profile ids are derived from it, so the same events in two spaces get
// different ids.
func WithSpace(s string) Option { return func(o *options) { o.space = s } }

// WithRules sets the rules (default DefaultRules()).
func WithRules(r Rules) Option { return func(o *options) { o.rules = r } }

// WithChunkSize sets how many events one script call resolves (default
// 1,000, also the most: about 15 ms of script time). Larger chunks cost fewer
// round trips, find more of their identifiers and dedup keys already read
// in the same call, but hold the shard longer.
func WithChunkSize(n int) Option { return func(o *options) { o.chunk = n } }

// withTable sets the identifier table's initial bucket count and load
// factor. They are stored with the graph when it is created and read from
// it afterwards. Tests use tiny values to exercise bucket splits.
func withTable(buckets, load int) Option {
	return func(o *options) { o.buckets, o.load = buckets, load }
}

// Graph is the identity graph of one space in Redis. It keeps no state of
// its own, so any number of Graphs in any number of processes may work on
// one space at once: every change is one Lua script call, atomic in Redis.
type Graph struct {
	rdb      redis.UniversalClient
	rules    *compiled
	space    string
	prefix   string
	base     string // every key starts with it: prefix + "{" + space + "}:"
	meta     string
	chunk    int
	window   int64 // seconds
	header   []any // the ARGV every resolve call starts with
	resolveS *redis.Script
	readS    *redis.Script
}

// NewGraph returns the graph of a space. It checks the rules and loads the
// scripts into Redis.
func NewGraph(rdb redis.UniversalClient, opts ...Option) (*Graph, error) {
	o := options{prefix: DefaultPrefix, space: DefaultSpace, rules: DefaultRules(), chunk: DefaultChunkSize, buckets: 1024, load: 40}
	for _, f := range opts {
		f(&o)
	}
	if o.space == "" || strings.ContainsAny(o.space, "{}") {
		return nil, fmt.Errorf("identity: space %q: want a non-empty name without braces", o.space)
	}
	if o.chunk < 1 || o.chunk > maxChunk {
		return nil, fmt.Errorf("identity: chunk size %d: want 1 to %d", o.chunk, maxChunk)
	}
	if o.buckets < 1 || o.buckets&(o.buckets-1) != 0 || o.load < 1 {
		return nil, fmt.Errorf("identity: table of %d buckets at load %d: want a power of two and a positive load", o.buckets, o.load)
	}
	c, err := compile(o.rules)
	if err != nil {
		return nil, err
	}
	g := &Graph{
		rdb:      rdb,
		rules:    c,
		space:    o.space,
		prefix:   o.prefix,
		base:     o.prefix + "{" + o.space + "}:",
		chunk:    o.chunk,
		window:   int64(o.rules.DedupWindow / time.Second),
		resolveS: redis.NewScript(journal.Script(resolveSrc)),
		readS:    redis.NewScript(readSrc),
	}
	g.meta = g.base + "m"
	// Dedup buckets are one window wide and an event looks into its own and
	// the previous one, so a bucket is needed for two windows after its
	// first event; the third covers consumer lag.
	g.header = []any{3 * g.window, o.buckets, o.load, g.space, g.rules.DedupKeyIDs, g.rules.DedupShards}
	codes := make([]string, 0, len(c.limit))
	for code := range c.limit {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	g.header = append(g.header, len(codes))
	for _, code := range codes {
		g.header = append(g.header, code, c.limit[code])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.checkEviction(ctx); err != nil {
		return nil, err
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// checkEviction refuses a Redis that evicts keys: an evicted bucket or
// profile silently splits and corrupts profiles. Managed services that
// forbid CONFIG are trusted.
func (g *Graph) checkEviction(ctx context.Context) error {
	v, err := g.rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return nil
	}
	if p := v["maxmemory-policy"]; strings.HasPrefix(p, "allkeys-") {
		return fmt.Errorf("identity: Redis maxmemory-policy is %s, which evicts identity graph keys; set it to noeviction", p)
	}
	return nil
}

func (g *Graph) load(ctx context.Context) error {
	for _, s := range []*redis.Script{g.resolveS, g.readS} {
		if err := s.Load(ctx, g.rdb).Err(); err != nil {
			return fmt.Errorf("identity: loading Lua script into Redis: %w", err)
		}
	}
	return nil
}

// Rules returns the rules the graph applies.
func (g *Graph) Rules() Rules { return g.rules.Rules }

var b32 = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// prepared is one input ready for the script.
type prepared struct {
	kept     []Identifier // normalised, in priority order
	rejected []Rejection
	decided  string // a dead-letter receipt: the graph is not asked
	extra    string // normalisation rejections, kept in the receipt
}

// StepFunc gives a journaled Resolve the journal step of each script call
// covering input offsets first..last: the partition's four journal keys and
// the step header (see internal/journal: the keys share the space's hash
// tag).
type StepFunc func(first, last int64) (keys []string, header []any)

// Resolve applies a batch of events to the graph and returns one Result per
// input, in order. It is not journaled: applying the same events again
// applies them again (see ResolveJournaled).
func (g *Graph) Resolve(ctx context.Context, batch []Input) ([]Result, error) {
	return g.resolve(ctx, batch, nil)
}

// ResolveJournaled is Resolve with every script call written, atomically,
// with its step of the processing runtime's journal: each event's receipt
// (its result, or the dead-letter decision it came with) is stored, so the
// runtime can rebuild the outputs of an event it applied but did not
// commit, without applying it twice. When it returns an error, some calls
// may have been applied; their steps are in the journal.
func (g *Graph) ResolveJournaled(ctx context.Context, batch []Input, step StepFunc) ([]Result, error) {
	return g.resolve(ctx, batch, step)
}

// The step header of a call that is not journaled: the script skips the
// journal.
var noJournal = []any{"-", "", "", "", "", "", "", "", "", ""}

func (g *Graph) resolve(ctx context.Context, batch []Input, step StepFunc) ([]Result, error) {
	b, err := g.Prepare(batch, step)
	if err != nil || b == nil {
		return nil, err
	}
	return g.Apply(ctx, b)
}

// Batch is a batch of events prepared for the graph (Prepare): normalised,
// ranked and encoded as script calls, with their journal steps taken.
type Batch struct {
	inputs []Input
	prep   []prepared
	calls  []call
}

// Prepare does a Resolve's work that needs no Redis: it normalises and
// ranks each input's identifiers, decides the events left with none, and
// builds one script call per chunk, taking the chunk's journal step from
// step (nil: not journaled). Apply sends the calls. The two are apart so
// that a caller can prepare its next batch while Redis works on the one
// before (the identity task does); batches of one journal must be applied
// in the order they were prepared. A nil batch (no inputs) needs no Apply.
func (g *Graph) Prepare(batch []Input, step StepFunc) (*Batch, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	for i := 1; i < len(batch); i++ {
		if batch[i].Offset <= batch[i-1].Offset {
			return nil, fmt.Errorf("identity: resolving a batch: offset %d follows offset %d; offsets must increase", batch[i].Offset, batch[i-1].Offset)
		}
	}
	prep := make([]prepared, len(batch))
	for i := range batch {
		p := &prep[i]
		if batch[i].Decided != "" {
			p.decided = batch[i].Decided
			continue
		}
		p.kept, p.rejected = g.rules.normalize(batch[i].Identifiers, nil, nil)
		slices.SortStableFunc(p.kept, func(a, b Identifier) int {
			return cmp.Compare(g.rules.rank[a.Type], g.rules.rank[b.Type])
		})
		if len(p.kept) == 0 {
			p.decided = DeadLetterReceipt(dlq.Failure{Code: CodeNoIdentifier, Stage: "identity",
				Reason: "no identifier survived the identity rules: " + rejectionSummary(p.rejected)})
			continue
		}
		if len(p.rejected) > 0 {
			p.extra = string(rejectionJSON(p.rejected))
		}
	}
	b := &Batch{inputs: batch, prep: prep}
	for start := 0; start < len(batch); start += g.chunk {
		end := min(start+g.chunk, len(batch))
		c := call{keys: g.noJournalKeys(), header: noJournal}
		if step != nil {
			c.keys, c.header = step(batch[start].Offset, batch[end-1].Offset)
			c.keys = append(c.keys[:4:4], g.meta)
		}
		c.args = g.args(c.header, batch[start:end], prep[start:end])
		b.calls = append(b.calls, c)
	}
	return b, nil
}

// Apply sends a prepared batch's script calls, in one pipeline, and returns
// one Result per input, in order. When it returns an error, some of the
// calls may have been applied (see ResolveJournaled).
func (g *Graph) Apply(ctx context.Context, b *Batch) ([]Result, error) {
	replies, err := g.run(ctx, b.calls)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(b.inputs))
	for i, in := range b.inputs {
		r, err := g.decode(replies[i], in.MessageID, in.Time)
		if err != nil {
			return nil, fmt.Errorf("identity: decoding the result of offset %d: %w", in.Offset, err)
		}
		if r.DeadLetter != nil && in.Decided == "" {
			r.Rejected = b.prep[i].rejected // why no identifier survived
		}
		results[i] = r
	}
	return results, nil
}

// ChunkSize is how many events one script call resolves (WithChunkSize).
func (g *Graph) ChunkSize() int { return g.chunk }

type call struct {
	keys   []string
	header []any
	args   []any
}

// noJournalKeys stand in for the journal's keys in a call that is not
// journaled; the script never touches them.
func (g *Graph) noJournalKeys() []string {
	return []string{g.base + "-m", g.base + "-x", g.base + "-w", g.base + "-s", g.meta}
}

// DeadLetterReceipt is the journaled decision to dead-letter an event.
func DeadLetterReceipt(f dlq.Failure) string {
	return "Q" + f.Code + "\x1f" + f.Stage + "\x1f" + f.Reason
}

// run sends the calls in one pipeline and returns the replies in input
// order. A Redis that lost its scripts (a restart, a failover) gets them
// again and the calls are repeated.
func (g *Graph) run(ctx context.Context, calls []call) ([]string, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(calls))
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range calls {
				cmds[i] = g.resolveS.EvalSha(ctx, p, c.keys, c.args...)
			}
			return nil
		})
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := g.load(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("identity: resolving events in Redis: %w", journal.Classify(err))
		}
		var out []string
		for _, c := range cmds {
			vals, err := c.StringSlice()
			if err != nil {
				return nil, fmt.Errorf("identity: resolving events in Redis: %w", journal.Classify(err))
			}
			out = append(out, vals...)
		}
		return out, nil
	}
}

// noDigest holds the place of a digest (12 bytes) in an argument.
var noDigest = make([]byte, 12)

// dedupEntry is one message id of a chunk, in its dedup bucket.
type dedupEntry struct {
	idx, rel int64 // bucket (event time / window) and seconds into it
	pos      int   // the event's 1-based position in the chunk
	md       string
}

// args builds the script arguments of one chunk (see resolve.lua).
func (g *Graph) args(header []any, batch []Input, prep []prepared) []any {
	n := len(header) + len(g.header) + 2 + 6*len(batch)
	for i := range prep {
		n += len(prep[i].kept)
	}
	args := make([]any, 0, n)
	args = append(args, header...)
	args = append(args, g.header...)
	var buf, slow []byte
	var dd []dedupEntry
	for i := range batch {
		in := &batch[i]
		if prep[i].decided != "" || in.MessageID == "" {
			continue
		}
		buf = append(append(append(buf[:0], g.space...), 0, 'm', ':'), in.MessageID...)
		sum := sha256.Sum256(buf)
		unix := in.Time.Unix()
		idx := unix / g.window
		if unix < 0 && unix%g.window != 0 {
			idx--
		}
		dd = append(dd, dedupEntry{idx: idx, pos: i + 1, md: string(sum[:12]), rel: unix - idx*g.window})
	}
	// Grouped by bucket, by digest within a bucket (a dedup key holds a
	// range of digests, so the script reads and writes each key once),
	// offset order for copies of one id: see resolve.lua.
	slices.SortFunc(dd, func(a, b dedupEntry) int {
		return cmp.Or(cmp.Compare(a.idx, b.idx), strings.Compare(a.md, b.md), cmp.Compare(a.pos, b.pos))
	})
	groups := 0
	at := len(args)
	args = append(args, nil)
	for k := 0; k < len(dd); {
		e := k
		for e < len(dd) && dd[e].idx == dd[k].idx {
			e++
		}
		args = append(args, strconv.FormatInt(dd[k].idx, 10), e-k)
		for _, d := range dd[k:e] {
			args = append(args, d.md, strconv.FormatInt(d.rel, 10)+":"+strconv.Itoa(d.pos))
		}
		groups++
		k = e
	}
	args[at] = groups
	args = append(args, len(batch))
	for i := range batch {
		in := &batch[i]
		off := strconv.FormatInt(in.Offset, 10)
		if d := prep[i].decided; d != "" {
			args = append(args, off, 0, d)
			continue
		}
		kept := prep[i].kept
		// What only the script's slow path reads, in one argument: extra,
		// the new profile's id, then each identifier's code and
		// "code:value". Normalised values hold no control characters, and
		// extra is JSON, so \x1f cannot occur in them.
		slow = append(slow[:0], noDigest...) // the new profile id's digest, below
		slow = append(slow, prep[i].extra...)
		slow = append(slow, 0x1f)
		at := len(args) + 2
		args = append(args, off, len(kept), nil)
		for j, id := range kept {
			code := codeOf(id.Type)
			buf = append(append(append(append(buf[:0], g.space...), 0), code...), ':')
			buf = append(buf, id.Value...)
			sum := sha256.Sum256(buf)
			if j == 0 {
				// A new profile is named after the creating event's
				// highest-priority identifier: deterministic, so a rebuild
				// from Kafka gives the profiles their old ids.
				from := len(slow)
				slow = b32.AppendEncode(slow, sum[12:22])
				copy(slow, g.profileDigest(string(slow[from:])))
			}
			slow = append(append(append(append(slow, 0x1f), code...), 0x1f), code...)
			slow = append(append(slow, ':'), id.Value...)
			args = append(args, string(sum[:12]))
		}
		args[at] = string(slow)
	}
	return args
}

// Decode rebuilds the Result of an event from its receipt (what the
// journal keeps, see ResolveJournaled): messageID and eventTime are the
// event's, as given to Resolve.
func (g *Graph) Decode(receipt, messageID string, eventTime time.Time) (Result, error) {
	return g.decode(receipt, messageID, eventTime)
}

// decode turns one script reply into a Result. The reply is
//
//	"D"  duplicate
//	"Q" code \x1f stage \x1f reason: a dead letter
//	"P" profile, then records separated by \x1e, fields by \x1f, then
//	   optionally \x1d and the normalisation rejections (JSON):
//	   M from into via-code member...     a merge
//	   L member code have limit           a limit rejection
//	   X member code have limit other     a merge-protection rejection
func (g *Graph) decode(blob, messageID string, eventTime time.Time) (Result, error) {
	switch {
	case blob == "D":
		return Result{Duplicate: true}, nil
	case strings.HasPrefix(blob, "Q"):
		f := strings.SplitN(blob[1:], "\x1f", 3)
		if len(f) != 3 {
			return Result{}, fmt.Errorf("unexpected dead-letter receipt %q", blob)
		}
		return Result{DeadLetter: &dlq.Failure{Code: f[0], Stage: f[1], Reason: f[2]}}, nil
	case !strings.HasPrefix(blob, "P"):
		return Result{}, fmt.Errorf("unexpected reply %q", blob)
	}
	body, extra, _ := strings.Cut(blob[1:], "\x1d")
	recs := strings.Split(body, "\x1e")
	r := Result{ProfileID: recs[0]}
	if extra != "" {
		rej, err := parseRejections(extra)
		if err != nil {
			return Result{}, err
		}
		r.Rejected = rej
	}
	for _, rec := range recs[1:] {
		f := strings.Split(rec, "\x1f")
		switch {
		case f[0] == "M" && len(f) >= 4:
			m := Merge{From: f[1], Into: f[2], TriggerMessageID: messageID, Rule: "linked_by:" + g.rules.typeName(f[3]), Time: eventTime}
			sum := sha256.Sum256([]byte(g.space + "\x00" + m.From + "\x00" + m.Into + "\x00" + messageID))
			m.ID = b32.EncodeToString(sum[:12])
			for _, mem := range f[4:] {
				id, err := g.member(mem)
				if err != nil {
					return Result{}, err
				}
				m.Moved = append(m.Moved, id)
			}
			slices.SortFunc(m.Moved, func(a, b Identifier) int {
				return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
			})
			r.Merges = append(r.Merges, m)
		case (f[0] == "L" && len(f) == 5) || (f[0] == "X" && len(f) == 6):
			id, err := g.member(f[1])
			if err != nil {
				return Result{}, err
			}
			if f[2] == "*" {
				r.Rejected = append(r.Rejected, profileSizeRejection(id, f))
				continue
			}
			typ := g.rules.typeName(f[2])
			if f[0] == "L" {
				r.Rejected = append(r.Rejected, Rejection{Identifier: id, Rule: RuleLimit,
					Reason: fmt.Sprintf("limit: the profile would hold %s %s identifiers, the limit is %s", f[3], typ, f[4])})
			} else {
				r.Rejected = append(r.Rejected, Rejection{Identifier: id, Rule: RuleMergeProtection,
					Reason: fmt.Sprintf("merge_protection: it belongs to profile %s; merging would give one profile %s %s identifiers, the limit is %s, so it was not linked", f[5], f[3], typ, f[4])})
			}
		default:
			return Result{}, fmt.Errorf("unexpected record %q", rec)
		}
	}
	return r, nil
}

// profileSizeRejection explains an L or X record of the size cap.
func profileSizeRejection(id Identifier, f []string) Rejection {
	if f[0] == "L" {
		return Rejection{Identifier: id, Rule: RuleProfileSize,
			Reason: fmt.Sprintf("profile_size: the profile would hold %s identifiers, max_identifiers is %s", f[3], f[4])}
	}
	return Rejection{Identifier: id, Rule: RuleProfileSize,
		Reason: fmt.Sprintf("profile_size: it belongs to profile %s; merging would give one profile %s identifiers, max_identifiers is %s, so it was not linked", f[5], f[3], f[4])}
}

// member parses a stored "code:value".
func (g *Graph) member(s string) (Identifier, error) {
	code, val, ok := strings.Cut(s, ":")
	if !ok {
		return Identifier{}, fmt.Errorf("stored identifier %q has no type", s)
	}
	return Identifier{Type: g.rules.typeName(code), Value: val}, nil
}

// digest is the key of a normalised identifier in the identifier table.
func (g *Graph) digest(id Identifier) string {
	sum := sha256.Sum256([]byte(g.space + "\x00" + codeOf(id.Type) + ":" + id.Value))
	return string(sum[:12])
}

// profileDigest is the key of a profile id in the identifier table; SHA-1
// because resolve.lua computes it too, with redis.sha1hex.
func (g *Graph) profileDigest(profileID string) string {
	sum := sha1.Sum([]byte(g.space + "\x00@:" + profileID))
	return string(sum[:12])
}

// Lookup returns the profile an identifier belongs to. The identifier is
// normalised first, so "Ann@Example.com " finds "ann@example.com". Type
// TypeProfileID resolves a profile id, also one that was merged away, to
// the profile that holds it now. ok is false when the identifier is not in
// the graph or cannot be (blocked, invalid).
func (g *Graph) Lookup(ctx context.Context, id Identifier) (profileID string, ok bool, err error) {
	var d string
	if id.Type == TypeProfileID {
		d = g.profileDigest(strings.TrimSpace(id.Value))
	} else {
		n, rule, _ := g.rules.normalizeOne(id)
		if rule != "" {
			return "", false, nil
		}
		d = g.digest(n)
	}
	v, err := g.readS.Run(ctx, g.rdb, []string{g.meta}, "l", d).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("identity: looking up %s %q: %w", id.Type, id.Value, err)
	}
	s, _ := v.(string)
	return s, s != "", nil
}

// Profile returns the current id of a profile (itself, or the profile it
// was merged into) and its identifiers, sorted by type and value. It
// returns ErrNotFound for an unknown id.
func (g *Graph) Profile(ctx context.Context, profileID string) (canonicalID string, ids []Identifier, err error) {
	vals, err := g.readS.Run(ctx, g.rdb, []string{g.meta}, "p", g.profileDigest(profileID)).StringSlice()
	return g.profileOf(vals, err, profileID)
}

// QueueProfile queues Profile(profileID) on pipe, so that a reader can send
// it in one round trip with other reads (the profile API does), and
// returns the function that gives its result once pipe has run.
func (g *Graph) QueueProfile(ctx context.Context, pipe redis.Pipeliner, profileID string) func() (canonicalID string, ids []Identifier, err error) {
	return g.queueRead(ctx, pipe, g.profileDigest(profileID), profileID)
}

// QueueProfileOf queues the read of the profile holding id, normalised as
// Lookup does (TypeProfileID: a profile id, also one merged away), in one
// script call where Lookup and Profile take two. The result is
// ErrNotFound when no profile holds id or the rules refuse it (blocked,
// invalid).
func (g *Graph) QueueProfileOf(ctx context.Context, pipe redis.Pipeliner, id Identifier) func() (canonicalID string, ids []Identifier, err error) {
	what := id.Type + " " + strconv.Quote(id.Value)
	if id.Type == TypeProfileID {
		return g.queueRead(ctx, pipe, g.profileDigest(strings.TrimSpace(id.Value)), what)
	}
	n, rule, _ := g.rules.normalizeOne(id)
	if rule != "" {
		return func() (string, []Identifier, error) { return "", nil, fmt.Errorf("%w: %s", ErrNotFound, what) }
	}
	return g.queueRead(ctx, pipe, g.digest(n), what)
}

// queueRead queues read.lua's "p" mode for digest d.
func (g *Graph) queueRead(ctx context.Context, pipe redis.Pipeliner, d, what string) func() (string, []Identifier, error) {
	keys := []string{g.meta}
	cmd := g.readS.EvalSha(ctx, pipe, keys, "p", d)
	return func() (string, []Identifier, error) {
		vals, err := cmd.StringSlice()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis lost its script cache (a restart): Run loads it again.
			vals, err = g.readS.Run(ctx, g.rdb, keys, "p", d).StringSlice()
		}
		return g.profileOf(vals, err, what)
	}
}

// profileOf decodes read.lua's answer about what.
func (g *Graph) profileOf(vals []string, err error, what string) (string, []Identifier, error) {
	if errors.Is(err, redis.Nil) {
		return "", nil, fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	if err != nil {
		return "", nil, fmt.Errorf("identity: reading profile %s: %w", what, err)
	}
	var ids []Identifier
	if len(vals) > 1 {
		ids = make([]Identifier, 0, len(vals)-1)
	}
	for _, s := range vals[1:] {
		id, err := g.member(s)
		if err != nil {
			return "", nil, fmt.Errorf("identity: reading profile %s: %w", what, err)
		}
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b Identifier) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
	})
	return vals[0], ids, nil
}

// Stats are the graph's counters.
type Stats struct {
	// Identifiers in the graph (not counting profile ids).
	Identifiers int64
	// Profiles alive; Created counts every profile ever created, so
	// Created-Profiles were merged away.
	Profiles, Created int64
	// Buckets of the identifier table and its Entries (identifiers plus
	// every profile id ever created).
	Buckets, Entries int64
}

// Stats reads the graph's counters.
func (g *Graph) Stats(ctx context.Context) (Stats, error) {
	v, err := g.rdb.HMGet(ctx, g.meta, "n0", "l", "s", "n", "c", "np", "ni").Result()
	if err != nil {
		return Stats{}, fmt.Errorf("identity: reading graph counters: %w", err)
	}
	n := make([]int64, len(v))
	for i, x := range v {
		if s, ok := x.(string); ok {
			n[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return Stats{
		Identifiers: n[6], Profiles: n[5], Created: n[4], Entries: n[3],
		Buckets: n[0]<<n[1] + n[2],
	}, nil
}
