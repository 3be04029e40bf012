package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordsVersion starts every encoding, so the format can change.
const recordsVersion = 1

// EncodeRecords encodes output records for a journal entry: topic, key
// (nil kept apart from empty), value, headers and timestamp, each length
// prefixed. Partition is not kept: outputs are partitioned by key.
func EncodeRecords(recs []*kgo.Record) []byte {
	n := 2
	for _, r := range recs {
		n += 40 + len(r.Topic) + len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			n += 10 + len(h.Key) + len(h.Value)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, recordsVersion)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, r := range recs {
		b = appendBytes(b, []byte(r.Topic))
		if r.Key == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendBytes(b, r.Key)
		}
		b = appendBytes(b, r.Value)
		b = binary.AppendVarint(b, r.Timestamp.UnixMilli())
		b = binary.AppendUvarint(b, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			b = appendBytes(b, []byte(h.Key))
			b = appendBytes(b, h.Value)
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

var errShort = errors.New("truncated")

// DecodeRecords is the inverse of EncodeRecords.
func DecodeRecords(b []byte) ([]*kgo.Record, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != recordsVersion {
		return nil, fmt.Errorf("records encoding version %d, want %d", b[0], recordsVersion)
	}
	d := decoder{b: b[1:]}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		return nil, fmt.Errorf("%d records in %d bytes", n, len(d.b))
	}
	recs := make([]*kgo.Record, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := &kgo.Record{Topic: string(d.bytes())}
		if d.byte() == 1 {
			r.Key = d.bytes()
		}
		r.Value = d.bytes()
		r.Timestamp = time.UnixMilli(d.varint())
		nh := d.uvarint()
		if d.err == nil && nh > uint64(len(d.b)) {
			d.err = errShort
		}
		for k := uint64(0); k < nh && d.err == nil; k++ {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(d.bytes()), Value: d.bytes()})
		}
		recs = append(recs, r)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decoding journaled records: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decoding journaled records: %d trailing bytes", len(d.b))
	}
	return recs, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}
