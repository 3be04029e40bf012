package features

import (
	"encoding/binary"
	"fmt"

	"github.com/streamcdp/streamcdp/internal/bytereader"
)

// Records of the internal fold topic (cdp.features.fold), keyed by the
// profile they are for, so that they reach the task that owns it. Three
// kinds carry a merge from the merges topic to the loser's task, the
// loser's state from there to the survivor's task, and events resolved to a
// merged-away profile on to its survivor:
//
//	'f' 1 kind hops | from | into | merge id | time (varint) | blob
//
//	kind 'm'  merge L→S, keyed by L (from L, into S; blob empty)
//	kind 's'  L's state, keyed by S (blob: L's stored state)
//	kind 'e'  an event of L, keyed by S (blob: the resolved record's value,
//	          time: that record's timestamp)
//	kind 't'  customer scores of L, keyed by S (blob: the scores record's
//	          value, time: that record's timestamp)
//
// hops counts forwards along a chain of merges (L→S, then S→T); a record
// forwarded more than maxHops times is dead-lettered as a loop.
type foldKind byte

const (
	foldMerge  foldKind = 'm'
	foldState  foldKind = 's'
	foldEvent  foldKind = 'e'
	foldScores foldKind = 't'
	maxHops             = 32
)

type foldRecord struct {
	kind       foldKind
	hops       uint8
	from, into string
	mergeID    string
	time       int64
	blob       []byte
}

func (f *foldRecord) append(dst []byte) []byte {
	dst = append(dst, 'f', 1, byte(f.kind), f.hops)
	dst = appendStr(dst, f.from)
	dst = appendStr(dst, f.into)
	dst = appendStr(dst, f.mergeID)
	dst = binary.AppendVarint(dst, f.time)
	dst = binary.AppendUvarint(dst, uint64(len(f.blob)))
	return append(dst, f.blob...)
}

func parseFold(b []byte) (foldRecord, error) {
	r := bytereader.New(b, errCorrupt)
	if r.Byte() != 'f' || r.Byte() != 1 {
		return foldRecord{}, fmt.Errorf("not a fold record of format 1")
	}
	f := foldRecord{kind: foldKind(r.Byte()), hops: r.Byte()}
	f.from, f.into, f.mergeID = r.Str(), r.Str(), r.Str()
	f.time = r.Varint()
	f.blob = r.Bytes(r.Count())
	if r.Err == nil && len(r.B) != 0 {
		r.Fail()
	}
	if r.Err != nil {
		return foldRecord{}, fmt.Errorf("fold record: %w", r.Err)
	}
	switch f.kind {
	case foldMerge, foldState, foldEvent, foldScores:
	default:
		return foldRecord{}, fmt.Errorf("fold record of unknown kind %q", f.kind)
	}
	return f, nil
}
