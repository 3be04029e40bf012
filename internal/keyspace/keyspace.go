// Package keyspace lays out per-profile state in Redis (or Redis Cluster)
// the way Kafka partitions the profiles: partition p of a topic keyed by
// profile id (the producer's murmur2 partitioning, as Kafka's Java client
// and franz-go do it) owns the profiles that hash to it, and the processor
// task of partition p keeps their state under a hash tag of its own:
//
//	<prefix>{<tag(p)>}:<suffix>
//
// A partition's keys and its journal share the tag, so a step is one
// script on one Cluster shard. Each partition's tag is chosen so that its
// slot falls in the p-th of N equal slices of the 16384 slots, which
// spreads the partitions evenly over a cluster whose shards own equal slot
// ranges (what `redis-cli --cluster create` makes). A cluster should have
// fewer shards than the topic has partitions.
package keyspace

import (
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Layout is the key layout of one processor's state over N partitions.
type Layout struct {
	name       string
	prefix     string
	partitions int
	tags       []string
	part       kgo.TopicPartitioner
}

// New returns the layout of the named state over a topic with that many
// partitions; every key starts with prefix.
func New(name, prefix string, partitions int) *Layout {
	l := &Layout{name: name, prefix: prefix, partitions: partitions, tags: make([]string, partitions),
		part: kgo.StickyKeyPartitioner(nil).ForTopic("")}
	for p := range partitions {
		l.tags[p] = spreadTag(name, p, partitions)
	}
	return l
}

// Partitions is the topic's partition count.
func (l *Layout) Partitions() int { return l.partitions }

// Partition is the partition that owns profile.
func (l *Layout) Partition(profile string) int32 {
	return int32(l.part.Partition(&kgo.Record{Key: []byte(profile)}, l.partitions))
}

// Tag is partition p's Redis Cluster hash tag.
func (l *Layout) Tag(p int32) string { return l.tags[p] }

// Key is a key of partition p.
func (l *Layout) Key(p int32, suffix string) string {
	return l.prefix + "{" + l.tags[p] + "}:" + suffix
}

// spreadTag finds "<name>:<p>:<k>" with the smallest k whose slot is in
// slice p of n.
func spreadTag(name string, p, n int) string {
	lo, hi := p*16384/n, (p+1)*16384/n
	for k := 0; ; k++ {
		tag := name + ":" + strconv.Itoa(p) + ":" + strconv.Itoa(k)
		if s := int(crc16(tag)) % 16384; s >= lo && s < hi {
			return tag
		}
	}
}

// Slot is the Redis Cluster slot of a key (its hash tag's, if it has one).
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % 16384
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
