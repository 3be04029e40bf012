package profileapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/recommend"
	"github.com/streamcdp/streamcdp/processors/segments"
)

// The stores the API reads, as small interfaces so handlers can be tested
// without Redis. The processors' own readers implement them.

// Identities resolves ids and identifiers through the identity graph
// (*identity.Graph).
type Identities interface {
	Lookup(ctx context.Context, id identity.Identifier) (profileID string, ok bool, err error)
	Profile(ctx context.Context, profileID string) (canonicalID string, ids []identity.Identifier, err error)
}

// Features reads feature values and traits (*features.Reader).
type Features interface {
	Profile(ctx context.Context, profile string, at time.Time) (*features.Profile, error)
}

// Segments reads memberships (*segments.Reader).
type Segments interface {
	Members(ctx context.Context, profile string) ([]segments.Membership, string, error)
}

// Recommender reads lists and scores (*recommend.Reader).
type Recommender interface {
	Recommendations(ctx context.Context, profile string) (*recommend.List, error)
	Scores(ctx context.Context, profile string) (*recommend.Scores, error)
}

// Stores are what a Service reads. Recommendations and Events may be nil.
type Stores struct {
	Identities      Identities
	Features        Features
	Segments        Segments
	Recommendations Recommender
	Events          EventStore
	// IdentifierTypes are the types by-identifier accepts (the identity
	// rules' priority list); profile_id is always accepted.
	IdentifierTypes []string
	// Now is the read time of windowed features (default time.Now).
	Now func() time.Time
}

// Errors the service returns; the HTTP layer maps them to codes.
var (
	ErrProfileNotFound = errors.New("profile not found")
	ErrInvalidArgument = errors.New("invalid argument")
)

// Profile is the API's view of one profile (components.schemas.Profile).
type Profile struct {
	ProfileID       string                     `json:"profile_id"`
	RequestedID     string                     `json:"requested_id"`
	Merged          bool                       `json:"merged"`
	Identifier      *Identifier                `json:"identifier,omitempty"`
	Identities      []Identifier               `json:"identities"`
	Traits          map[string]json.RawMessage `json:"traits"`
	Features        map[string]any             `json:"features"`
	FeaturesAt      time.Time                  `json:"features_at"`
	FeaturesVersion int64                      `json:"features_version"`
	LatestEventAt   *time.Time                 `json:"latest_event_at,omitempty"`
	NextChangeAt    *time.Time                 `json:"next_change_at,omitempty"`
	Segments        []Membership               `json:"segments"`
	Recommendations *Recommendations           `json:"recommendations,omitempty"`
	Scores          *Scores                    `json:"scores,omitempty"`
}

// Identifier is a type and a value.
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Membership is a segment the profile is in and since when.
type Membership struct {
	Segment   string    `json:"segment"`
	EnteredAt time.Time `json:"entered_at"`
}

// Recommendations is the profile's current list.
type Recommendations struct {
	Version   int64                `json:"version"`
	Model     string               `json:"model"`
	UpdatedAt time.Time            `json:"updated_at"`
	Items     []RecommendationItem `json:"items"`
}

// RecommendationItem is one recommended product.
type RecommendationItem struct {
	ProductID string  `json:"product_id"`
	Score     float64 `json:"score"`
	Reason    string  `json:"reason"`
}

// Scores are the profile's customer scores.
type Scores struct {
	Version        int64      `json:"version"`
	Model          string     `json:"model"`
	UpdatedAt      time.Time  `json:"updated_at"`
	Orders         int64      `json:"orders"`
	Revenue        float64    `json:"revenue"`
	FirstOrderAt   *time.Time `json:"first_order_at,omitempty"`
	LastOrderAt    *time.Time `json:"last_order_at,omitempty"`
	RecencyDays    float64    `json:"recency_days"`
	R              int        `json:"r"`
	F              int        `json:"f"`
	M              int        `json:"m"`
	RFMSegment     string     `json:"rfm_segment"`
	ExpectedOrders *float64   `json:"expected_orders"`
	CLV            *float64   `json:"clv"`
	PAlive         *float64   `json:"p_alive"`
	ChurnRisk      *float64   `json:"churn_risk"`
	HorizonDays    int        `json:"horizon_days"`
	ChurnDays      int        `json:"churn_days"`
}

// Service assembles profiles from the stores.
type Service struct {
	st    Stores
	types map[string]bool
}

// NewService returns a Service over st.
func NewService(st Stores) *Service {
	if st.Now == nil {
		st.Now = time.Now
	}
	types := map[string]bool{identity.TypeProfileID: true}
	for _, t := range st.IdentifierTypes {
		types[t] = true
	}
	return &Service{st: st, types: types}
}

// Bounds of what a request may ask for (openapi.yaml says the same).
const (
	maxIDLength    = 256
	maxValueLength = 1024
)

// ByID returns the profile id is, or was merged into.
func (s *Service) ByID(ctx context.Context, id string) (*Profile, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return s.assemble(ctx, id, nil)
}

