package recommend

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// List is a profile's current recommendations: the value of the
// recommendations topic (schemas/recommendation.avsc) and, as JSON with the
// same field names, of its field in Redis (Reader.Recommendations).
type List struct {
	ProfileID        string    `json:"profile_id"`
	Version          int64     `json:"version"`
	Model            string    `json:"model"`
	Time             time.Time `json:"time"`
	TriggerMessageID string    `json:"trigger_message_id,omitempty"`
	Items            []Item    `json:"items"`
}

// Item is one recommended product.
type Item struct {
	ProductID string  `json:"product_id"`
	Score     float64 `json:"score"`
	// Reason is repeat, viewed, association or popular (schemas/
	// recommendation.avsc).
	Reason string `json:"reason"`
}

// Reasons an item is in a list.
const (
	ReasonRepeat      = "repeat"      // the profile bought it before
	ReasonViewed      = "viewed"      // in the profile's current session
	ReasonAssociation = "association" // bought with or after the profile's items or views
	ReasonPopular     = "popular"     // fill for a short list
)

func (l *List) native() map[string]any {
	items := make([]any, len(l.Items))
	for i, it := range l.Items {
		items[i] = map[string]any{"product_id": it.ProductID, "score": it.Score, "reason": map[string]any{"string": it.Reason}}
	}
	return map[string]any{
		"profile_id": l.ProfileID, "version": l.Version, "model": l.Model, "time": l.Time,
		"trigger_message_id": optString(l.TriggerMessageID), "items": items,
	}
}

// Scores are a profile's customer scores: the value of the scores topic
// (schemas/customer_scores.avsc) and, as JSON with the same field names, of
// its field in Redis (Reader.Scores). Pointers are null until the model
// behind them has been fitted.
type Scores struct {
	ProfileID        string    `json:"profile_id"`
	Version          int64     `json:"version"`
	Time             time.Time `json:"time"`
	Cause            string    `json:"cause"` // order or refit
	TriggerMessageID string    `json:"trigger_message_id,omitempty"`
	Model            string    `json:"model"`
	Orders           int64     `json:"orders"`
	Revenue          float64   `json:"revenue"`
	FirstOrder       time.Time `json:"first_order"`
	LastOrder        time.Time `json:"last_order"`
	RecencyDays      float64   `json:"recency_days"`
	R                int       `json:"r"`
	F                int       `json:"f"`
	M                int       `json:"m"`
	RFMSegment       string    `json:"rfm_segment"`
	ExpectedOrders   *float64  `json:"expected_orders"`
	CLV              *float64  `json:"clv"`
	PAlive           *float64  `json:"p_alive"`
	ChurnRisk        *float64  `json:"churn_risk"`
	HorizonDays      int       `json:"horizon_days"`
	ChurnDays        int       `json:"churn_days"`
}

// Causes of a scores record.
const (
	CauseOrder = "order"
	CauseRefit = "refit"
)

// Tolerances of "the scores changed" for the numbers: a change smaller than
// these (against the last emitted value) is not worth a record, since every
// refit and every day moves them a little.
const (
	tolRelative    = 0.01 // expected orders, lifetime value: 1%
	tolProbability = 0.01 // p_alive, churn risk: one point
)

// sameScores reports whether b is close enough to a, the last emitted
// scores, that no record is due.
func sameScores(a, b *Scores) bool {
	if a.R != b.R || a.F != b.F || a.M != b.M || a.RFMSegment != b.RFMSegment || a.Orders != b.Orders ||
		math.Abs(a.Revenue-b.Revenue) > 0.005 || !a.LastOrder.Equal(b.LastOrder) {
		return false
	}
	near := func(x, y *float64, tol float64, relative bool) bool {
		switch {
		case x == nil || y == nil:
			return x == nil && y == nil
		case relative:
			return math.Abs(*x-*y) <= tol*math.Max(math.Abs(*x), 1e-9)
		}
		return math.Abs(*x-*y) <= tol
	}
	return near(a.ExpectedOrders, b.ExpectedOrders, tolRelative, true) && near(a.CLV, b.CLV, tolRelative, true) &&
		near(a.PAlive, b.PAlive, tolProbability, false) && near(a.ChurnRisk, b.ChurnRisk, tolProbability, false)
}

func (s *Scores) native() map[string]any {
	return map[string]any{
		"profile_id": s.ProfileID, "version": s.Version, "time": s.Time, "cause": s.Cause,
		"trigger_message_id": optString(s.TriggerMessageID), "model": s.Model,
		"orders": s.Orders, "revenue": s.Revenue, "first_order": s.FirstOrder, "last_order": s.LastOrder,
		"recency_days": s.RecencyDays, "r": int32(s.R), "f": int32(s.F), "m": int32(s.M), "rfm_segment": s.RFMSegment,
		"expected_orders": optDouble(s.ExpectedOrders), "clv": optDouble(s.CLV), "p_alive": optDouble(s.PAlive),
		"churn_risk": optDouble(s.ChurnRisk), "horizon_days": int32(s.HorizonDays), "churn_days": int32(s.ChurnDays),
	}
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return map[string]any{"string": s}
}

func optDouble(v *float64) any {
	if v == nil {
		return nil
	}
	return map[string]any{"double": *v}
}

// unmarshal decodes a stored JSON value, naming what it was.
func unmarshal(b []byte, what string, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("stored %s: %w", what, err)
	}
	return nil
}
