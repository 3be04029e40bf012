package identity

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestQueuedReadsMatchLookupAndProfile: the pipelined reads answer what
// Lookup followed by Profile answer, for identifiers (normalised), live
// and merged-away profile ids, and unknown or blocked values, all sent in
// one pipeline.
func TestQueuedReadsMatchLookupAndProfile(t *testing.T) {
	f := newFixture(t)
	u := f.one("m1", "user_id=u1", "email=ann@example.com").ProfileID
	a := f.one("m2", "anonymous_id=laptop-anon").ProfileID
	if r := f.one("m3", "user_id=u1", "anonymous_id=laptop-anon"); r.ProfileID != u || len(r.Merges) != 1 {
		t.Fatalf("sign-in: %+v, want a merge into %s", r, u)
	}
	wantIDs := []Identifier{{"anonymous_id", "laptop-anon"}, {"email", "ann@example.com"}, {"user_id", "u1"}}

	type read = func() (string, []Identifier, error)
	pipe := f.rdb.Pipeline()
	byID := map[string]read{u: f.g.QueueProfile(f.ctx, pipe, u), a: f.g.QueueProfile(f.ctx, pipe, a), "nope": f.g.QueueProfile(f.ctx, pipe, "nope")}
	of := map[Identifier]read{}
	for _, id := range []Identifier{{"email", " Ann@Example.com"}, {"anonymous_id", "laptop-anon"}, {TypeProfileID, a + " "},
		{"user_id", "nobody"}, {"user_id", "null"}, {"email", "not-an-email"}} {
		of[id] = f.g.QueueProfileOf(f.ctx, pipe, id)
	}
	if _, err := pipe.Exec(f.ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}

	for id, r := range byID {
		canon, ids, err := r()
		wantCanon, wantIDs2, wantErr := f.g.Profile(f.ctx, id)
		if canon != wantCanon || !reflect.DeepEqual(ids, wantIDs2) || (err == nil) != (wantErr == nil) {
			t.Errorf("QueueProfile(%s) = %s %v %v; Profile says %s %v %v", id, canon, ids, err, wantCanon, wantIDs2, wantErr)
		}
	}
	if canon, ids, err := byID[a](); canon != u || !reflect.DeepEqual(ids, wantIDs) || err != nil {
		t.Errorf("QueueProfile(merged-away %s) = %s %v %v, want %s %v", a, canon, ids, err, u, wantIDs)
	}
	if _, _, err := byID["nope"](); !errors.Is(err, ErrNotFound) {
		t.Errorf("QueueProfile(unknown) error %v, want ErrNotFound", err)
	}
	for id, r := range of {
		canon, ids, err := r()
		p, ok, lerr := f.g.Lookup(f.ctx, id)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if !ok {
			if !errors.Is(err, ErrNotFound) || canon != "" {
				t.Errorf("QueueProfileOf(%v) = %q %v, want ErrNotFound (Lookup finds nothing)", id, canon, err)
			}
			continue
		}
		if canon != p || canon != u || !reflect.DeepEqual(ids, wantIDs) || err != nil {
			t.Errorf("QueueProfileOf(%v) = %s %v %v, want %s %v", id, canon, ids, err, u, wantIDs)
		}
	}
	if len(of) != 6 {
		t.Fatalf("%d identifiers read, want 6", len(of))
	}
}

// TestQueuedReadAfterScriptCacheLoss: a Redis that lost the read script (a
// restart) still answers, through the fallback that loads it again. The
// script is made unknown to Redis by changing its text, rather than by
// flushing the cache other tests share.
func TestQueuedReadAfterScriptCacheLoss(t *testing.T) {
	f := newFixture(t)
	u := f.one("m1", "user_id=u1").ProfileID
	g := *f.g
	g.readS = redis.NewScript(readSrc + "\n-- unloaded " + strconv.FormatInt(time.Now().UnixNano(), 10))
	pipe := f.rdb.Pipeline()
	r := g.QueueProfileOf(f.ctx, pipe, Identifier{"user_id", "u1"})
	_, _ = pipe.Exec(f.ctx)
	canon, ids, err := r()
	if err != nil || canon != u || !reflect.DeepEqual(ids, []Identifier{{"user_id", "u1"}}) {
		t.Fatalf("after losing the script: %q %v %v, want %s [user_id u1]", canon, ids, err, u)
	}
}
