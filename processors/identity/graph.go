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
	// Partition and Offset locate the event in its source topic. They are
	// the idempotency key: per partition, offsets must increase, and an
	// offset that was applied before is not applied again (see Resolve).
	Partition int32
	Offset    int64
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
	// and for events without a usable identifier (Rejected says why; such
	// events belong in the dead-letter topic).
	ProfileID string
	// Duplicate is true when the message id was seen within the dedup
	// window; the graph was not changed. A replayed event (same partition
	// and offset) is not a duplicate: it returns its first result.
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
	DefaultChunkSize = 500
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
// 200, at most 1000). Larger chunks cost fewer round trips but hold the
// shard longer.
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
		base:     o.prefix + "{" + o.space + "}:",
		chunk:    o.chunk,
		window:   int64(o.rules.DedupWindow / time.Second),
		resolveS: redis.NewScript(resolveSrc),
		readS:    redis.NewScript(readSrc),
	}
	g.meta = g.base + "m"
	// Dedup buckets are one window wide and an event looks into its own and
	// the previous one, so a bucket is needed for two windows after its
	// first event; the third covers consumer lag.
	g.header = []any{g.window, 3 * g.window, o.buckets, o.load, g.space}
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
}

// Resolve applies a batch of events to the graph and returns one Result per
// input, in order.
//
// Resolve is idempotent per (partition, offset): every script call stores,
// atomically with its effects, each partition's highest applied offset and
// the result of every applied event. An input at or below that marker is
// not applied again; its stored result is returned, so a batch re-sent after
// a crash yields exactly the first results. Call Committed once the results
// up to an offset are safely in Kafka to drop the stored results. When
// Resolve returns an error, part of the batch may have been applied: send
// the same inputs again.
//
// Within a batch, offsets must increase per partition.
func (g *Graph) Resolve(ctx context.Context, batch []Input) ([]Result, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	last := map[int32]int64{}
	for _, in := range batch {
		if prev, ok := last[in.Partition]; ok && in.Offset <= prev {
			return nil, fmt.Errorf("identity: resolving a batch: partition %d offset %d follows offset %d; offsets must increase", in.Partition, in.Offset, prev)
		}
		last[in.Partition] = in.Offset
	}
	prep := make([]prepared, len(batch))
	for i := range batch {
		p := &prep[i]
		p.kept, p.rejected = g.rules.normalize(batch[i].Identifiers, nil, nil)
		slices.SortStableFunc(p.kept, func(a, b Identifier) int {
			return cmp.Compare(g.rules.rank[a.Type], g.rules.rank[b.Type])
		})
	}
	var calls [][]any
	for start := 0; start < len(batch); start += g.chunk {
		end := min(start+g.chunk, len(batch))
		calls = append(calls, g.args(batch[start:end], prep[start:end]))
	}
	replies, err := g.run(ctx, calls)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(batch))
	for i := range batch {
		r, err := g.decode(replies[i], &batch[i], prep[i].rejected)
		if err != nil {
			return nil, fmt.Errorf("identity: decoding the result of partition %d offset %d: %w", batch[i].Partition, batch[i].Offset, err)
		}
		results[i] = r
	}
	return results, nil
}

// run sends the calls in one pipeline and returns the replies in input
// order. A Redis that lost its scripts (a restart, a failover) gets them
// again and the calls are repeated: calls that did apply return their stored
// results the second time.
func (g *Graph) run(ctx context.Context, calls [][]any) ([]string, error) {
	keys := []string{g.meta}
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(calls))
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, args := range calls {
				cmds[i] = g.resolveS.EvalSha(ctx, p, keys, args...)
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
			return nil, fmt.Errorf("identity: resolving events in Redis: %w", err)
		}
		var out []string
		for _, c := range cmds {
			vals, err := c.StringSlice()
			if err != nil {
				return nil, fmt.Errorf("identity: resolving events in Redis: %w", err)
			}
			out = append(out, vals...)
		}
		return out, nil
	}
}

