package features

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/streamcdp/streamcdp/internal/bytereader"
	"github.com/streamcdp/streamcdp/processors/features/definition"
)

// The stored form of a State, one Redis hash field per profile:
//
//	'F' 1                       magic and format version
//	flags                       bit 0: tombstone (then the survivor's id, nothing else)
//	version, watermark          varints
//	nfeatures { id u32 | len | payload }   only non-empty features
//	ntraits { name | time | tie | value }  sorted by name
//
// A feature's payload depends on its aggregation (see appendFeat); each is
// prefixed by the definition's fingerprint and its length, so state of a
// feature whose definition changed or was removed is skipped on decode and
// the feature starts empty.
const (
	magic0, magic1 = 'F', 1
	flagTombstone  = 1
)

// Encode appends the stored form of st.
func (e *Engine) Encode(dst []byte, st *State) []byte {
	dst = append(dst, magic0, magic1)
	if st.MergedInto != "" {
		dst = append(dst, flagTombstone)
		return appendStr(dst, st.MergedInto)
	}
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, st.Version)
	dst = binary.AppendVarint(dst, st.Clock)
	n := 0
	for _, fs := range st.Feats {
		if fs != nil && !fs.empty() {
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	var payload []byte
	for i, fs := range st.Feats {
		if fs == nil || fs.empty() || i >= len(e.set.Features) {
			continue
		}
		f := e.set.Features[i]
		dst = binary.LittleEndian.AppendUint32(dst, f.ID)
		payload = appendFeat(payload[:0], f, fs)
		dst = binary.AppendUvarint(dst, uint64(len(payload)))
		dst = append(dst, payload...)
	}
	names := make([]string, 0, len(st.Traits))
	for k := range st.Traits {
		names = append(names, k)
	}
	sort.Strings(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, k := range names {
		tr := st.Traits[k]
		dst = appendStr(dst, k)
		dst = binary.AppendVarint(dst, tr.Time)
		dst = binary.AppendUvarint(dst, uint64(tr.Tie))
		dst = appendStr(dst, tr.Value)
	}
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendValue(dst []byte, v definition.Value) []byte {
	dst = append(dst, byte(v.Kind))
	switch v.Kind {
	case definition.Number:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Num))
	case definition.String:
		dst = appendStr(dst, v.Str)
	}
	return dst
}

func appendFeat(dst []byte, f *definition.Feature, fs *featState) []byte {
	switch f.Agg {
	case definition.Distinct:
		if fs.hll != nil {
			dst = append(dst, 1)
			regs := make([]int, 0, len(fs.hll))
			for r := range fs.hll {
				regs = append(regs, int(r))
			}
			sort.Ints(regs)
			dst = binary.AppendUvarint(dst, uint64(len(regs)))
			for _, r := range regs {
				ps := fs.hll[uint16(r)]
				dst = binary.AppendUvarint(dst, uint64(r))
				dst = binary.AppendUvarint(dst, uint64(len(ps)))
				for _, p := range ps {
					dst = binary.AppendVarint(dst, p.idx)
					dst = append(dst, p.rank)
				}
			}
			return dst
		}
		dst = append(dst, 0)
		hs := make([]uint64, 0, len(fs.items))
		for h := range fs.items {
			hs = append(hs, h)
		}
		slices.Sort(hs)
		dst = binary.AppendUvarint(dst, uint64(len(hs)))
		for _, h := range hs {
			dst = binary.LittleEndian.AppendUint64(dst, h)
			dst = binary.AppendVarint(dst, fs.items[h])
		}
		return dst
	case definition.Top:
		vals := make([]string, 0, len(fs.top))
		for v := range fs.top {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		dst = binary.AppendUvarint(dst, uint64(len(vals)))
		for _, v := range vals {
			cs := fs.top[v]
			dst = appendStr(dst, v)
			dst = binary.AppendUvarint(dst, uint64(len(cs)))
			prev := int64(0)
			for _, c := range cs {
				dst = binary.AppendVarint(dst, c.idx-prev)
				prev = c.idx
				dst = binary.AppendVarint(dst, c.n)
			}
		}
		return dst
	}
	dst = binary.AppendUvarint(dst, uint64(len(fs.buckets)))
	prev := int64(0)
	for i := range fs.buckets {
		b := &fs.buckets[i]
		dst = binary.AppendVarint(dst, b.idx-prev)
		prev = b.idx
		dst = binary.AppendVarint(dst, b.n)
		switch f.Agg {
		case definition.Sum, definition.Avg:
			dst = binary.AppendVarint(dst, b.sum)
		case definition.Min, definition.Max:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(b.num))
		case definition.First, definition.Last:
			dst = binary.AppendVarint(dst, b.t)
			dst = binary.AppendUvarint(dst, uint64(b.tie))
			dst = appendValue(dst, b.val)
		case definition.FirstSeen, definition.LastSeen:
			dst = binary.AppendVarint(dst, b.t)
			dst = binary.AppendUvarint(dst, uint64(b.tie))
		}
	}
	return dst
}

// errCorrupt is returned for a stored form that does not parse.
var errCorrupt = errors.New("corrupt feature state")

// readValue reads a feature value.
func readValue(r *bytereader.Reader) definition.Value {
	switch k := definition.Kind(r.Byte()); k {
	case definition.None:
		return definition.Value{}
	case definition.Number:
		return definition.Num(math.Float64frombits(r.U64()))
	case definition.String:
		return definition.Str(r.Str())
	}
	r.Fail()
	return definition.Value{}
}

// Decode parses a stored State. Features whose definition changed are
// dropped (they start empty).
func (e *Engine) Decode(b []byte) (*State, error) {
	r := bytereader.New(b, errCorrupt)
	if r.Byte() != magic0 || r.Byte() != magic1 {
		return nil, fmt.Errorf("%w: not a feature state of format %d", errCorrupt, magic1)
	}
	st := &State{}
	flags := r.Byte()
	if flags&flagTombstone != 0 {
		st.MergedInto = r.Str()
		if st.MergedInto == "" && r.Err == nil {
			r.Fail()
		}
		return st, r.Err
	}
	st.Version = r.Varint()
	st.Clock = r.Varint()
	st.Feats = make([]*featState, len(e.set.Features))
	byID := make(map[uint32]int, len(e.set.Features))
	for i, f := range e.set.Features {
		byID[f.ID] = i
	}
	nf := r.Count()
	for range nf {
		id := r.U32()
		payload := r.Bytes(r.Count())
		i, ok := byID[id]
		if !ok || r.Err != nil {
			continue
		}
		fs, err := decodeFeat(e.set.Features[i], payload)
		if err != nil {
			return nil, fmt.Errorf("feature %s: %w", e.set.Features[i].Name, err)
		}
		if !fs.empty() {
			st.Feats[i] = fs
		}
	}
	nt := r.Count()
	for range nt {
		name := r.Str()
		tr := Trait{Time: r.Varint(), Tie: uint32(r.Uvarint()), Value: r.Str()}
		if r.Err != nil {
			break
		}
		if st.Traits == nil {
			st.Traits = make(map[string]Trait, nt)
		}
		st.Traits[name] = tr
	}
	if r.Err == nil && len(r.B) != 0 {
		r.Fail()
	}
	return st, r.Err
}

func decodeFeat(f *definition.Feature, payload []byte) (*featState, error) {
	r := bytereader.New(payload, errCorrupt)
	fs := &featState{}
	switch f.Agg {
	case definition.Distinct:
		switch r.Byte() {
		case 0:
			n := r.Count()
			fs.items = make(map[uint64]int64, n)
			for range n {
				h := r.U64()
				fs.items[h] = r.Varint()
			}
		case 1:
			fs.hll = slidingHLL{}
			nr := r.Count()
			for range nr {
				reg := r.Uvarint()
				np := r.Count()
				if reg >= hllM {
					r.Fail()
				}
				for range np {
					idx := r.Varint()
					fs.hll.insert(uint16(reg), hllPair{idx, r.Byte()})
				}
			}
		default:
			r.Fail()
		}
	case definition.Top:
		nv := r.Count()
		fs.top = make(map[string][]topCount, nv)
		for range nv {
			v := r.Str()
			nc := r.Count()
			cs := make([]topCount, 0, nc)
			prev := int64(0)
			for range nc {
				prev += r.Varint()
				cs = append(cs, topCount{prev, r.Varint()})
			}
			if r.Err != nil {
				break
			}
			fs.top[v] = cs
		}
	default:
		nb := r.Count()
		fs.buckets = make([]bucket, 0, nb)
		prev := int64(0)
		for range nb {
			prev += r.Varint()
			b := bucket{idx: prev, n: r.Varint()}
			switch f.Agg {
			case definition.Sum, definition.Avg:
				b.sum = r.Varint()
			case definition.Min, definition.Max:
				b.num = math.Float64frombits(r.U64())
			case definition.First, definition.Last:
				b.t = r.Varint()
				b.tie = uint32(r.Uvarint())
				b.val = readValue(r)
			case definition.FirstSeen, definition.LastSeen:
				b.t = r.Varint()
				b.tie = uint32(r.Uvarint())
				b.val = definition.Num(float64(b.t))
			}
			if r.Err != nil {
				break
			}
			if n := len(fs.buckets); n > 0 && fs.buckets[n-1].idx >= b.idx {
				r.Fail() // buckets are stored in order
				break
			}
			fs.buckets = append(fs.buckets, b)
		}
	}
	if r.Err == nil && len(r.B) != 0 {
		r.Fail()
	}
	return fs, r.Err
}
