// Package features is the features processor (`cdp run features`): per
// profile, the windowed features and traits of the topology's `features:`
// section, kept in Redis, evaluated at read time, folded exactly on merges,
// and every change emitted on cdp.profiles.changes.
//
// # The engine
//
// State and Engine (state.go) hold a profile's features as time buckets
// (see the definition package for the window semantics and their error
// bound), distinct values exactly up to a limit and then as a sliding
// HyperLogLog (hll.go), bounded top-k counts, first/last values with a
// deterministic tie-break, and traits with the event time that set them.
// Every part folds commutatively, so applying a profile's events in any
// order, and folding merged-away profiles into the survivor in any order,
// gives the same values at any read time from the profile's latest event
// minus the allowed lateness. The property tests check this against a
// brute-force reference that keeps every event (reference_test.go), at the
// engine level and through Kafka and Redis.
//
// Each profile has a Clock: the latest event time applied or window expiry
// evaluated. A change (an event, a merge or an expiry that changed a value)
// lists the features and traits whose values at the Clock before differ from
// those at the Clock after, and carries the profile's version (+1 per
// change). Each change therefore continues the one before: a consumer that
// applies a profile's changes in version order holds its current values,
// and the tests check exactly that. A window that falls without an event is
// a change too (cause expiry): after every step, each touched profile gets
// a runtime timer at Engine.NextChange, the first time one of its buckets
// leaves a window, and OnTimer moves its Clock there.
//
// # Tasks, state and exactly-once
//
// The resolved topic is keyed by profile id, so partition k holds every
// event of the profiles that hash to k. The processor consumes it together
// with an internal fold topic with as many partitions (cdp.features.fold),
// and the group uses the range balancer, so partition k of both goes to one
// member: its two tasks share a partStore, the decoded profiles of
// partition k (a bounded LRU) and a lock that serializes their steps.
//
// Redis holds each partition's profiles in one hash (internal/keyspace), under a
// hash tag shared by the partition's two journals. A step of up to
// StepRecords records computes the new states of the profiles it touches on
// copies, then one script (features.lua) checks the journal's fence and
// chain, writes the changed states, and writes one receipt per record that
// had outputs: the outputs themselves (changes, fold records, dead
// letters). Only then are the copies installed in the cache; a failed
// script empties it. A record whose step is in Redis but not committed in
// Kafka is not applied again: Replay emits its receipt. Crash tests SIGKILL
// `cdp run features` repeatedly and compare Redis and the change topic with
// an uninterrupted run.
//
// # Merges
//
// A merge L→S concerns two partitions (L's and S's). It travels:
//
//  1. merges topic (keyed by S) → the merge task forwards it to the fold
//     topic keyed by L;
//  2. L's fold task replaces L's state by a tombstone (L → S) and sends L's
//     state to the fold topic keyed by S; events of L that arrive later (they
//     were resolved before the merge) meet the tombstone and are sent on to
//     S as fold records too;
//  3. S's fold task folds L's state into S (Engine.Fold) and emits one
//     change for S (cause merge, merged_from L), or sends it on if S was
//     itself merged away meanwhile (chains L→S→T).
//
// Each hop is a Kafka transaction of the runtime, so nothing is lost or
// applied twice, and because folding is exact the order in which merges
// and events meet does not matter. Tombstones stay (tens of bytes each) so
// that late events of a merged-away profile still find their survivor; the
// Reader follows them.
//
// # Ordering of changes
//
// Changes are keyed by profile id and, within one task, in version order.
// A survivor's changes come from two tasks (events and their expiries from
// the resolved task, merges and forwarded events from the fold task);
// within one transaction, and when a crash makes both replay, the two
// tasks' outputs may reach the topic in either order. Each version appears
// exactly once; a consumer that needs the order applies changes by version
// (the segments processor holds a change until the one before it came).
//
// A timer is set by the task that moved the profile's Clock; a profile
// touched by both tasks has a timer in each, and the one that finds the
// Clock already past its time is dropped.
//
// # Reading
//
// Reader.Profile returns a profile's features at a read time (following
// merges to the survivor), and NextChange the first time a window value
// changes without an event, from which segments schedule their timers.
//
// # Memory
//
// With the default feature set and generated e-commerce traffic, a profile
// takes about 356 bytes in Redis, hash overhead included (see the README for
// the measurement); a sliding window keeps at most its bucket count of
// buckets, a distinct count at most Limit values before its sketch, and a
// sketch at most a few pairs per register (256 registers).
package features
