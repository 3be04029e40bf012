package features

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Customer scores (topic profiles.scores, from the recommend processor)
// become traits of the profile, so that segment conditions read them like
// any trait (traits.rfm_segment == "champions") and they appear on the
// profile. A scores record sets them at its time; the latest by time wins,
// as for identify traits.
var scoreTraits = []struct{ trait, field string }{
	{"rfm_segment", "rfm_segment"},
	{"rfm_recency", "r"},
	{"rfm_frequency", "f"},
	{"rfm_monetary", "m"},
	{"clv", "clv"},
	{"expected_orders", "expected_orders"},
	{"p_alive", "p_alive"},
	{"churn_risk", "churn_risk"},
}

// scoresUpdate is a decoded scores record.
type scoresUpdate struct {
	profile string
	at      int64  // its time, Unix ms
	id      string // "scores/<profile>/<version>": the trigger of the change
	traits  map[string]string
}

// parseScores reads goavro's native form of a CustomerScores record.
func parseScores(native any) (scoresUpdate, error) {
	m, ok := native.(map[string]any)
	if !ok {
		return scoresUpdate{}, fmt.Errorf("a scores record is %T, not a record", native)
	}
	var u scoresUpdate
	u.profile, _ = m["profile_id"].(string)
	if u.profile == "" {
		return u, fmt.Errorf("scores record without a profile_id")
	}
	t, ok := m["time"].(time.Time)
	if !ok {
		return u, fmt.Errorf("scores record of %s: time is %T", u.profile, m["time"])
	}
	u.at = t.UnixMilli()
	version, _ := m["version"].(int64)
	u.id = "scores/" + u.profile + "/" + strconv.FormatInt(version, 10)
	u.traits = make(map[string]string, len(scoreTraits))
	for _, s := range scoreTraits {
		v := m[s.field]
		if u, ok := v.(map[string]any); ok { // a union's non-null branch
			for _, x := range u {
				v = x
			}
		}
		b, err := json.Marshal(v) // nil (a null union) removes the trait
		if err != nil {
			return u, fmt.Errorf("scores record of %s: %s: %w", u.profile, s.field, err)
		}
		u.traits[s.trait] = string(b)
	}
	return u, nil
}
