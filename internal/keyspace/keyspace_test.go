package keyspace

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestCRC16IsRedisKeySlotHash(t *testing.T) {
	// The check value of CRC-16/XMODEM, and slots Redis documents.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
	for key, slot := range map[string]int{"foo": 12182, "bar": 5061, "somekey": 11058, "{user1000}.following": 3443, "{user1000}.followers": 3443} {
		if got := Slot(key); got != slot {
			t.Errorf("slot of %q = %d, want %d", key, got, slot)
		}
	}
}

// Each partition's tag falls in its share of the slots, so partitions
// spread evenly over shards that own equal slot ranges.
func TestTagsSpreadOverTheSlots(t *testing.T) {
	for _, n := range []int{1, 3, 6, 12, 64} {
		l := New("features", "x:", n)
		for p := range n {
			s := int(crc16(l.Tag(int32(p)))) % 16384
			if s < p*16384/n || s >= (p+1)*16384/n {
				t.Errorf("n=%d: partition %d tag %q has slot %d", n, p, l.Tag(int32(p)), s)
			}
		}
	}
}

// Partition agrees with the producer's partitioner, so a profile's
// records and its fold records meet in one partition.
func TestPartitionIsTheProducers(t *testing.T) {
	l := New("features", "x:", 6)
	part := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for _, id := range []string{"a", "profile-1", "u:42", "0c1f2e"} {
		if got, want := l.Partition(id), part.Partition(&kgo.Record{Key: []byte(id)}, 6); int(got) != want {
			t.Errorf("%s: %d, producer %d", id, got, want)
		}
	}
}