// ByIdentifier returns the profile holding the identifier typ=value.
func (s *Service) ByIdentifier(ctx context.Context, typ, value string) (*Profile, error) {
	if typ == "" || value == "" {
		return nil, fmt.Errorf("%w: type and value are both required", ErrInvalidArgument)
	}
	if len(value) > maxValueLength {
		return nil, fmt.Errorf("%w: value of %d bytes: at most %d", ErrInvalidArgument, len(value), maxValueLength)
	}
	if !s.types[typ] {
		return nil, fmt.Errorf("%w: unknown identifier type %q (known: %s)", ErrInvalidArgument, typ, s.typeList())
	}
	id, ok, err := s.st.Identities.Lookup(ctx, identity.Identifier{Type: typ, Value: value})
	if err != nil {
		return nil, err
	}
	if !ok {
		// Not in the graph, or a value the rules refuse (blocked, invalid):
		// either way no profile holds it.
		return nil, fmt.Errorf("%w: no profile has %s %q", ErrProfileNotFound, typ, value)
	}
	return s.assemble(ctx, id, &Identifier{Type: typ, Value: value})
}

// canonical returns the surviving profile of id, in one lookup.
func (s *Service) canonical(ctx context.Context, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	c, ok, err := s.st.Identities.Lookup(ctx, identity.Identifier{Type: identity.TypeProfileID, Value: id})
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrProfileNotFound, id)
	}
	return c, nil
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLength {
		return fmt.Errorf("%w: a profile id has 1 to %d bytes", ErrInvalidArgument, maxIDLength)
	}
	return nil
}

func (s *Service) typeList() string {
	out := identity.TypeProfileID
	for _, t := range s.st.IdentifierTypes {
		out += ", " + t
	}
	return out
}

// assemble reads everything about requested. The identity graph decides
// whether the profile exists and which profile survives; the other stores
// are read by the survivor's id, and a store that has not seen the profile
// yet (its processor lags, or the profile had no event it counts)
// contributes nothing rather than failing the request.
func (s *Service) assemble(ctx context.Context, requested string, by *Identifier) (*Profile, error) {
	canonical, ids, err := s.st.Identities.Profile(ctx, requested)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrProfileNotFound, requested)
	}
	if err != nil {
		return nil, err
	}
	at := s.st.Now().UTC()
	p := &Profile{ProfileID: canonical, RequestedID: requested, Merged: canonical != requested, Identifier: by,
		Identities: make([]Identifier, len(ids)), Traits: map[string]json.RawMessage{}, Features: map[string]any{},
		FeaturesAt: at, Segments: []Membership{}}
	for i, id := range ids {
		p.Identities[i] = Identifier{Type: id.Type, Value: id.Value}
	}

	// The remaining reads are independent: run them side by side so a
	// request costs about one Redis round trip after the graph's.
	var (
		wg                  sync.WaitGroup
		fp                  *features.Profile
		members             []segments.Membership
		list                *recommend.List
		scores              *recommend.Scores
		fErr, sErr, rErr    error
		scErr               error
		haveRecommendations = s.st.Recommendations != nil
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		fp, fErr = s.st.Features.Profile(ctx, canonical, at)
	}()
	go func() {
		defer wg.Done()
		members, _, sErr = s.st.Segments.Members(ctx, canonical)
	}()
	if haveRecommendations {
		wg.Add(2)
		go func() {
			defer wg.Done()
			list, rErr = s.st.Recommendations.Recommendations(ctx, canonical)
		}()
		go func() {
			defer wg.Done()
			scores, scErr = s.st.Recommendations.Scores(ctx, canonical)
		}()
	}
	wg.Wait()
	if errors.Is(fErr, features.ErrNotFound) {
		fErr = nil
	}
	if errors.Is(sErr, segments.ErrNotFound) {
		sErr = nil
	}
	if err := errors.Join(fErr, sErr, rErr, scErr); err != nil {
		return nil, err
	}
	if fp != nil {
		p.Features, p.Traits, p.FeaturesVersion = fp.Features, fp.Traits, fp.Version
		for k, v := range p.Features {
			// JSON has no NaN or infinity; a value that is not a number is no value.
			if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
				p.Features[k] = nil
			}
		}
		p.LatestEventAt, p.NextChangeAt = timePtr(fp.LatestEvent), timePtr(fp.NextChange)
	}
	for _, m := range members {
		p.Segments = append(p.Segments, Membership{Segment: m.Segment, EnteredAt: m.Since})
	}
	p.Recommendations = fromList(list)
	p.Scores = fromScores(scores)
	return p, nil
}

func fromList(l *recommend.List) *Recommendations {
	if l == nil {
		return nil
	}
	out := &Recommendations{Version: l.Version, Model: l.Model, UpdatedAt: l.Time.UTC(), Items: make([]RecommendationItem, len(l.Items))}
	for i, it := range l.Items {
		out.Items[i] = RecommendationItem{ProductID: it.ProductID, Score: it.Score, Reason: it.Reason}
	}
	return out
}

func fromScores(s *recommend.Scores) *Scores {
	if s == nil {
		return nil
	}
	return &Scores{Version: s.Version, Model: s.Model, UpdatedAt: s.Time.UTC(), Orders: s.Orders, Revenue: s.Revenue,
		FirstOrderAt: timePtr(s.FirstOrder), LastOrderAt: timePtr(s.LastOrder), RecencyDays: s.RecencyDays,
		R: s.R, F: s.F, M: s.M, RFMSegment: s.RFMSegment, ExpectedOrders: s.ExpectedOrders, CLV: s.CLV,
		PAlive: s.PAlive, ChurnRisk: s.ChurnRisk, HorizonDays: s.HorizonDays, ChurnDays: s.ChurnDays}
}

// timePtr is nil for the zero time (no value), else the time in UTC.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
