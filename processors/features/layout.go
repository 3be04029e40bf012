package features

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Layout is where profiles live: partition p of the resolved topic (the
// producer's murmur2 partitioning of the profile id, as Kafka's Java client
// and franz-go do it) owns the profiles that hash to it, and its state is
// one Redis hash under a hash tag of its own:
//
//	<prefix>{<tag(p)>}:s   hash   profile id -> stored State (or a tombstone)
//
// The journals of the partition's two tasks (resolved and fold topics)
// share the tag, so a step is one script on one Redis Cluster shard; each
// partition's tag is chosen so that its slot falls in the p-th of N equal
// slices of the 16384 slots, which spreads the partitions evenly over a
// cluster whose shards own equal slot ranges (what `redis-cli --cluster
// create` makes). A cluster should have fewer shards than the resolved
// topic has partitions.
type Layout struct {
	prefix     string
	partitions int
	tags       []string
	part       kgo.TopicPartitioner
}

// NewLayout returns the layout of a resolved topic with that many
// partitions; every key starts with prefix.
func NewLayout(prefix string, partitions int) *Layout {
	l := &Layout{prefix: prefix, partitions: partitions, tags: make([]string, partitions),
		part: kgo.StickyKeyPartitioner(nil).ForTopic("")}
	for p := range partitions {
		l.tags[p] = spreadTag(p, partitions)
	}
	return l
}

// Partitions is the resolved topic's partition count.
func (l *Layout) Partitions() int { return l.partitions }

// Partition is the partition of the resolved topic that owns profile.
func (l *Layout) Partition(profile string) int32 {
	return int32(l.part.Partition(&kgo.Record{Key: []byte(profile)}, l.partitions))
}

// Tag is partition p's Redis Cluster hash tag.
func (l *Layout) Tag(p int32) string { return l.tags[p] }

// StateKey is partition p's state hash.
func (l *Layout) StateKey(p int32) string { return l.prefix + "{" + l.tags[p] + "}:s" }

// spreadTag finds "features:<p>:<k>" with the smallest k whose slot is in
// slice p of n.
func spreadTag(p, n int) string {
	lo, hi := p*16384/n, (p+1)*16384/n
	for k := 0; ; k++ {
		tag := "features:" + strconv.Itoa(p) + ":" + strconv.Itoa(k)
		if s := int(crc16(tag)) % 16384; s >= lo && s < hi {
			return tag
		}
	}
}

// crc16 is Redis Cluster's key hash (CRC-16/XMODEM).
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
