package recommend

import (
	"testing"

	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/testkit"
)

// redisBytes returns, per state hash, its fields over all partitions and
// the bytes Redis reports for them (MEMORY USAGE, every element sampled).
func (s *stage) redisBytes(t testing.TB, partitions int32) map[string][2]int64 {
	t.Helper()
	rdb := s.env.Redis(t)
	ctx := testkit.Context(t)
	out := map[string][2]int64{}
	for _, suffix := range []string{keyHistory, keyViews, keyList, keyDigest, keyScores} {
		var fields, bytes int64
		for p := range partitions {
			k := slotKey(s.env.Services.TopicPrefix+":", s.topics.Input, p, suffix)
			n, err := rdb.HLen(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				continue
			}
			b, err := rdb.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				t.Fatal(err)
			}
			fields, bytes = fields+n, bytes+b
		}
		out[suffix] = [2]int64{fields, bytes}
	}
	return out
}

// checkMemory measures what the run left in Redis per profile and what the
// global models cost in the Go heap, logs it, and checks it against the
// bounds the package doc states.
func checkMemory(t *testing.T, s *stage, partitions int32) {
	t.Helper()
	mem := s.redisBytes(t, partitions)
	var total int64
	for _, suffix := range []string{keyHistory, keyViews, keyList, keyDigest, keyScores} {
		fb := mem[suffix]
		if fb[0] == 0 {
			t.Errorf("no %s fields", suffix)
			continue
		}
		per := fb[1] / fb[0]
		total += fb[1]
		t.Logf("redis %s: %d profiles, %d bytes, %d bytes per profile", suffix, fb[0], fb[1], per)
		limit := map[string]int64{keyHistory: 2048, keyViews: 1024, keyList: 1536, keyDigest: 128, keyScores: 1024}[suffix]
		if per > limit {
			t.Errorf("%s takes %d bytes per profile, over the %d the package doc allows for", suffix, per, limit)
		}
	}
	t.Logf("redis total %d bytes for %d profiles with a list: %d bytes per profile", total, mem[keyList][0], total/mem[keyList][0])

	// The global models, rebuilt from the changelog into a fresh Shared.
	var all []orderRecord
	for _, rs := range s.orderRecords(t) {
		all = append(all, rs...)
	}
	m, _ := newMetrics(nil)
	sh := NewShared(DefaultConfig(), m, zap.NewNop())
	sh.Apply(all)
	st, n := sh.Stats()
	t.Logf("global models after %d orders: %d items, %d association counters (bound %d; assoc measures 39.9 bytes each), %d sampled customers",
		n, st.Items, st.Pairs, sh.model.MaxPairs(), len(sh.base.m))
	if n != int64(len(all)) || st.Pairs > sh.model.MaxPairs() || len(sh.base.m) > DefaultConfig().MaxFitProfiles {
		t.Errorf("the models exceed their bounds")
	}
}
