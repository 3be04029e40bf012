// Package profileapi is the HTTP/JSON profile API (`cdp api`): what
// personalization services read about one customer, by profile id or by
// any identifier. It owns no state. A request resolves the id through the
// identity graph (which also turns a merged-away id into its survivor, in
// one lookup: aliases are flat) and reads the survivor's features and
// traits, segment memberships, recommendations and scores through the
// processors' own readers, so values are exactly what the processors
// stored, windows evaluated at the read time. The readers' Queue methods
// put every read on one Redis pipeline: by id, the store reads go with the
// identity read on the guess that the id is the survivor (one round trip;
// a merged-away id costs a second), by identifier after it (two).
//
// Admission control bounds the /v1 requests served at once (MaxInFlight);
// beyond it a request gets 503 overloaded with Retry-After at once, so an
// overload is refused quickly rather than queued into timeouts.
//
// The identity graph decides whether a profile exists; a store that has
// not seen the profile yet (its processor lags behind identity) adds
// nothing rather than failing the request.
//
// The contract is openapi.yaml (served as /openapi.json); the tests check
// every response they provoke against it with kin-openapi and require every
// documented response of every operation to occur. Recent events come from
// an EventStore, an edge interface the warehouse will implement; without
// one the route answers 501 events_unavailable.
//
// Security: every /v1 route needs a bearer token (SHA-256 digests compared
// in constant time); without tokens the command refuses to start unless
// told --insecure-no-auth. Access logs carry the path but not the query,
// since by-identifier's query holds an email or a phone number, and name
// the client by a fingerprint of its token.
package profileapi
