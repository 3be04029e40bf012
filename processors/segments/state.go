package segments

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/streamcdp/streamcdp/internal/bytereader"
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

// decodeState parses the stored form.
func decodeState(b []byte) (*State, error) {
	r := bytereader.New(b, errCorrupt)
	if r.Byte() != magic0 || r.Byte() != magic1 {
		return nil, fmt.Errorf("%w: not a segments state of format %d", errCorrupt, magic1)
	}
	s := &State{}
	if r.Byte()&flagMerged != 0 {
		s.MergedInto = r.Str()
		s.MVersion = r.Varint()
		if r.Err == nil && (s.MergedInto == "" || len(r.B) > 0) {
			r.Fail()
		}
		return s, r.Err
	}
	s.FVersion, s.Clock, s.MVersion = r.Varint(), r.Varint(), r.Varint()
	s.Defs = r.U32()
	n := r.Count()
	s.Values = make(map[string]schemas.FeatureValue, n)
	for range n {
		k := r.Str()
		v := schemas.FeatureValue{Kind: schemas.FeatureValueKind(r.Byte())}
		switch v.Kind {
		case schemas.FeatureNull:
		case schemas.FeatureNumber:
			if b := r.Bytes(8); b != nil {
				v.Num = math.Float64frombits(binary.LittleEndian.Uint64(b))
			}
		case schemas.FeatureString:
			v.Str = r.Str()
		default:
			r.Fail()
		}
		s.Values[k] = v
	}
	n = r.Count()
	s.Traits = make(map[string]string, n)
	for range n {
		k := r.Str()
		s.Traits[k] = r.Str()
	}
	n = r.Count()
	s.Members = make(map[string]Member, n)
	for range n {
		k := r.Str()
		s.Members[k] = Member{Since: r.Varint(), Def: r.U32()}
	}
	n = r.Count()
	for range n {
		c, err := schemas.DecodeProfileChange(r.Bytes(r.Count()))
		if err != nil {
			r.Fail()
			break
		}
		s.Held = append(s.Held, c)
	}
	if r.Err == nil && len(r.B) > 0 {
		r.Fail()
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return s, nil
}
