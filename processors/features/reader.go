package features

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/internal/keyspace"
	"github.com/streamcdp/streamcdp/processors/features/definition"
)

// Reader reads profiles' features and traits from the feature store, for
// the segments processor and the profile API. Sliding windows are
// evaluated at the read time, so "orders_30d" falls as days pass without a
// new event. It is safe for concurrent use.
type Reader struct {
	rdb    redis.UniversalClient
	engine *Engine
	layout *keyspace.Layout
}

// NewReader reads the store the processor with cfg and set writes.
func NewReader(rdb redis.UniversalClient, cfg Config, set *definition.Set) *Reader {
	return &Reader{rdb: rdb, engine: NewEngine(set), layout: keyspace.New("features", cfg.Prefix, cfg.Partitions)}
}

// Reader returns a Reader of the processor's store.
func (p *Processor) Reader() *Reader { return &Reader{rdb: p.rdb, engine: p.engine, layout: p.layout} }

// Profile is a profile's features and traits at a read time.
type Profile struct {
	// ID is the profile read; it differs from the id asked for when that
	// one was merged into it.
	ID string
	// Version counts the changes emitted for the profile.
	Version int64
	// LatestEvent is the latest event time applied.
	LatestEvent time.Time
	At          time.Time
	// Features by name: float64, string or nil (no value).
	Features map[string]any
	// Traits by name, JSON texts.
	Traits map[string]json.RawMessage
	// NextChange is when a windowed feature next changes without a new
	// event (zero: none will).
	NextChange time.Time
}

// ErrNotFound is returned for a profile the store has never seen.
var ErrNotFound = errors.New("profile not found in the feature store")

// maxAliasHops bounds following merged-away profiles to their survivor.
const maxAliasHops = 32

// State returns the stored state of profile, following merges to the
// surviving profile, and that profile's id.
func (r *Reader) State(ctx context.Context, profile string) (*State, string, error) {
	id := profile
	for range maxAliasHops {
		st, err := r.Own(ctx, id)
		if err != nil {
			return nil, id, err
		}
		if st.MergedInto == "" {
			return st, id, nil
		}
		id = st.MergedInto
	}
	return nil, id, fmt.Errorf("profile %s: more than %d merges to follow", profile, maxAliasHops)
}

// Own returns profile's own stored state, without following a merge (a
// merged-away profile's state names its survivor in MergedInto).
func (r *Reader) Own(ctx context.Context, profile string) (*State, error) {
	return r.decodeOwn(r.rdb.HGet(ctx, r.key(profile), profile), profile)
}

func (r *Reader) key(profile string) string { return r.layout.Key(r.layout.Partition(profile), "s") }

func (r *Reader) decodeOwn(cmd *redis.StringCmd, profile string) (*State, error) {
	b, err := cmd.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", profile, err)
	}
	st, err := r.engine.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", profile, err)
	}
	return st, nil
}

// QueueProfile queues the read of Profile(profile, at) on pipe, so that a
// reader can send it in one round trip with other reads (the profile API
// does), and returns the function that gives its result once pipe has run.
// A profile the store knows as merged away is followed to its survivor
// with further reads.
func (r *Reader) QueueProfile(ctx context.Context, pipe redis.Pipeliner, profile string, at time.Time) func() (*Profile, error) {
	cmd := pipe.HGet(ctx, r.key(profile), profile)
	return func() (*Profile, error) {
		st, err := r.decodeOwn(cmd, profile)
		if err != nil {
			return nil, err
		}
		if st.MergedInto != "" {
			return r.Profile(ctx, st.MergedInto, at)
		}
		return r.View(profile, st, at), nil
	}
}

// Layout is where the store keeps profiles.
func (r *Reader) Layout() *keyspace.Layout { return r.layout }

// Profile returns profile's features and traits at read time at.
func (r *Reader) Profile(ctx context.Context, profile string, at time.Time) (*Profile, error) {
	st, id, err := r.State(ctx, profile)
	if err != nil {
		return nil, err
	}
	return r.View(id, st, at), nil
}

// View evaluates a state at read time at.
func (r *Reader) View(id string, st *State, at time.Time) *Profile {
	ms := at.UnixMilli()
	out := &Profile{ID: id, Version: st.Version, At: at, Features: map[string]any{}, Traits: map[string]json.RawMessage{}}
	if st.Clock != 0 {
		out.LatestEvent = time.UnixMilli(st.Clock).UTC()
	}
	for i, v := range r.engine.Values(st, ms) {
		out.Features[r.engine.set.Features[i].Name] = v.Any()
	}
	for k, tr := range st.Traits {
		if tr.Value != "" {
			out.Traits[k] = json.RawMessage(tr.Value)
		}
	}
	if next := r.engine.NextChange(st, ms); next != 0 {
		out.NextChange = time.UnixMilli(next).UTC()
	}
	return out
}

// Engine is the reader's feature engine (its Set names the features).
func (r *Reader) Engine() *Engine { return r.engine }
