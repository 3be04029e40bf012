// Package generate produces deterministic synthetic e-commerce traffic in the
// JSON form of docs/EVENT_JSON.md, together with a ground-truth file that
// later stages (identity resolution above all) are scored against.
//
// # Model
//
// N persons each own 1–4 devices (web browsers and iOS/Android apps). A device
// has a context.device.id for its whole life and a current anonymousId, which
// changes when an app is reinstalled or a web user signs out (the library's
// reset()), so a device can carry several anonymousIds over time — exactly the
// case device ids exist for. About half of the persons have an account
// (userId) and sign in on some of their devices; every person has an email
// (some two) and some a phone, revealed in identify traits when signing in,
// in an anonymous identify on guest checkout or newsletter sign-up, or in
// context.traits on checkout events. The same email is written with different
// capitalisation on different devices, phones in different layouts.
//
// Sessions arrive as a Poisson process whose intensity follows daily and
// weekly rhythms (evening and weekend peaks). A session is a landing view,
// product browsing (page or screen views plus Product Viewed, with products
// drawn from a Zipf popularity over the catalogue), cart adds and removals,
// Cart Viewed, Checkout Started and Order Completed; a few orders are refunded
// days later by the order system (a server-side track carrying userId, or the
// ordering device's anonymousId and the email for guests).
//
// # Noise
//
// On top of the clean traffic the generator injects, at requested shares of
// the output and at random places:
//   - late events: a device event held back and delivered after the device's
//     next event, so its timestamp is earlier than that of the previous event
//     of the same device; sentAt shows the delay, so skew correction keeps its
//     true time;
//   - duplicates: a byte-identical copy of an earlier line, as a producer
//     retry after a lost acknowledgement writes it;
//   - invalid events: a copy of a real event with a fresh messageId, broken in
//     one way (track without event name, no identifier at all, timestamp in
//     1970 or 2100 while sentAt/receivedAt are right, larger than 32 KB).
//
// A small share of devices also has a wrong clock (timestamp and sentAt off
// by the same amount); their events are valid once corrected as
// timestamp = receivedAt − (sentAt − timestamp).
//
// # Determinism
//
// Everything is drawn from math/rand/v2 PCG streams seeded from Config.Seed;
// no map is iterated unsorted and no wall-clock time reaches the output, so
// the same Config gives byte-identical output and truth. Population,
// traffic, identifiers and noise use separate streams: with a Duration and no
// Events, changing a noise share leaves the people and their sessions
// unchanged. With Events, the session rate is steered so that exactly Events
// lines spread over Duration (running past it if the persons cannot produce
// that many), so the clean traffic shrinks as the noise shares grow.
//
// Only track, identify, page and screen calls are generated (no group or
// alias calls), all in GBP.
//
// # Ground truth
//
// The Truth lists every person with the identifiers that appear in their
// valid events (emails and phones both as written and normalised) and their
// expected counts, global counts, and the message ids of late, duplicate and
// invalid lines. It also lists knowable_groups: the connected components of
// identifiers under "appear together in one valid event". Two identifiers of
// one person are only linkable by a resolver if such a chain of events exists
// (an identify from device A with userId U links A's anonymousId to U; a
// person who never signs in on device B leaves B in a group of its own), so
// the knowable groups, not the persons, are what a perfect identity resolver
// can reconstruct. Persons never share an identifier, except devices marked
// shared (Config.SharedDeviceShare), which two persons use; a group holding
// such a device may span both persons and the truth says so.
package generate
