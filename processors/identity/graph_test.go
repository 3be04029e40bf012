package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/internal/journal"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

func TestAnonymousBrowsingThenSignInMerges(t *testing.T) {
	f := newFixture(t)
	// Signed in on a phone first: the user's profile is the older one.
	u := f.one("m1", "user_id=u1", "anonymous_id=phone-anon").ProfileID
	// Browses anonymously on a laptop: a profile of its own.
	a := f.one("m2", "anonymous_id=laptop-anon", "device_id=laptop").ProfileID
	if u == "" || a == "" || u == a {
		t.Fatalf("profiles %q and %q: want two different ones", u, a)
	}
	if got := f.one("m3", "anonymous_id=laptop-anon").ProfileID; got != a {
		t.Fatalf("second anonymous event went to %s, want %s", got, a)
	}
	// Signs in on the laptop.
	r := f.one("m4", "user_id=u1", "anonymous_id=laptop-anon")
	if r.ProfileID != u {
		t.Fatalf("sign-in went to %s, want the user's profile %s", r.ProfileID, u)
	}
	if len(r.Merges) != 1 {
		t.Fatalf("merges %+v, want one", r.Merges)
	}
	m := r.Merges[0]
	want := Merge{ID: m.ID, From: a, Into: u, TriggerMessageID: "m4", Rule: "linked_by:anonymous_id", Time: f.t0.Add(3 * time.Second),
		Moved: []Identifier{{"anonymous_id", "laptop-anon"}, {"device_id", "laptop"}}}
	if !reflect.DeepEqual(m, want) || m.ID == "" {
		t.Fatalf("merge %+v\nwant %+v", m, want)
	}
	for _, id := range []Identifier{{"anonymous_id", "laptop-anon"}, {"device_id", "laptop"}, {"user_id", "u1"}, {TypeProfileID, a}, {TypeProfileID, u}} {
		if got := f.lookup(f.g, id.Type, id.Value); got != u {
			t.Errorf("Lookup(%v) = %q, want %q", id, got, u)
		}
	}
	canon, ids, err := f.g.Profile(f.ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []Identifier{{"anonymous_id", "laptop-anon"}, {"anonymous_id", "phone-anon"}, {"device_id", "laptop"}, {"user_id", "u1"}}
	if canon != u || !reflect.DeepEqual(ids, wantIDs) {
		t.Fatalf("Profile(%s) = %s %v, want %s %v", a, canon, ids, u, wantIDs)
	}
	st, err := f.g.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Identifiers != 4 || st.Profiles != 1 || st.Created != 2 || st.Entries != 6 {
		t.Fatalf("stats %+v: want 4 identifiers, 1 profile of 2 created, 6 entries", st)
	}
}

func TestTwoDevicesOfOneUserJoinOneProfile(t *testing.T) {
	f := newFixture(t)
	p1 := f.one("m1", "device_id=d1", "anonymous_id=a1", "email=Ann@Example.com").ProfileID
	p2 := f.one("m2", "device_id=d2", "anonymous_id=a2").ProfileID
	if p1 == p2 {
		t.Fatalf("two unlinked devices share profile %s", p1)
	}
	r := f.one("m3", "anonymous_id=a2", "email= ann@example.COM")
	if r.ProfileID != p1 || len(r.Merges) != 1 || r.Merges[0].From != p2 || r.Merges[0].Rule != "linked_by:anonymous_id" {
		t.Fatalf("result %+v: want profile %s absorbing %s", r, p1, p2)
	}
	for _, id := range []string{"d1", "d2"} {
		if got := f.lookup(f.g, "device_id", id); got != p1 {
			t.Errorf("device %s in %s, want %s", id, got, p1)
		}
	}
}

func TestOlderProfileWins(t *testing.T) {
	f := newFixture(t)
	older := f.one("m1", "anonymous_id=a1").ProfileID
	younger := f.one("m2", "user_id=u1").ProfileID
	// The user's profile has the higher-priority identifier, but the
	// anonymous one is older and survives.
	r := f.one("m3", "user_id=u1", "anonymous_id=a1")
	if r.ProfileID != older || len(r.Merges) != 1 || r.Merges[0].From != younger || r.Merges[0].Into != older ||
		r.Merges[0].Rule != "linked_by:user_id" || !reflect.DeepEqual(r.Merges[0].Moved, []Identifier{{"user_id", "u1"}}) {
		t.Fatalf("result %+v: want %s merged into the older %s", r, younger, older)
	}
	if got := f.lookup(f.g, TypeProfileID, younger); got != older {
		t.Fatalf("alias %s resolves to %q, want %s", younger, got, older)
	}
	// Later merges into the survivor keep every alias resolving.
	third := f.one("m4", "email=e@x.io").ProfileID
	r = f.one("m5", "email=e@x.io", "anonymous_id=a1")
	if r.ProfileID != older || len(r.Merges) != 1 || r.Merges[0].From != third {
		t.Fatalf("result %+v: want %s absorbed into %s", r, third, older)
	}
	fourth := f.one("m6", "anonymous_id=a9").ProfileID
	if r = f.one("m7", "anonymous_id=a9", "user_id=u1"); r.ProfileID != older || r.Merges[0].From != fourth {
		t.Fatalf("result %+v: want %s absorbed into %s", r, fourth, older)
	}
	for _, p := range []string{younger, third, fourth, older} {
		canon, ids, err := f.g.Profile(f.ctx, p)
		if err != nil || canon != older || len(ids) != 4 {
			t.Fatalf("Profile(%s) = %q %v, %v; want %s with 4 identifiers", p, canon, ids, err, older)
		}
	}
}

func TestMergeProtection(t *testing.T) {
	f := newFixture(t)
	p1 := f.one("m1", "user_id=u1", "email=one@x.io").ProfileID
	p2 := f.one("m2", "user_id=u2", "anonymous_id=a2").ProfileID

	// A shared browser: u1 signs in on u2's anonymous id. Merging would give
	// one profile two user_ids: the event goes to u1's profile, a2 stays.
	r := f.one("m3", "anonymous_id=a2", "user_id=u1")
	if r.ProfileID != p1 || len(r.Merges) != 0 {
		t.Fatalf("result %+v: want profile %s and no merge", r, p1)
	}
	if len(r.Rejected) != 1 || r.Rejected[0].Rule != RuleMergeProtection || r.Rejected[0].Identifier != (Identifier{"anonymous_id", "a2"}) ||
		!strings.Contains(r.Rejected[0].Reason, p2) || !strings.Contains(r.Rejected[0].Reason, "2 user_id") {
		t.Fatalf("rejected %+v: want a2 refused by merge protection naming %s", r.Rejected, p2)
	}
	if got := f.lookup(f.g, "anonymous_id", "a2"); got != p2 {
		t.Fatalf("a2 moved to %s, want it to stay in %s", got, p2)
	}

	// Two user ids in one event, both known: never merged.
	r = f.one("m4", "user_id=u2", "user_id=u1", "email=one@x.io")
	if r.ProfileID != p2 || len(r.Merges) != 0 || len(r.Rejected) != 2 {
		t.Fatalf("result %+v: want profile %s, two rejections", r, p2)
	}

	// A new user id on a browser that belongs to u1: a new profile for u3,
	// the browser stays with u1.
	f.one("m5", "user_id=u1", "anonymous_id=a1")
	r = f.one("m6", "anonymous_id=a1", "user_id=u3")
	if r.ProfileID == p1 || r.ProfileID == p2 || len(r.Rejected) != 1 || r.Rejected[0].Identifier.Value != "a1" {
		t.Fatalf("result %+v: want a new profile for u3 and a1 refused", r)
	}
	if got := f.lookup(f.g, "user_id", "u3"); got != r.ProfileID {
		t.Fatalf("u3 in %s, want %s", got, r.ProfileID)
	}
	if got := f.lookup(f.g, "anonymous_id", "a1"); got != p1 {
		t.Fatalf("a1 in %s, want %s", got, p1)
	}

	// A sixth email is refused; the first five are kept.
	for i := 2; i <= 6; i++ {
		r = f.one("e"+string(rune('0'+i)), "user_id=u1", "email=mail"+string(rune('0'+i))+"@x.io")
	}
	if r.ProfileID != p1 || len(r.Rejected) != 1 || r.Rejected[0].Rule != RuleLimit || r.Rejected[0].Identifier.Value != "mail6@x.io" {
		t.Fatalf("sixth email: %+v: want a limit rejection", r)
	}
	_, ids, err := f.g.Profile(f.ctx, p1)
	if err != nil {
		t.Fatal(err)
	}
	var users, emails int
	for _, id := range ids {
		switch id.Type {
		case TypeUserID:
			users++
		case TypeEmail:
			emails++
		}
	}
	if users != 1 || emails != 5 {
		t.Fatalf("profile %s holds %d user ids and %d emails: %v", p1, users, emails, ids)
	}
}

func TestMergeProtectionByPriority(t *testing.T) {
	f := newFixture(t)
	// Two profiles whose emails together exceed a limit of 2.
	rules := DefaultRules()
	rules.Limits[TypeEmail] = 2
	g := f.graph("p:", WithRules(rules))
	pa := f.resolve(g, f.ev("m1", "anonymous_id=a", "email=1@x.io", "email=2@x.io"))[0].ProfileID
	pb := f.resolve(g, f.ev("m2", "device_id=d", "email=3@x.io"))[0].ProfileID
	// device_id outranks anonymous_id: the event goes to d's profile, a is
	// not linked.
	r := f.resolve(g, f.ev("m3", "anonymous_id=a", "device_id=d"))[0]
	if r.ProfileID != pb || len(r.Merges) != 0 || len(r.Rejected) != 1 || r.Rejected[0].Identifier.Value != "a" {
		t.Fatalf("result %+v: want %s, a rejected (not %s)", r, pb, pa)
	}
}

func TestDuplicates(t *testing.T) {
	f := newFixture(t)
	first := f.one("dup", "user_id=u1")
	before := dump(t, f.rdb, f.prefix+"{default}:b")
	r := f.one("dup", "user_id=u1", "email=new@x.io")
	if !r.Duplicate || r.ProfileID != "" || len(r.Merges) != 0 {
		t.Fatalf("second message: %+v, want a duplicate", r)
	}
	if after := dump(t, f.rdb, f.prefix+"{default}:b"); !reflect.DeepEqual(before, after) {
		t.Fatalf("a duplicate changed the graph:\n%v\n%v", before, after)
	}
	if got := f.lookup(f.g, "email", "new@x.io"); got != "" {
		t.Fatalf("the duplicate's email was linked to %s", got)
	}
	// Within one batch.
	in1, in2 := f.ev("twice", "anonymous_id=x"), f.ev("twice", "anonymous_id=x")
	res := f.resolve(f.g, in1, in2)
	if res[0].Duplicate || !res[1].Duplicate {
		t.Fatalf("same batch: %+v", res)
	}
	// Event time decides the window (24 h): a copy 23 h later, in the next
	// day's bucket, is a duplicate; 25 h later the id is new again; a copy
	// with an earlier time in the same bucket is a duplicate.
	at := func(msg string, d time.Duration) Result {
		in := f.ev(msg, "user_id=u1")
		in.Time = f.t0.Add(d)
		return f.resolve(f.g, in)[0]
	}
	for _, c := range []struct {
		msg       string
		first, at time.Duration
		dup       bool
	}{
		{"w1", 0, 23 * time.Hour, true},
		{"w2", 0, 25 * time.Hour, false},
		{"w3", time.Hour, 0, true},
		{"w4", 0, 0, true},
	} {
		if r := at(c.msg, c.first); r.Duplicate || r.ProfileID != first.ProfileID {
			t.Fatalf("%s first: %+v", c.msg, r)
		}
		if r := at(c.msg, c.at); r.Duplicate != c.dup {
			t.Fatalf("%s at %v after %v: duplicate %v, want %v", c.msg, c.at, c.first, r.Duplicate, c.dup)
		}
	}
	// A mark written before marks kept the writer's position ("seconds"
	// rather than "seconds:position") still counts, window included.
	for _, c := range []struct {
		msg string
		at  time.Duration
		dup bool
	}{{"old1", 23 * time.Hour, true}, {"old2", 25 * time.Hour, false}} {
		if r := at(c.msg, 0); r.Duplicate {
			t.Fatalf("%s first: %+v", c.msg, r)
		}
		sum := sha256.Sum256([]byte(DefaultSpace + "\x00m:" + c.msg))
		md := string(sum[:12])
		keys, err := testkit.Keys(f.ctx, f.rdb, f.prefix+"{default}:h*")
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, k := range keys {
			v, err := f.rdb.HGet(f.ctx, k, md).Result()
			if err != nil {
				continue
			}
			old, _, ok := strings.Cut(v, ":")
			if !ok {
				t.Fatalf("%s: mark %q, want seconds:position", c.msg, v)
			}
			f.rdb.HSet(f.ctx, k, md, old)
			found++
		}
		if found != 1 {
			t.Fatalf("%s: found %d marks, want 1", c.msg, found)
		}
		if r := at(c.msg, c.at); r.Duplicate != c.dup {
			t.Fatalf("%s %v after an old-format mark: duplicate %v, want %v", c.msg, c.at, r.Duplicate, c.dup)
		}
	}
}

// TestDedupReadsTheFixedLayoutOfBefore: ids marked by the fixed dedup
// layout of stops 17-19 (d<N>:<h mod DedupShards>, with the bucket's bitmap
// e<N>) are still found after the upgrade, in an event's own bucket and in
// the one before, for as long as the bucket's bitmap lives; with
// DedupShards 0 (never ran it) they are not read.
func TestDedupReadsTheFixedLayoutOfBefore(t *testing.T) {
	for _, c := range []struct {
		name   string
		shards int
		bitmap bool
		mark   time.Duration // the legacy mark's time, from the copy's bucket start
		dup    bool
	}{
		{"own bucket", 256, true, time.Hour, true},
		{"previous bucket, within the window", 256, true, -time.Hour, true},
		{"previous bucket, over a window before", 256, true, -23 * time.Hour, false},
		{"16,384 shards", 16384, true, time.Hour, true},
		{"bitmap expired", 256, false, time.Hour, false},
		{"no legacy layout", 0, true, time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rules := DefaultRules()
			rules.DedupShards = c.shards
			f := newFixture(t, WithRules(rules))
			win := f.g.window
			start := f.t0.Unix() / win * win // the copy's bucket
			markAt := start + int64(c.mark/time.Second)
			idx := markAt / win
			if markAt < 0 {
				t.Fatal("negative time")
			}
			sum := sha256.Sum256([]byte(DefaultSpace + "\x00m:legacy"))
			md := string(sum[:12])
			h := int(sum[0])<<16 | int(sum[1])<<8 | int(sum[2])
			pre := f.prefix + "{default}:"
			key := fmt.Sprintf("%sd%d:%d", pre, idx, h%max(c.shards, 256))
			val := fmt.Sprintf("%d:1", markAt-idx*win)
			if err := f.rdb.HSet(f.ctx, key, md, val, "~", strings.Repeat("x", 70)).Err(); err != nil {
				t.Fatal(err)
			}
			if c.bitmap {
				if err := f.rdb.SetBit(f.ctx, fmt.Sprintf("%se%d", pre, idx), int64(h%max(c.shards, 256)), 1).Err(); err != nil {
					t.Fatal(err)
				}
			}
			in := f.ev("legacy", "user_id=u1")
			in.Time = time.Unix(start+2*3600, 0)
			if r := f.resolve(f.g, in)[0]; r.Duplicate != c.dup {
				t.Fatalf("a copy 2h into the bucket of a legacy mark at %v: duplicate %v, want %v", c.mark, r.Duplicate, c.dup)
			}
			// New marks go to the new layout only.
			if n := f.rdb.HLen(f.ctx, key).Val(); n != 2 {
				t.Errorf("the legacy key holds %d fields, want its 2", n)
			}
		})
	}
}

