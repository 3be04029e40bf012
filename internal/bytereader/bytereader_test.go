package bytereader

import (
	"encoding/binary"
	"errors"
	"testing"
)

var errBad = errors.New("bad")

func TestReadsBackWhatWasWritten(t *testing.T) {
	var b []byte
	b = append(b, 7)
	b = binary.AppendUvarint(b, 300)
	b = binary.AppendVarint(b, -5)
	b = binary.LittleEndian.AppendUint32(b, 0xdeadbeef)
	b = binary.LittleEndian.AppendUint64(b, 1<<40)
	b = binary.AppendUvarint(b, 3)
	b = append(b, "abc"...)
	r := New(b, errBad)
	if got := r.Byte(); got != 7 {
		t.Errorf("Byte %d", got)
	}
	if got := r.Uvarint(); got != 300 {
		t.Errorf("Uvarint %d", got)
	}
	if got := r.Varint(); got != -5 {
		t.Errorf("Varint %d", got)
	}
	if got := r.U32(); got != 0xdeadbeef {
		t.Errorf("U32 %x", got)
	}
	if got := r.U64(); got != 1<<40 {
		t.Errorf("U64 %d", got)
	}
	if got := r.Str(); got != "abc" {
		t.Errorf("Str %q", got)
	}
	if r.Err != nil || len(r.B) != 0 {
		t.Errorf("Err %v, %d bytes left", r.Err, len(r.B))
	}
}

func TestFirstErrorSticks(t *testing.T) {
	for name, read := range map[string]func(*Reader){
		"byte":        func(r *Reader) { r.Byte() },
		"u32":         func(r *Reader) { r.U32() },
		"u64":         func(r *Reader) { r.U64() },
		"long count":  func(r *Reader) { r.Count() },
		"long string": func(r *Reader) { r.Str() },
	} {
		// A count of 200 with one byte after it; a U32 of two bytes.
		r := New([]byte{0xc8, 0x01, 'x'}, errBad)
		if name == "byte" {
			r = New(nil, errBad)
		}
		if name == "u32" || name == "u64" {
			r = New([]byte{1, 2}, errBad)
		}
		read(r)
		if !errors.Is(r.Err, errBad) {
			t.Errorf("%s: Err %v, want errBad", name, r.Err)
		}
		if r.Byte() != 0 || r.Uvarint() != 0 || r.Str() != "" {
			t.Errorf("%s: reads after the error return values", name)
		}
	}
}
