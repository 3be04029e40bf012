package segments

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/streamcdp/streamcdp/schemas"
)

// State is what the segments processor keeps per profile: the values its
// conditions read, as the profile's changes said them (a mirror kept in
// version order), and its memberships.
type State struct {
	// FVersion is the version of the last profile change applied; Clock
	// its time.
	FVersion int64
	Clock    int64
	// MVersion counts the membership changes emitted for the profile.
	MVersion int64
	// Defs is the fingerprint of the definitions the profile was last
	// evaluated with; a profile evaluated with other definitions is
	// evaluated again from the feature store first.
	Defs uint32
	// Values and Traits are the features and traits the conditions read.
	Values map[string]schemas.FeatureValue
	Traits map[string]string
	// Members are the segments the profile is in.
	Members map[string]Member
	// Held are changes that came before the one that precedes them (a
	// merge's change and an event's change may swap on the topic), by
	// version.
	Held []schemas.ProfileChange
	// MergedInto marks a profile merged away.
	MergedInto string
}

// Member is one membership: since when, and the definition it was
// decided with.
type Member struct {
	Since int64
	Def   uint32
}

// newState is an empty state.
func newState() *State {
	return &State{Values: map[string]schemas.FeatureValue{}, Traits: map[string]string{}, Members: map[string]Member{}}
}

// clone returns a copy that shares nothing mutable with s.
func (s *State) clone() *State {
	out := *s
	out.Values = make(map[string]schemas.FeatureValue, len(s.Values))
	for k, v := range s.Values {
		out.Values[k] = v
	}
	out.Traits = make(map[string]string, len(s.Traits))
	for k, v := range s.Traits {
		out.Traits[k] = v
	}
	out.Members = make(map[string]Member, len(s.Members))
	for k, v := range s.Members {
		out.Members[k] = v
	}
	out.Held = append([]schemas.ProfileChange(nil), s.Held...)
	return &out
}

func (s *State) hold(c schemas.ProfileChange) {
	i := sort.Search(len(s.Held), func(i int) bool { return s.Held[i].Version >= c.Version })
	if i < len(s.Held) && s.Held[i].Version == c.Version {
		return
	}
	s.Held = append(s.Held, schemas.ProfileChange{})
	copy(s.Held[i+1:], s.Held[i:])
	s.Held[i] = c
}

// The stored form: 'G' 1, flags (bit 0: merged away: the survivor follows),
// then varints and length-prefixed strings; maps sorted by key.
const (
	magic0, magic1 = 'G', 1
	flagMerged     = 1
)

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// encode appends the stored form of s.
func (s *State) encode(b []byte) []byte {
	b = append(b, magic0, magic1)
	if s.MergedInto != "" {
		b = append(b, flagMerged)
		b = appendStr(b, s.MergedInto)
		b = binary.AppendVarint(b, s.MVersion)
		return b
	}
	b = append(b, 0)
	b = binary.AppendVarint(b, s.FVersion)
	b = binary.AppendVarint(b, s.Clock)
	b = binary.AppendVarint(b, s.MVersion)
	b = binary.LittleEndian.AppendUint32(b, s.Defs)
	b = binary.AppendUvarint(b, uint64(len(s.Values)))
	for _, k := range sortedKeys(s.Values) {
		v := s.Values[k]
		b = appendStr(b, k)
		b = append(b, byte(v.Kind))
		switch v.Kind {
		case schemas.FeatureNumber:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Num))
		case schemas.FeatureString:
			b = appendStr(b, v.Str)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s.Traits)))
	for _, k := range sortedKeys(s.Traits) {
		b = appendStr(b, k)
		b = appendStr(b, s.Traits[k])
	}
	b = binary.AppendUvarint(b, uint64(len(s.Members)))
	for _, k := range sortedKeys(s.Members) {
		m := s.Members[k]
		b = appendStr(b, k)
		b = binary.AppendVarint(b, m.Since)
		b = binary.LittleEndian.AppendUint32(b, m.Def)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Held)))
	for i := range s.Held {
		enc := schemas.AppendProfileChange(nil, &s.Held[i])
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

var errCorrupt = errors.New("corrupt segments state")

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errCorrupt
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.fail()
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) str() string { return string(r.bytes(r.count())) }

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// decodeState parses the stored form.
func decodeState(b []byte) (*State, error) {
	r := &reader{b: b}
	if r.byte() != magic0 || r.byte() != magic1 {
		return nil, fmt.Errorf("%w: not a segments state of format %d", errCorrupt, magic1)
	}
	s := &State{}
	if r.byte()&flagMerged != 0 {
		s.MergedInto = r.str()
		s.MVersion = r.varint()
		if r.err == nil && (s.MergedInto == "" || len(r.b) > 0) {
			r.fail()
		}
		return s, r.err
	}
	s.FVersion, s.Clock, s.MVersion = r.varint(), r.varint(), r.varint()
	s.Defs = r.u32()
	n := r.count()
	s.Values = make(map[string]schemas.FeatureValue, n)
	for range n {
		k := r.str()
		v := schemas.FeatureValue{Kind: schemas.FeatureValueKind(r.byte())}
		switch v.Kind {
		case schemas.FeatureNull:
		case schemas.FeatureNumber:
			if b := r.bytes(8); b != nil {
				v.Num = math.Float64frombits(binary.LittleEndian.Uint64(b))
			}
		case schemas.FeatureString:
			v.Str = r.str()
		default:
			r.fail()
		}
		s.Values[k] = v
	}
	n = r.count()
	s.Traits = make(map[string]string, n)
	for range n {
		k := r.str()
		s.Traits[k] = r.str()
	}
	n = r.count()
	s.Members = make(map[string]Member, n)
	for range n {
		k := r.str()
		s.Members[k] = Member{Since: r.varint(), Def: r.u32()}
	}
	n = r.count()
	for range n {
		c, err := schemas.DecodeProfileChange(r.bytes(r.count()))
		if err != nil {
			r.fail()
			break
		}
		s.Held = append(s.Held, c)
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, r.err
	}
	return s, nil
}