func TestUnusableEvents(t *testing.T) {
	f := newFixture(t)
	r := f.one("m1", "user_id=null", "email=nope", "passport=1")
	if r.ProfileID != "" || r.Duplicate || len(r.Rejected) != 3 {
		t.Fatalf("result %+v: want no profile and three rejections", r)
	}
	if r.DeadLetter == nil || r.DeadLetter.Code != CodeNoIdentifier {
		t.Fatalf("result %+v: want a dead letter %s", r, CodeNoIdentifier)
	}
	r = f.one("m2")
	if r.ProfileID != "" || len(r.Rejected) != 0 || r.DeadLetter == nil || !strings.Contains(r.DeadLetter.Reason, "has no identifier") {
		t.Fatalf("no identifiers: %+v", r)
	}
	if p, ok, err := f.g.Lookup(f.ctx, Identifier{"user_id", "nobody"}); ok || err != nil || p != "" {
		t.Fatalf("Lookup of an unknown identifier: %q %v %v", p, ok, err)
	}
	if p, ok, err := f.g.Lookup(f.ctx, Identifier{"user_id", "null"}); ok || err != nil || p != "" {
		t.Fatalf("Lookup of a blocked identifier: %q %v %v", p, ok, err)
	}
	if _, _, err := f.g.Profile(f.ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Profile of an unknown id: %v, want ErrNotFound", err)
	}
}

