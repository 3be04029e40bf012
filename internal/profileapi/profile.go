package profileapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/recommend"
	"github.com/streamcdp/streamcdp/processors/segments"
)

// The stores the API reads, as small interfaces so handlers can be tested
// without Redis. The processors' own readers implement them. Their Queue
// methods add a read to a Redis pipeline and return the function that
// gives its result once the pipeline has run, so that a request's reads
// share one round trip.

// Identities resolves ids and identifiers through the identity graph
// (*identity.Graph).
type Identities interface {
	Lookup(ctx context.Context, id identity.Identifier) (profileID string, ok bool, err error)
	QueueProfile(ctx context.Context, pipe redis.Pipeliner, profileID string) func() (canonicalID string, ids []identity.Identifier, err error)
	QueueProfileOf(ctx context.Context, pipe redis.Pipeliner, id identity.Identifier) func() (canonicalID string, ids []identity.Identifier, err error)
}

// Features reads feature values and traits (*features.Reader).
type Features interface {
	QueueProfile(ctx context.Context, pipe redis.Pipeliner, profile string, at time.Time) func() (*features.Profile, error)
}

// Segments reads memberships (*segments.Reader).
type Segments interface {
	QueueMembers(ctx context.Context, pipe redis.Pipeliner, profile string) func() ([]segments.Membership, string, error)
}

// Recommender reads lists and scores (*recommend.Reader).
type Recommender interface {
	QueueRecommendations(ctx context.Context, pipe redis.Pipeliner, profile string) func() (*recommend.List, error)
	QueueScores(ctx context.Context, pipe redis.Pipeliner, profile string) func() (*recommend.Scores, error)
}

// Stores are what a Service reads. Recommendations and Events may be nil.
type Stores struct {
	// Redis holds the feature, segment and recommendation stores;
	// IdentityRedis the identity graph (nil: Redis). Their pipelines carry
	// the readers' queued reads.
	Redis, IdentityRedis redis.UniversalClient
	Identities           Identities
	Features             Features
	Segments             Segments
	Recommendations      Recommender
	Events               EventStore
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
	// sameRedis: the identity graph and the stores share a Redis, so a
	// profile's reads can ride along with its identity read.
	sameRedis bool
}

// NewService returns a Service over st.
func NewService(st Stores) *Service {
	if st.Now == nil {
		st.Now = time.Now
	}
	same := st.IdentityRedis == nil || st.IdentityRedis == st.Redis
	if st.IdentityRedis == nil {
		st.IdentityRedis = st.Redis
	}
	types := map[string]bool{identity.TypeProfileID: true}
	for _, t := range st.IdentifierTypes {
		types[t] = true
	}
	return &Service{st: st, types: types, sameRedis: same}
}

// Bounds of what a request may ask for (openapi.yaml says the same).
const (
	maxIDLength    = 256
	maxValueLength = 1024
)

// ByID returns the profile id is, or was merged into. It costs one Redis
// round trip when the stores share the identity graph's Redis: the
// profile's reads go with the identity read, on the guess that id is not
// merged away; a merged-away id costs a second one for the survivor.
func (s *Service) ByID(ctx context.Context, id string) (*Profile, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	at := s.st.Now().UTC()
	pipe := s.st.IdentityRedis.Pipeline()
	ident := s.st.Identities.QueueProfile(ctx, pipe, id)
	var guess *reads
	if s.sameRedis {
		guess = s.queue(ctx, pipe, id, at)
	}
	_, _ = pipe.Exec(ctx) // every read has its own error
	canonical, ids, err := ident()
	if errors.Is(err, identity.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrProfileNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if guess == nil || canonical != id {
		guess = s.read(ctx, canonical, at)
	}
	return guess.profile(id, canonical, ids, nil, at)
}

// ByIdentifier returns the profile holding the identifier typ=value, in two
// Redis round trips: the identity graph's, then the profile's stores.
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
	at := s.st.Now().UTC()
	pipe := s.st.IdentityRedis.Pipeline()
	ident := s.st.Identities.QueueProfileOf(ctx, pipe, identity.Identifier{Type: typ, Value: value})
	_, _ = pipe.Exec(ctx)
	canonical, ids, err := ident()
	if errors.Is(err, identity.ErrNotFound) {
		// Not in the graph, or a value the rules refuse (blocked, invalid):
		// either way no profile holds it.
		return nil, fmt.Errorf("%w: no profile has %s %q", ErrProfileNotFound, typ, value)
	}
	if err != nil {
		return nil, err
	}
	return s.read(ctx, canonical, at).profile(canonical, canonical, ids, &Identifier{Type: typ, Value: value}, at)
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

// reads are one profile's queued store reads. The identity graph decides
// whether the profile exists and which profile survives; the other stores
// are read by the survivor's id, and a store that has not seen the profile
// yet (its processor lags, or the profile had no event it counts)
// contributes nothing rather than failing the request.
type reads struct {
	features func() (*features.Profile, error)
	members  func() ([]segments.Membership, string, error)
	list     func() (*recommend.List, error)
	scores   func() (*recommend.Scores, error)
}

// queue queues the reads of profile's stores on pipe.
func (s *Service) queue(ctx context.Context, pipe redis.Pipeliner, profile string, at time.Time) *reads {
	r := &reads{
		features: s.st.Features.QueueProfile(ctx, pipe, profile, at),
		members:  s.st.Segments.QueueMembers(ctx, pipe, profile),
	}
	if s.st.Recommendations != nil {
		r.list = s.st.Recommendations.QueueRecommendations(ctx, pipe, profile)
		r.scores = s.st.Recommendations.QueueScores(ctx, pipe, profile)
	}
	return r
}

// read reads profile's stores in one round trip.
func (s *Service) read(ctx context.Context, profile string, at time.Time) *reads {
	pipe := s.st.Redis.Pipeline()
	r := s.queue(ctx, pipe, profile, at)
	_, _ = pipe.Exec(ctx) // every read has its own error
	return r
}

// profile assembles the profile from the reads' results.
func (r *reads) profile(requested, canonical string, ids []identity.Identifier, by *Identifier, at time.Time) (*Profile, error) {
	p := &Profile{ProfileID: canonical, RequestedID: requested, Merged: canonical != requested, Identifier: by,
		Identities: make([]Identifier, len(ids)), Traits: map[string]json.RawMessage{}, Features: map[string]any{},
		FeaturesAt: at, Segments: []Membership{}}
	for i, id := range ids {
		p.Identities[i] = Identifier{Type: id.Type, Value: id.Value}
	}
	fp, fErr := r.features()
	if errors.Is(fErr, features.ErrNotFound) {
		fErr = nil
	}
	members, _, sErr := r.members()
	if errors.Is(sErr, segments.ErrNotFound) {
		sErr = nil
	}
	var (
		list        *recommend.List
		scores      *recommend.Scores
		rErr, scErr error
	)
	if r.list != nil {
		list, rErr = r.list()
		scores, scErr = r.scores()
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