// args builds the script arguments of one chunk (see resolve.lua).
func (g *Graph) args(batch []Input, prep []prepared) []any {
	n := len(g.header) + 1 + 7*len(batch)
	for i := range prep {
		n += 3 * len(prep[i].kept)
	}
	args := make([]any, 0, n)
	args = append(args, g.header...)
	args = append(args, len(batch))
	var buf []byte
	for i := range batch {
		in := &batch[i]
		md := ""
		if in.MessageID != "" {
			buf = append(append(append(buf[:0], g.space...), 0, 'm', ':'), in.MessageID...)
			sum := sha256.Sum256(buf)
			md = string(sum[:12])
		}
		unix := in.Time.Unix()
		idx := unix / g.window
		if unix < 0 && unix%g.window != 0 {
			idx--
		}
		ext := ""
		kept := prep[i].kept
		args = append(args, strconv.FormatInt(int64(in.Partition), 10), strconv.FormatInt(in.Offset, 10), md, idx, unix-idx*g.window, "", len(kept))
		extAt := len(args) - 2
		for j, id := range kept {
			code := codeOf(id.Type)
			buf = append(append(append(append(buf[:0], g.space...), 0), code...), ':')
			buf = append(buf, id.Value...)
			sum := sha256.Sum256(buf)
			if j == 0 {
				// A new profile is named after the creating event's
				// highest-priority identifier: deterministic, so a rebuild
				// from Kafka gives the profiles their old ids.
				ext = b32.EncodeToString(sum[12:22])
			}
			args = append(args, string(sum[:12]), code, code+":"+id.Value)
		}
		args[extAt] = ext
	}
	return args
}

// decode turns one script reply into a Result. The reply is
//
//	"D"  duplicate
//	"N"  no usable identifier
//	"P" profile, then records separated by \x1e, fields by \x1f:
//	   M from into via-code member...     a merge
//	   L member code have limit           a limit rejection
//	   X member code have limit other     a merge-protection rejection
func (g *Graph) decode(blob string, in *Input, rejected []Rejection) (Result, error) {
	switch {
	case blob == "D":
		return Result{Duplicate: true}, nil
	case blob == "N":
		return Result{Rejected: rejected}, nil
	case !strings.HasPrefix(blob, "P"):
		return Result{}, fmt.Errorf("unexpected reply %q", blob)
	}
	recs := strings.Split(blob[1:], "\x1e")
	r := Result{ProfileID: recs[0], Rejected: rejected}
	for _, rec := range recs[1:] {
		f := strings.Split(rec, "\x1f")
		switch {
		case f[0] == "M" && len(f) >= 4:
			m := Merge{From: f[1], Into: f[2], TriggerMessageID: in.MessageID, Rule: "linked_by:" + g.rules.typeName(f[3]), Time: in.Time}
			sum := sha256.Sum256([]byte(g.space + "\x00" + m.From + "\x00" + m.Into + "\x00" + in.MessageID))
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
	if errors.Is(err, redis.Nil) {
		return "", nil, fmt.Errorf("%w: %s", ErrNotFound, profileID)
	}
	if err != nil {
		return "", nil, fmt.Errorf("identity: reading profile %s: %w", profileID, err)
	}
	for _, s := range vals[1:] {
		id, err := g.member(s)
		if err != nil {
			return "", nil, fmt.Errorf("identity: reading profile %s: %w", profileID, err)
		}
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b Identifier) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
	})
	return vals[0], ids, nil
}

// Committed tells the graph that the results of partition's events up to
// and including offset are in Kafka for good (the transaction that carried
// them committed), so they need not be kept for replays any more.
func (g *Graph) Committed(ctx context.Context, partition int32, offset int64) error {
	key := g.base + "r" + strconv.FormatInt(int64(partition), 10)
	if err := g.rdb.XTrimMinID(ctx, key, strconv.FormatInt(offset+1, 10)+"-0").Err(); err != nil {
		return fmt.Errorf("identity: dropping stored results of partition %d up to offset %d: %w", partition, offset, err)
	}
	return nil
}

// Applied returns the highest offset of partition whose effects are in the
// graph; ok is false when none is. After a Redis failure that lost recent
// writes, Applied can be below the group's committed offset: re-consume
// from Applied+1 to bring the graph up to date.
func (g *Graph) Applied(ctx context.Context, partition int32) (offset int64, ok bool, err error) {
	v, err := g.rdb.HGet(ctx, g.base+"o", strconv.FormatInt(int64(partition), 10)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("identity: reading the applied offset of partition %d: %w", partition, err)
	}
	offset, err = strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("identity: applied offset of partition %d is %q: %w", partition, v, err)
	}
	return offset, true, nil
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