// replayBatch is a batch with merges, rejections and duplicates.
func replayBatch(f *fixture) []Input {
	return []Input{
		f.ev("r1", "user_id=u1", "anonymous_id=a1"),
		f.ev("r2", "anonymous_id=a2", "device_id=d2"),
		f.ev("r3", "anonymous_id=a2", "user_id=u1", "email=x@y.io"),
		f.ev("r4", "user_id=u2", "email=x@y.io"),
		f.ev("r1", "user_id=u1"),
		f.ev("r5", "phone=+44 7700 900123", "anonymous_id=a3"),
		f.ev("r6", "phone=+447700900123", "device_id=d2"),
	}
}

// jstep is a minimal runtime for journaled Resolve calls: one partition,
// steps chained as the processing runtime chains them.
type jstep struct {
	j            *journal.Redis
	tp           processing.TopicPartition
	epoch, seq   int64
	committedSeq int64
}

func (f *fixture) journalFor(g *Graph) *jstep { return f.journalOf(g, 0) }

func (f *fixture) journalOf(g *Graph, partition int32) *jstep {
	f.t.Helper()
	j := journal.New(f.rdb, g.prefix, "identity", journal.WithTag(func(processing.TopicPartition) string { return g.space }))
	tp := processing.TopicPartition{Topic: "raw", Partition: partition}
	st, err := j.Open(f.ctx, tp, 0)
	if err != nil {
		f.t.Fatalf("journal Open: %v", err)
	}
	return &jstep{j: j, tp: tp, epoch: st.Epoch, seq: st.Seq}
}

