// Package segments is the segments processor (`cdp run segments`): it
// keeps every profile's segment memberships, decided by the conditions of
// the topology's `segments:` section (package rules), and emits each
// entered/exited change within a second of the event, or of the moment a
// window falls, with no event needed.
//
// # What it reads
//
// Its only input is cdp.profiles.changes. The features processor emits a
// change for every event, merge and window fall that changed a value, and
// each change's old values are the previous change's new ones, so the
// processor keeps, per profile, a mirror of the values its conditions read
// (State.Values, State.Traits), applying the profile's changes in version
// order. A change that comes before its predecessor (a merge's and an
// event's change may swap on the topic) is held in the state until the
// predecessor comes. Time needs no timers here: "orders_90d == 0" becomes
// true when the features processor emits the expiry that takes the last
// order out of the window, at that moment (the features' runtime timers
// fire within about 250 ms of it).
//
// A profile is read from the feature store (bootstrap) when the mirror
// cannot continue from a change: its first change seen is not its first
// (the processor started after the profile had changes), or it was
// evaluated with other definitions. The store's values and version become
// the mirror, and changes up to that version are skipped.
//
// # What it writes
//
// Per partition of the changes topic, under one hash tag (internal/keyspace;
// the journal's too, so a step is one script on one Cluster shard):
//
//	<prefix>{segments:<p>:<k>}:s   hash  profile -> State (mirror, memberships, held changes)
//	<prefix>{segments:<p>:<k>}:n   hash  segment -> members in this partition
//	<prefix>{segments:<p>:<k>}:b   hash  the backfill's progress
//
// Steps are the runtime's generic ones (TaskContext.Write, journaled
// outputs), so every change and every membership record is exactly once
// (the crash test SIGKILLs `cdp run segments` and compares with an
// uninterrupted run). Each membership change goes to cdp.segments.membership
// keyed profile/segment and partitioned by the profile part (the
// processor's partitioner), so a profile's changes are in order and a
// compacted topic keeps the latest per profile and segment; to the
// segment's own topic if it has one; and, with audience_events, to
// cdp.segments.audiences as Segment's "Audience Entered"/"Audience Exited"
// track event.
//
// # Definitions that change
//
// The definitions' fingerprint is kept per partition. When it differs at
// start the task backfills on runtime timers:
// it scans the feature store's profiles of its partition, BackfillRate per
// second, and evaluates each from the store (a removed segment's members
// exit, reason "segment removed"). Progress is in the :b hash; `cdp
// segments status --wait` shows it. Profiles that change during the backfill
// are brought up to date by their own changes first. A partition's first
// start backfills only when Kafka no longer holds the changes topic from
// offset 0 (retention deleted some): otherwise the topic itself brings
// every profile, change by change, and the output does not depend on
// whether the features processor ran ahead.
package segments
