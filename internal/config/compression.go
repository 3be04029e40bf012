package config

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Compression is the producer codec CDP_KAFKA_COMPRESSION names.
func (s Services) Compression() (kgo.CompressionCodec, error) {
	switch strings.ToLower(strings.TrimSpace(s.KafkaCompression)) {
	case "", "snappy":
		return kgo.SnappyCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("CDP_KAFKA_COMPRESSION=%q: want snappy, gzip, lz4, zstd or none", s.KafkaCompression)
}
