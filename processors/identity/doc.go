// Package identity is the core of the identity processor: the identity
// graph of one space in Redis. The processing runtime feeds it batches of
// raw events (Graph.Resolve) and publishes what comes back: the profile of
// each event, the merges it caused, the identifiers it refused.
//
// # Model
//
// A profile holds identifiers (user_id, anonymous_id, email, phone,
// device_id, custom types), each normalised (Normalize) and in at most one
// profile. An event's identifiers all end up in one profile: when they are
// in several, the profiles merge and the oldest survives. "Oldest" is the
// creation order, a counter in Redis, so a replay of the same events in the
// same order gives the same survivor.
//
// A profile id is 16 characters of base32 (80 bits) of SHA-256 over the
// space and the creating event's highest-priority identifier. Deterministic,
// so a graph rebuilt from Kafka names its profiles as before; in the rare
// case of two ids colliding the second gets a "-1" suffix, decided inside
// the atomic script and so deterministic too. Because the id is a hash of
// an identifier, whoever knows the space name can test whether an email
// created a profile: the ids are pseudonymous, not anonymous.
//
// A merged-away profile's id stays in the identifier table as an alias
// entry ("@:<id>") that moves with the other identifiers at every later
// merge. Aliases are therefore flat: any profile id, merged or not,
// resolves in one step, and no chain, so no cycle, can form.
//
// # Rules and merge protection
//
// Identifiers are taken in priority order (Rules.Priority). The event goes
// to the profile of its highest-priority identifier that has one; each
// further identifier joins if the combined profile stays within every
// per-type limit (Rules.Limits), otherwise it is not linked and the result
// carries a Rejection (rule merge_protection for an identifier of another
// profile, limit for a new one). So two different user_ids never share a
// profile under a limit of 1, whatever order the events come in.
//
// Rules.MaxIdentifiers (default 1,000) caps a profile's identifiers of all
// types together, as one more limit (code '*' in the scripts, counted in
// the profile's ".c*" field): a flood of fresh anonymous ids stops at the
// cap, and a merge that would pass it is refused (rule profile_size). So the
// largest merge moves fewer than 1,000 identifiers: measured 3.3–4.8 ms of
// script time on a quiet day, 6–12 ms on a day the machine was about twice
// as slow (TestProfileSizeCapStopsAFlood). Placeholder values that
// identify nobody (the all-zero advertising id, "undefined", "null", "0",
// "anonymous", ...) are blocked whatever the rules say (BuiltinBlocked).
//
// # Exactly once with Kafka
//
// The processor runs on the processing runtime (internal/processing) with
// a task per raw partition. Each script call resolves a chunk of events
// and writes, atomically with the graph's changes, one step of that
// partition's journal (internal/journal): the fence and chain checks
// first, then one receipt per event (its result, or the dead-letter
// decision it came with). The journal shares the space's hash tag, so the
// call stays one atomic script on one shard. If the Kafka transaction that
// carries the outputs aborts, or the process dies before it commits, the
// runtime does not send those events to the graph again: it hands each
// record and its receipt to Replay, which rebuilds the same resolved
// event, merges (same ids) or dead letter. So the graph equals that of an
// uninterrupted run, and a decision is never taken twice: an event
// dead-lettered on the first attempt (a schema id the registry did not
// know yet, a rule since changed) is dead-lettered again on the replay,
// and a dead-lettered event leaves no dedup mark, so `cdp dlq replay`
// after a fix resolves it.
//
// Duplicates: a message id seen before whose event time lies in the same
// window-wide bucket (Rules.DedupWindow, default 24 h, aligned to the Unix
// epoch), or at most one window earlier, is a duplicate: Result.Duplicate,
// nothing changes. The runtime should pass the producer's own timestamp as
// Input.Time, so a retried copy has the very time of the original; a copy
// whose time is earlier than the original's across a bucket boundary is
// not recognised.
//
// # Keys
//
// Every key starts with prefix + "{" + space + "}:" (default
// "cdp:{default}:"), then:
//
//	m          hash   graph counters and the identifier table's shape:
//	                  n0 initial buckets, f load factor, l level, s split
//	                  pointer, n entries, c profiles created, np live
//	                  profiles, ni identifiers
//	b<N>       hash   identifier table bucket N: 12-byte digest of an
//	                  identifier (SHA-256) or of a profile id (SHA-1, as Lua
//	                  can compute it) -> profile id
//	p<id>      hash   a live profile: digest -> "code:value" for each
//	                  identifier and "@:<id>" for each alias, ".c<code>" ->
//	                  count per type, ".n" -> creation number
//	g<N>       hash   dedup bucket N (event time / window): l level, s
//	                  split pointer, n message ids, x expiry (Unix ms);
//	                  created with the bucket's first write; it and all of
//	                  the bucket's keys expire at x, 3 windows later
//	h<N>:<H>   hash   dedup key of bucket N holding the message ids whose
//	                  digest's first 24 bits (h) start at H: 12-byte digest
//	                  of the message id -> "<seconds into the bucket>:<the
//	                  event's position in its chunk>" (older values: the
//	                  seconds alone), and "~" -> a sentinel over 64 bytes
//	                  that keeps the hash out of the listpack encoding,
//	                  whose lookups scan every field
//	d<N>:<S>, e<N>    the fixed dedup layout of stops 17-19 (shard S = h
//	                  mod Rules.DedupShards, and a bitmap): no longer
//	                  written, still read while e<N> lives (Dedup at volume)
//	j:identity:<topic>:<partition>:{m,x,w,s}
//	                  the partition's journal (internal/journal): epoch,
//	                  applied offset, receipts not yet committed
//
// Type codes keep stored identifiers short: u user_id, a anonymous_id,
// e email, p phone, d device_id; custom types are stored under their name.
//
// The identifier table is spread over buckets by linear hashing: when the
// table holds more than f (40) entries per bucket, the next bucket in turn
// is split in two. Buckets so stay small enough for Redis' compact listpack
// encoding (hash-max-listpack-entries, 512 by default) at any graph size,
// where one big hash would cost about 60 bytes more per identifier and
// block Redis while rehashing.
//
// # Redis Cluster
//
// A merge reads and writes identifiers and profiles that could be anywhere
// in the graph, and a script may only touch keys of one hash slot. So the
// hash tag is the space: all of a space's keys live in one slot, on one
// shard, and every script call is atomic there. A call declares the
// partition's four journal keys and the space's counter key; the bucket,
// profile and dedup keys it touches depend on what it reads (the linear
// hash's level, the profiles an identifier points to), so it cannot name
// them before it runs; it derives them from the counter key's prefix, and
// Redis allows that because they hash to the declared keys' slot. The
// pipeline, crash and bad-input tests pass on a three-node cluster
// (TestPipelineMatchesTruthOnRedisCluster, TestCrashRestartOnRedisCluster).
// CDP_IDENTITY_REDIS_URL gives the graph a Redis (or cluster) of its own,
// so that its scripts never queue behind the feature store's.
//
// # Capacity, and the way past one shard
//
// One space's graph is bounded by one shard's memory and one Redis thread.
// Measured on this project's 2-core machine: about 200 B per identifier with
// its share of dedup (143 B of graph, 69 B per event of dedup kept for up
// to three windows), 9–16 µs of Redis CPU per event with the stack's
// append-only file (appendfsync always), so a shard serves 50k–65k events/s
// and a 25 GB shard holds about 130 million identifiers with a day of dedup
// at 10M events. More spaces (tenants, brands, regions) spread over shards
// by their tags.
//
// A single space larger than one shard would be partitioned, as Kafka
// Streams co-partitions state (designed here, not built): identifiers are
// sharded by the hash of their digest into S shards, each shard its own
// slot and its own task; an event is routed by its highest-priority
// identifier to that shard's task through a repartition topic keyed by the
// shard. A task resolves the identifiers it owns; those owned by other
// shards are looked up (read-only, stale reads are safe because profiles
// only ever merge) and any merge with a profile homed elsewhere is sent as
// a merge request through a second repartition topic to the owner of the
// younger profile, which moves its identifiers and answers with the move.
// Costs: one or two extra Kafka hops (a few ms each) for the events that
// touch more than one shard, which for e-commerce traffic is the sign-in
// event of a session (a few percent); and merges become asynchronous, so
// for a moment two profiles of one person coexist, which the merge record
// already tells downstream about. Profile ids stay deterministic.
//
// # Measured
//
// On the 2-core build machine with Redis 7.0 on the same machine
// (TestMemoryPerIdentifier, BenchmarkResolve; see the README for the
// commands), with realistic shapes (36-character anonymous and device ids,
// 35-character emails):
//
//   - memory, 100k identifiers in 20k profiles: identifier table 49 B and
//     profiles 94 B per identifier, 143 B in all (716 B per profile of five
//     identifiers); dedup 69 B per event in the window (keys that split,
//     1M events; 56–59 B in the fixed 256 keys before stop 20, 21 B as
//     listpacks, see below); INFO used_memory
//     grew 187 B per identifier including the dedup entries of the 60k
//     events that built the graph.
//   - throughput, the processor end to end on generated traffic
//     (BenchmarkIdentityPipeline: 200k events, 6 partitions, 2 instances, the
//     stack's Redis with appendfsync always): 40k–81k events/s in single runs,
//     as the machine's phase goes (7–17 µs of script time per event for the
//     same work). Medians of five (stop 20, dedup keys that split by
//     themselves; series on fresh stacks, single and Cluster runs
//     interleaved): single Redis 70.1k, 70.4k, 76.4k, 55.2k, 53.4k; Cluster
//     (whose graph lives on one of its three nodes) 70.9k, 71.9k, 71.4k,
//     60.6k, 52.0k: above the 50k target in every series, by 4–7% in the last
//     two, run as the machine slowed. Alternating with the stop-19 code on one
//     stack the new layout gained about 10% (single 75.0k–77.3k against
//     64.7k–71.2k; Cluster 62.5k–69.0k against 58.5k–61.3k), with 9–12% fewer
//     Redis instructions in the script. Stop 19's medians, in six series each:
//     single Redis 48.6k–68.8k, Cluster 45.1k–57.0k. A task overlaps its own
//     work with the script call in flight (Process): it decodes and prepares
//     the next chunk, and encodes the last chunk's outputs, while Redis runs a
//     chunk. With one instance that took the pipeline from 38k–53k to 51k–60k
//     events/s (alternating runs); with two, whose calls already overlapped
//     each other, the gain is within the noise. Redis' CPU is then 60–75%
//     busy: what is left is the time no call is queued (a poll's first chunk
//     being prepared, commits) and fsync. Cluster mode costs Redis 2.7% more
//     instructions on the same traffic (each redis.call's keys are checked
//     against the node's slots: getNodeByQuery, keyHashSlot;
//     scripts/redis-callgrind.sh with REDIS_CALLGRIND_CLUSTER=1); its runs
//     spent 7% more script time per event than the single runs beside them.
//     The script code before stop 18 spends 12–25% more script time per event.
//     An event of a known customer costs a lookup per identifier, most of them
//     cached for the chunk, no write, and its share of dedup. What made the
//     difference (from 30 µs of script time per event): EXPIRE once per dedup
//     key instead of once per event (a third of the time), dedup read and
//     written once per key and chunk, 256 dedup shards by default instead of
//     16,384, chunks of 1,000 events, half as many script arguments, and dedup
//     keys made hash tables from their first write (Redis keeps a hash of up
//     to 512 short fields as a listpack searched field by field: a quarter of
//     the instructions), and at stop 20 dedup keys that split as a window
//     fills (Dedup at volume: a chunk touches 16 keys at this volume instead
//     of about 250; 52.4k instructions of Redis per event against 58.3k on
//     this traffic, callgrind, 200k events). BenchmarkResolveTraffic measures
//     the script alone on the same traffic; run under callgrind
//     (CDP_TRAFFIC_EVENTS for a shorter run) it counts Redis' instructions per
//     event, a measure the machine's noise does not move.
//
// # Dedup off the graph's shard (designed, not built)
//
// Dedup is 41% of the script's instructions and touches no graph key, so
// it could run on another shard, in parallel with the graph, if it did not
// need the graph step's journal. It does not need it if a mark records the
// position of its writer (partition and offset) rather than only its time:
// an event is a duplicate when its id is marked by another position, and a
// replay after a crash finds its own mark and decides the same. A separate
// script would then check and mark a chunk's ids (in their own slot, or one
// slot per group of dedup shards) before the graph script runs without
// them; a zombie writer marks what the new owner would mark, the same
// positions. Costs: a second call per chunk, marks a few bytes longer, and
// on single Redis no gain; on a Cluster the graph's node would lose about
// 40% of its work.
//
// # Dedup at volume
//
// A bucket spreads its message ids over keys by linear hashing on h, the top
// 24 bits of their digest (resolve.lua): at level l with split pointer s it
// has 2^l + s keys, and when it holds more than Rules.DedupKeyIDs (2,000)
// ids per key on average, key s splits in two, its upper half of ids moving
// to a new key. So a key holds about 2,000 to 4,000 ids at any volume, and
// expiries free small keys one at a time (the local stack runs Redis with
// lazyfree). A key is named by its lowest h, so that a chunk's ids, sorted
// by digest, fall into each key as one run: one HMGET and one HSET per key a
// chunk touches. A bucket starts with the layout its predecessor reached,
// and at least 16 keys: a split moves ids (about 8k instructions of Redis
// per id moved, callgrind; a call of 1,000 events that splits a key took
// 18.6 ms against 12.9 ms without, medians of one run filling a window to
// 600k ids), and traffic changes little from one window to the next. A key
// comes into being with its first id and its bucket's expiry (a lookup reads
// the sentinel with the ids, so it knows), and so a large layout costs
// nothing until it fills. Before stop 20 a window had a fixed 256 keys
// (Rules.DedupShards): a chunk then touched about 250 of them at any volume,
// and its calls were a third of the script's time. The new layout takes
// 9–12% fewer Redis instructions in the script on the benchmark's traffic
// (callgrind: 8.34G against 9.18G for 200k events, 1.63G against 1.86G for
// 40k). An upgraded graph still reads the old keys of a bucket while its
// bitmap e<N> lives (TestDedupReadsTheFixedLayoutOfBefore), so an upgrade
// forgets no id. Measured (TestDedupKeysStayBounded: 1M events of one
// window): 500 keys, the largest holding 4,031 ids, 69 B per event. A bucket
// is kept for up to three windows, so with the 24 h default window:
//
//	events/day   dedup keys   memory
//	1M           500          ~210 MB
//	100M         50,000       ~21 GB
//	1B           500,000      ~210 GB: more than one shard holds; shorten
//	                          the window (dedup_window: 1h is 24x less)
//
// # Persistence
//
// Redis must not evict keys (NewGraph refuses allkeys-* policies): an
// evicted bucket or profile splits people. Run it with appendonly yes and
// appendfsync always, which costs one fsync per script call (a chunk of up
// to 1,000 events), not per event. With appendfsync everysec a machine crash
// can lose the last second of writes after Kafka committed the offsets
// that made them; the journal notices (its steps are chained) and the
// runtime repairs the graph from the raw topic, with the outputs, which
// are in Kafka already, suppressed.
package identity
