// Package bytereader reads the compact binary forms the processors store
// in Redis (uvarints, varints, little-endian words, length-prefixed
// bytes). The first error sticks: after it every read returns a zero
// value, so a decoder reads a whole record and checks Err once.
package bytereader

import "encoding/binary"

// Reader reads B from the front. Err is the first error, the corrupt error
// given to New.
type Reader struct {
	B       []byte
	Err     error
	corrupt error
}

// New reads b; a short or malformed b sets Err to corrupt.
func New(b []byte, corrupt error) *Reader { return &Reader{B: b, corrupt: corrupt} }

// Fail marks the input corrupt and stops reading.
func (r *Reader) Fail() {
	if r.Err == nil {
		r.Err = r.corrupt
	}
	r.B = nil
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.B) == 0 {
		r.Fail()
		return 0
	}
	c := r.B[0]
	r.B = r.B[1:]
	return c
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Varint reads a zig-zag varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.B)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// U32 reads a little-endian uint32.
func (r *Reader) U32() uint32 {
	b := r.Bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// U64 reads a little-endian uint64.
func (r *Reader) U64() uint64 {
	b := r.Bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// Count reads a length that must fit in what is left (each element takes
// at least one byte), so a corrupt length cannot allocate much.
func (r *Reader) Count() int {
	n := r.Uvarint()
	if n > uint64(len(r.B)) {
		r.Fail()
		return 0
	}
	return int(n)
}

// Bytes reads n bytes (a sub-slice of the input, not a copy).
func (r *Reader) Bytes(n int) []byte {
	if n > len(r.B) {
		r.Fail()
		return nil
	}
	out := r.B[:n]
	r.B = r.B[n:]
	return out
}

// Str reads a length-prefixed string.
func (r *Reader) Str() string { return string(r.Bytes(r.Count())) }