func (s *jstep) step(first, last int64) ([]string, []any) {
	st := &processing.Step{Kind: processing.StepRecords, Seq: s.seq + 1, PrevSeq: s.seq, Epoch: s.epoch,
		First: first, Last: last, CommittedSeq: s.committedSeq}
	s.seq++
	return s.j.Keys(s.tp), journal.StepArgs(st)
}

func TestJournaledResolveKeepsReceiptsThatRebuildResults(t *testing.T) {
	f := newFixture(t, WithChunkSize(3))
	batch := replayBatch(f)
	js := f.journalFor(f.g)
	first, err := f.g.ResolveJournaled(f.ctx, batch, js.step)
	if err != nil {
		t.Fatal(err)
	}
	if len(first[2].Merges) != 1 || len(first[3].Rejected) != 1 || !first[4].Duplicate || len(first[6].Merges) != 1 {
		t.Fatalf("the batch does not exercise merges, rejections and duplicates: %+v", first)
	}
	// Reopen the journal as the runtime would after a crash: the entries
	// are pending, and their receipts rebuild exactly the first results.
	st, err := js.j.Open(f.ctx, js.tp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pending) != 3 || st.Seq != 3 || st.Applied != batch[len(batch)-1].Offset {
		t.Fatalf("journal after 7 events in chunks of 3: %d pending, seq %d, applied %d", len(st.Pending), st.Seq, st.Applied)
	}
	for i, in := range batch {
		e := st.Pending[i/3]
		got, err := f.g.Decode(string(e.Receipts[in.Offset]), in.MessageID, in.Time)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, first[i]) {
			t.Fatalf("event %d rebuilt from its receipt: %+v, first result %+v", i, got, first[i])
		}
	}

	// The journal refuses to apply again what it has, and a writer whose
	// epoch is old, without changing anything.
	before := dump(t, f.rdb, f.prefix)
	stale := &jstep{j: js.j, tp: js.tp, epoch: js.epoch, seq: st.Seq}
	if _, err := f.g.ResolveJournaled(f.ctx, batch[6:], stale.step); !errors.Is(err, processing.ErrFenced) {
		t.Fatalf("a write with the epoch before the last Open: %v, want ErrFenced", err)
	}
	again := &jstep{j: js.j, tp: js.tp, epoch: st.Epoch, seq: st.Seq}
	if _, err := f.g.ResolveJournaled(f.ctx, batch[6:], again.step); !errors.Is(err, processing.ErrDiverged) {
		t.Fatalf("applying an applied offset again: %v, want ErrDiverged", err)
	}
	lost := &jstep{j: js.j, tp: js.tp, epoch: st.Epoch, seq: st.Seq - 1}
	if _, err := f.g.ResolveJournaled(f.ctx, []Input{f.ev("new", "user_id=u7")}, lost.step); !errors.Is(err, processing.ErrDiverged) {
		t.Fatalf("a writer that missed a step: %v, want ErrDiverged", err)
	}
	if after := dump(t, f.rdb, f.prefix); !reflect.DeepEqual(before, after) {
		t.Fatalf("refused writes changed Redis:\nbefore %v\nafter  %v", before, after)
	}
}

