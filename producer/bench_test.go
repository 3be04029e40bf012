package producer_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/streamcdp/streamcdp/internal/generate"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/producer"
)

// generated returns n lines of `cdp generate` output (seed 1, all valid).
func generated(b *testing.B, n int) []byte {
	b.Helper()
	cfg := generate.DefaultConfig()
	cfg.Persons, cfg.Events, cfg.Seed = 2000, n, 1
	var buf bytes.Buffer
	ws := generate.NewWriterSink(&buf)
	if _, err := generate.Generate(context.Background(), cfg, ws); err != nil {
		b.Fatal(err)
	}
	if err := ws.Flush(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkProduceLines measures `cdp produce` end to end against the local
// stack: parse, validate, encode, produce and wait for acknowledgement of
// 20k generated events per op. It reports events/s.
func BenchmarkProduceLines(b *testing.B) {
	const n = 20000
	data := generated(b, n)
	p, _, _ := newProducer(b, nil)
	ctx := testkit.Context(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		res, err := p.ProduceLines(ctx, bytes.NewReader(data), producer.LinesOptions{})
		if err != nil || res.Sent != n {
			b.Fatalf("ProduceLines = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
