package schemas_test

import (
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

// BenchmarkDecodeValidate measures the per-event cost of the raw-topic hot
// path: Confluent framing, Avro decode into an Event (writer schema already
// cached) and validation, for a realistic Order Completed event.
//
//	go test -bench DecodeValidate -cpu 1 -benchtime 2s ./schemas/...
func BenchmarkDecodeValidate(b *testing.B) {
	_, cl := fakeRegistry(b)
	s := schemas.NewSerde(cl)
	c := ctx(b)
	frame, err := s.Encode(c, "bench.events.raw", orderCompleted())
	if err != nil {
		b.Fatal(err)
	}
	now := baseTime.Add(2 * time.Second)
	var ev schemas.Event
	if err := s.DecodeInto(c, frame, &ev); err != nil { // warm the schema cache
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.DecodeInto(c, frame, &ev); err != nil {
			b.Fatal(err)
		}
		if err := validate.Event(&ev, len(frame), now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeGoavro is the same decode through goavro's generic native
// form and FromNative, for comparison with the compiled decoder.
func BenchmarkDecodeGoavro(b *testing.B) {
	_, cl := fakeRegistry(b)
	s := schemas.NewSerde(cl)
	c := ctx(b)
	frame, err := s.Encode(c, "bench.events.raw", orderCompleted())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		native, err := s.DecodeNative(c, frame, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := schemas.FromNative(native); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEncode measures Serde.Encode (goavro) with the id cached.
func BenchmarkEncode(b *testing.B) {
	_, cl := fakeRegistry(b)
	s := schemas.NewSerde(cl)
	c := ctx(b)
	ev := orderCompleted()
	var buf []byte
	var err error
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = s.AppendEncode(c, buf[:0], "bench.events.raw", &ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