func TestDeadLetterDecisionsAreJournaledAndLeaveNoDedupMark(t *testing.T) {
	blocking := DefaultRules()
	blocking.Blocked = []string{"test@example.com"}
	f := newFixture(t, WithRules(blocking))
	js := f.journalFor(f.g)
	decided := DeadLetterReceipt(dlq.Failure{Code: "unknown_schema", Stage: "decode", Reason: "schema id 99 is not registered"})
	batch := []Input{
		{Offset: 0, Decided: decided},
		f.ev("m-blocked", "email=test@example.com"),
		f.ev("m-ok", "user_id=u1"),
	}
	batch[1].Offset, batch[2].Offset = 1, 2
	res, err := f.g.ResolveJournaled(f.ctx, batch, js.step)
	if err != nil {
		t.Fatal(err)
	}
	if d := res[0].DeadLetter; d == nil || d.Code != "unknown_schema" || d.Stage != "decode" {
		t.Errorf("decided event: %+v", res[0])
	}
	if d := res[1].DeadLetter; d == nil || d.Code != CodeNoIdentifier || !strings.Contains(d.Reason, "blocked") {
		t.Errorf("event without a usable identifier: %+v", res[1])
	}
	if res[2].ProfileID == "" {
		t.Errorf("good event not resolved: %+v", res[2])
	}
	marks := int64(0)
	for k := range dump(t, f.rdb, f.prefix) {
		if strings.HasPrefix(k, "{default}:h") {
			marks += dedupMarks(t, f.ctx, f.rdb, f.prefix+k)
		}
	}
	if marks != 1 {
		t.Errorf("the dedup keys hold %d marks, want 1 (only the resolved event's)", marks)
	}
	st, err := js.j.Open(f.ctx, js.tp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(st.Pending[0].Receipts[0]); got != decided {
		t.Errorf("journaled receipt of the decided event: %q, want %q", got, decided)
	}
	// The same message resolves once its identifier is allowed (a replay
	// from the dead-letter topic after the rule changed).
	open := f.graph("", WithRules(DefaultRules()))
	again := f.resolve(open, Input{MessageID: "m-blocked", Identifiers: []Identifier{{"email", "test@example.com"}}, Time: batch[1].Time, Offset: 3})
	if again[0].Duplicate || again[0].ProfileID == "" {
		t.Errorf("the dead-lettered message replayed after the fix: %+v, want resolved", again[0])
	}
}

func TestResolveRejectsDecreasingOffsets(t *testing.T) {
	f := newFixture(t)
	a, b := f.ev("a", "user_id=1"), f.ev("b", "user_id=2")
	if _, err := f.g.Resolve(f.ctx, []Input{b, a}); err == nil {
		t.Fatal("Resolve accepted decreasing offsets")
	}
}

func TestProfileIDsAreDeterministic(t *testing.T) {
	f := newFixture(t)
	batch := replayBatch(f)
	a := f.resolve(f.g, batch...)
	b := f.resolve(f.graph("again:"), batch...)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same events, different results:\n%+v\n%+v", a, b)
	}
	other := f.resolve(f.graph("other:", WithSpace("eu")), batch...)
	if other[0].ProfileID == a[0].ProfileID {
		t.Fatalf("two spaces gave the same profile id %s", a[0].ProfileID)
	}
}

