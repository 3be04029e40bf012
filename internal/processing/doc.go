// Package processing is the runtime every StreamCDP processor runs on. It
// owns the Kafka side of exactly-once (transactions, rebalances, fencing,
// timers, batches that span polls) and gives processors a task per input
// partition, so that no processor re-invents replay safety for its store.
//
// # The guarantee
//
// A Runner is one member of a consumer group. Everything it does between
// two commits is one Kafka transaction:
//
//  1. it polls records and hands each partition's records, in offset order,
//     to that partition's Task (partitions in parallel);
//  2. the task's effects on its store are written together with a journal
//     entry (see Journal) in one atomic step, fenced by the partition's
//     epoch;
//  3. the task's outputs are produced in the transaction;
//  4. on a commit trigger (the input drained, CommitInterval, a size bound,
//     a task's request, a waiting rebalance, shutdown) every task with
//     pending work runs PreCommit, and the transaction commits the outputs,
//     the input offsets and, in the offsets' metadata, how far each
//     partition's journal got.
//
// Readers with read_committed therefore see each input's outputs exactly
// once, and a store written through the journal holds each input's effects
// exactly once. When anything fails, the transaction aborts, the consumer
// rewinds to the committed offsets, and every task that took part is closed
// and opened again from its store: nothing buffered before an abort is
// trusted. Records whose effects are already in the store (journaled but
// not committed) are not processed again: their journaled outputs are
// produced again instead (or, for a Replayer, rebuilt from its receipts).
//
// # Task lifecycle
//
//	NewTask -> Open -> (Process | OnTimer)* -> PreCommit -> ... -> Close
//
// A task is opened on the polling goroutine after its partition is assigned
// and its committed offset and metadata are fetched, and before any of its
// records is processed. Open takes the partition's fencing epoch in the
// journal, loads the journal entries that are applied but not committed,
// and checks that the store is not behind Kafka (see Repair). Close runs on
// revoke, loss, shutdown and after an aborted transaction; it must not write
// (flushing is PreCommit's job).
//
// # Rebalances and fencing
//
// Rebalances are blocked from a non-empty poll until the transaction ended
// (kgo.BlockRebalanceOnPoll), so two members never process one partition at
// once while both are alive and in the group. A member that lost its
// partitions without knowing (a paused process, a session timeout) is
// stopped by the journal's fence: the new owner's Open increments the
// partition's epoch, and every journal write checks it atomically with the
// effect. Kafka's own fence is the group generation sent with the offsets
// (KIP-447).
//
// # Timers
//
// Tasks schedule durable timers through their TaskContext: at a wall-clock
// time or at a stream time (the largest record timestamp the partition has
// seen). Timers live in the journal's store, so they move with the
// partition, and they fire in a transaction like records: the firing's
// outputs and effects are journaled with the timer's removal, so a firing
// is exactly-once too. Wall-clock timers fire within about 250 ms of their
// due time without any input traffic; stream-time timers fire when a record
// moves stream time past them.
//
// # Failures
//
// A partition whose step fails is paused and retried with exponential
// backoff while the other partitions go on. Failures are counted per record:
// the step is retried record by record, and a record that fails MaxAttempts
// times is dead-lettered with the error (never dropped). Errors marked
// Transient, and any failure while the task's store check fails, are not
// counted: a store outage pauses the partition without committing until the
// store is back. A transaction the broker timed out starts a new Kafka
// session; only a real fence (another instance with the same transactional
// id) stops the runner.
//
// # Repair
//
// If a task's journal is behind the committed offsets when it is opened (a
// Redis that lost its last writes), the runner re-reads the missing records
// from Kafka and processes them again with their outputs suppressed (they
// are already in Kafka), so the store catches up; cdp_repaired_records_total
// counts them. When Kafka no longer has those records, the partition stops
// with an error saying so.
package processing
