package recommend

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamcdp/streamcdp/internal/ml/assoc"
)

// Redis keys. Every key of a partition's state shares the partition's hash
// tag with its journal (see the package doc), so a step is one script on one
// shard of a Redis Cluster.
const (
	keyHistory = "rec:h" // hash profile -> profileState (JSON), profiles with an order
	keyViews   = "rec:v" // hash profile -> session (JSON)
	keyList    = "rec:l" // hash profile -> List (JSON), the current recommendations
	keyDigest  = "rec:n" // hash profile -> listDigest of the current list
	keyScores  = "rec:s" // hash profile -> Scores (JSON)
	keySweep   = "rec:w" // hash: id, cursor, done of the rescoring after a fit
)

// processorName names the journal and the tag of every key.
const processorName = "recommend"

// tag is the Redis Cluster hash tag of one input partition's keys: the
// journal's default, spelled out because the Reader computes it too.
func tag(topic string, partition int32) string {
	return processorName + ":" + topic + ":" + strconv.Itoa(int(partition))
}

// slotKey is the key suffix of partition's state, prefix being the key
// prefix of the deployment ("cdp:").
func slotKey(prefix, topic string, partition int32, suffix string) string {
	return prefix + "{" + tag(topic, partition) + "}:" + suffix
}

// listDigest is what the processor reads of a profile's current list to
// decide whether a refresh changed it: its version, time and a hash of its
// items and reasons. Reading it instead of the list itself saves decoding
// a list on every refresh (a third of the processor's CPU when it did).
type listDigest struct {
	version int64
	at      int64 // Unix ms: the event time the list was computed at
	hash    uint64
}

func (d listDigest) String() string {
	return strconv.FormatInt(d.version, 10) + ":" + strconv.FormatInt(d.at, 10) + ":" + strconv.FormatUint(d.hash, 16)
}

func parseDigest(s string) (listDigest, error) {
	var d listDigest
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return d, fmt.Errorf("list digest %q: want version:time:hash", s)
	}
	var err error
	if d.version, err = strconv.ParseInt(parts[0], 10, 64); err == nil {
		if d.at, err = strconv.ParseInt(parts[1], 10, 64); err == nil {
			d.hash, err = strconv.ParseUint(parts[2], 16, 64)
		}
	}
	if err != nil {
		return d, fmt.Errorf("list digest %q: %w", s, err)
	}
	return d, nil
}

// itemsHash hashes what "the list changed" means: the items in order and
// their reasons; scores are left out, since they move with every order any
// profile places.
func itemsHash(items []Item) uint64 {
	h := fnv.New64a()
	for _, it := range items {
		h.Write([]byte(it.ProductID))
		h.Write([]byte{0})
		h.Write([]byte(it.Reason))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// profileState is what the processor keeps per profile that ordered: the
// purchase history the recommendations score and the summary the scores
// are computed from.
type profileState struct {
	History assoc.ProfileState `json:"h"`
	Summary summary            `json:"s"`
}

// summary is a profile's orders: the sufficient statistics of RFM, BG/NBD
// and Gamma-Gamma. Times are Unix milliseconds of event time.
type summary struct {
	Orders       int64   `json:"n"`
	Revenue      float64 `json:"r"`
	First        int64   `json:"f"`
	FirstRevenue float64 `json:"fr"`
	Last         int64   `json:"l"`
}

// add records one order. A late order earlier than the first becomes the
// first, so the repeat orders' mean value (Gamma-Gamma's m_x) excludes the
// earliest order whatever the arrival order.
func (s *summary) add(at int64, revenue float64) {
	if s.Orders == 0 || at < s.First {
		s.First, s.FirstRevenue = at, revenue
	}
	s.Last = max(s.Last, at)
	s.Orders++
	s.Revenue += revenue
}

// session is a profile's recent product views, oldest first, at most
// MaxViews distinct items within SessionWindow of the latest.
type session struct {
	Views []view `json:"v"`
}

type view struct {
	Item string `json:"i"`
	At   int64  `json:"t"` // Unix ms, event time
}

// add records a view at ms and drops what fell out of the window or over
// the cap. A view of an item already in the session moves it to the end.
func (s *session) add(item string, ms int64, window time.Duration, maxViews int) {
	s.Views = slices.DeleteFunc(s.Views, func(v view) bool { return v.Item == item })
	// Keep the views in event-time order, so a late view does not push a
	// newer one out of the window.
	i, _ := slices.BinarySearchFunc(s.Views, ms, func(v view, t int64) int {
		if v.At <= t {
			return -1
		}
		return 1
	})
	s.Views = slices.Insert(s.Views, i, view{Item: item, At: ms})
	s.expire(s.Views[len(s.Views)-1].At, window)
	if n := len(s.Views); n > maxViews {
		s.Views = slices.Delete(s.Views, 0, n-maxViews)
	}
}

// expire drops views older than window before now (ms).
func (s *session) expire(now int64, window time.Duration) {
	cut := now - window.Milliseconds()
	s.Views = slices.DeleteFunc(s.Views, func(v view) bool { return v.At < cut })
}

// items returns the session's items, newest first, at now (ms).
func (s *session) items(now int64, window time.Duration) []string {
	cut := now - window.Milliseconds()
	var out []string
	for i := len(s.Views) - 1; i >= 0; i-- {
		if s.Views[i].At >= cut {
			out = append(out, s.Views[i].Item)
		}
	}
	return out
}