// A merge larger than one Redis command may carry (Lua unpacks at most
// about 8000 values) is split into several commands. (With the default
// cap on identifiers per profile such a merge cannot happen.)
func TestLargeMerge(t *testing.T) {
	uncapped := DefaultRules()
	uncapped.MaxIdentifiers = 0
	f := newFixture(t, WithRules(uncapped))
	older := f.one("m0", "user_id=u1").ProfileID
	var batch []Input
	for i := range 2500 {
		batch = append(batch, f.ev(fmt.Sprint("a", i), "device_id=bot", fmt.Sprintf("anonymous_id=anon-%d", i)))
	}
	res := f.resolve(f.g, batch...)
	bot := res[0].ProfileID
	r := f.one("m1", "user_id=u1", "device_id=bot")
	if r.ProfileID != older || len(r.Merges) != 1 || r.Merges[0].From != bot || len(r.Merges[0].Moved) != 2501 {
		t.Fatalf("merge of a profile of 2501 identifiers: profile %s, %d merges", r.ProfileID, len(r.Merges))
	}
	for _, i := range []int{0, 1999, 2000, 2499} {
		if got := f.lookup(f.g, "anonymous_id", fmt.Sprintf("anon-%d", i)); got != older {
			t.Fatalf("anon-%d in %q, want %s", i, got, older)
		}
	}
	_, ids, err := f.g.Profile(f.ctx, bot)
	if err != nil || len(ids) != 2502 {
		t.Fatalf("Profile: %d identifiers, %v; want 2502", len(ids), err)
	}
}
