package segments

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/keyspace"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/segments/rules"
)

// Reader reads memberships and segment sizes, for the profile API and the
// `cdp segments` commands. It is safe for concurrent use.
type Reader struct {
	rdb    redis.UniversalClient
	rules  *rules.Set
	layout *keyspace.Layout
	store  *features.Reader
}

// NewReader reads what the processor with cfg and set writes; store (may
// be nil) is the feature store it evaluates from, for StoreProfiles.
func NewReader(rdb redis.UniversalClient, cfg Config, set *rules.Set, store *features.Reader) *Reader {
	return &Reader{rdb: rdb, rules: set, layout: keyspace.New("segments", cfg.Prefix, cfg.Partitions), store: store}
}

// Reader returns a Reader of the processor's store.
func (p *Processor) Reader() *Reader {
	return &Reader{rdb: p.rdb, rules: p.rules, layout: p.layout, store: p.store}
}

// Membership is one segment a profile is in.
type Membership struct {
	Segment string    `json:"segment"`
	Since   time.Time `json:"since"`
}

// ErrNotFound is returned for a profile the segments processor has not seen.
var ErrNotFound = errors.New("profile not found in the segments store")

// Members returns the segments profile is in (following a merge to the
// survivor) and that profile's id.
func (r *Reader) Members(ctx context.Context, profile string) ([]Membership, string, error) {
	id := profile
	for range maxMergeHops {
		out, into, err := r.decodeMembers(r.rdb.HGet(ctx, r.key(id), id), id)
		if err != nil || into == "" {
			return out, id, err
		}
		id = into
	}
	return nil, id, fmt.Errorf("profile %s: too many merges to follow", profile)
}

// QueueMembers queues the read of Members(profile) on pipe, so that a
// reader can send it in one round trip with other reads (the profile API
// does), and returns the function that gives its result once pipe has
// run. A profile the store knows as merged away is followed to its
// survivor with further reads.
func (r *Reader) QueueMembers(ctx context.Context, pipe redis.Pipeliner, profile string) func() ([]Membership, string, error) {
	cmd := pipe.HGet(ctx, r.key(profile), profile)
	return func() ([]Membership, string, error) {
		out, into, err := r.decodeMembers(cmd, profile)
		if err == nil && into != "" {
			return r.Members(ctx, into)
		}
		return out, profile, err
	}
}

// maxMergeHops bounds following merged-away profiles to their survivor.
const maxMergeHops = 32

func (r *Reader) key(profile string) string {
	return r.layout.Key(r.layout.Partition(profile), stateSuffix)
}

// decodeMembers returns id's memberships, or the profile id was merged
// into.
func (r *Reader) decodeMembers(cmd *redis.StringCmd, id string) (_ []Membership, mergedInto string, _ error) {
	b, err := cmd.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the segments of %s: %w", id, err)
	}
	s, err := decodeState(b)
	if err != nil {
		return nil, "", fmt.Errorf("segments of %s: %w", id, err)
	}
	if s.MergedInto != "" {
		return nil, s.MergedInto, nil
	}
	out := make([]Membership, 0, len(s.Members))
	for _, name := range sortedKeys(s.Members) {
		out = append(out, Membership{Segment: name, Since: time.UnixMilli(s.Members[name].Since).UTC()})
	}
	return out, "", nil
}

// Sizes returns the number of members of every segment with any, the
// partitions' counters summed.
func (r *Reader) Sizes(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for i := range r.layout.Partitions() {
		m, err := r.rdb.HGetAll(ctx, r.layout.Key(int32(i), sizesSuffix)).Result()
		if err != nil {
			return nil, fmt.Errorf("reading segment sizes of partition %d: %w", i, err)
		}
		for seg, v := range m {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[seg] += n
		}
	}
	return out, nil
}

// Rules are the definitions the reader knows.
func (r *Reader) Rules() *rules.Set { return r.rules }

// StoreProfiles counts the profiles in the feature store (what a backfill
// scans; merged-away profiles included).
func (r *Reader) StoreProfiles(ctx context.Context) (int64, error) {
	if r.store == nil {
		return 0, errors.New("segments: this reader has no feature store")
	}
	l := r.store.Layout()
	var n int64
	for i := range l.Partitions() {
		c, err := r.rdb.HLen(ctx, l.Key(int32(i), "s")).Result()
		if err != nil {
			return 0, fmt.Errorf("counting the feature store's profiles: %w", err)
		}
		n += c
	}
	return n, nil
}
