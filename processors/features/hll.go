package features

import (
	"math"
	"math/bits"
	"slices"
)

// A sliding HyperLogLog (Chabchoub and Hébrail, 2010): each register keeps,
// instead of one maximum rank, the pairs (bucket, rank) that can still be
// the maximum of some future window: a pair is dropped when a pair in the
// same or a later bucket has a rank at least as high. The estimate for a
// window is the usual HyperLogLog estimate over, per register, the highest
// rank among pairs in the window. A lifetime sketch uses bucket 0 only and
// is a plain HyperLogLog. Union (a merge of two profiles) is the union of
// the pairs, pruned the same way, so it is exact and order-free.
//
// hllP registers bits give 256 registers: a standard error of 1.04/√256 ≈
// 6.5%, and at most 256·(a few) pairs per sketch.
const (
	hllP = 8
	hllM = 1 << hllP
)

type hllPair struct {
	idx  int64
	rank uint8
}

// slidingHLL maps a register to its pairs, sorted by idx ascending (and so
// by rank descending).
type slidingHLL map[uint16][]hllPair

func hllPos(hash uint64) (uint16, uint8) {
	reg := uint16(hash >> (64 - hllP))
	rest := hash<<hllP | 1<<(hllP-1) // a sentinel bit bounds the rank
	return reg, uint8(bits.LeadingZeros64(rest)) + 1
}

func (h slidingHLL) add(hash uint64, idx int64) {
	reg, rank := hllPos(hash)
	h.insert(reg, hllPair{idx, rank})
}

func (h slidingHLL) insert(reg uint16, p hllPair) {
	ps := h[reg]
	for _, q := range ps {
		if q.idx >= p.idx && q.rank >= p.rank {
			return // dominated: a later (or same) bucket has a rank as high
		}
	}
	out := ps[:0]
	for _, q := range ps {
		if !(q.idx <= p.idx && q.rank <= p.rank) {
			out = append(out, q)
		}
	}
	out = append(out, p)
	slices.SortFunc(out, func(a, b hllPair) int {
		switch {
		case a.idx < b.idx:
			return -1
		case a.idx > b.idx:
			return 1
		}
		return int(b.rank) - int(a.rank)
	})
	h[reg] = out
}

// prune drops pairs in buckets before from.
func (h slidingHLL) prune(from int64) {
	for reg, ps := range h {
		i := 0
		for i < len(ps) && ps[i].idx < from {
			i++
		}
		if i == len(ps) {
			delete(h, reg)
		} else if i > 0 {
			h[reg] = append(ps[:0:0], ps[i:]...)
		}
	}
}

func (h slidingHLL) union(o slidingHLL) {
	for reg, ps := range o {
		for _, p := range ps {
			h.insert(reg, p)
		}
	}
}

// estimate is the distinct count of the pairs in buckets from on.
func (h slidingHLL) estimate(from int64) float64 {
	sum := 0.0
	zeros := 0
	for reg := range hllM {
		max := uint8(0)
		for _, p := range h[uint16(reg)] {
			if p.idx >= from && p.rank > max {
				max = p.rank
			}
		}
		if max == 0 {
			zeros++
		}
		sum += math.Ldexp(1, -int(max))
	}
	m := float64(hllM)
	alpha := 0.7213 / (1 + 1.079/m)
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros)) // linear counting for small sets
	}
	return math.Round(e)
}

func (h slidingHLL) clone() slidingHLL {
	out := make(slidingHLL, len(h))
	for reg, ps := range h {
		out[reg] = slices.Clone(ps)
	}
	return out
}
