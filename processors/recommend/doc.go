// Package recommend is the recommend processor (`cdp run recommend`): it
// reads resolved events (cdp.events.resolved, keyed by profile id), learns
// item associations online from orders and sessions (internal/ml/assoc),
// keeps every profile's top-K recommendations and customer scores (RFM
// with internal/ml/rfm, lifetime value and churn risk with internal/ml/clv)
// in Redis, and emits them on cdp.recommendations and cdp.profiles.scores
// when they change. A Reader is the read API.
//
// # Per-partition state and global models
//
// The runtime (internal/processing) gives the processor a task per input
// partition and journals each task's effects; but the associations and the
// score models are global: learned from every partition's orders. The
// processor therefore splits its state in two.
//
// Per-profile state is per partition and journaled: a profile's purchase
// history and order summary, its session's views, its current list and its
// current scores live in hash-tagged keys of its input partition and are
// written by the task in the same atomic step as the journal entry, so they
// hold each event's effect exactly once across crashes and rebalances.
//
// The global models are a replicated, read-only state that every instance
// builds for itself, like Kafka Streams' GlobalKTable. Each order a task
// processes is also written, in the same Kafka transaction, to a changelog,
// recommend.orders, with what the models learn from: the basket, the
// profile's previous basket (for the next-basket table), the session's views
// before the order (viewed → bought), and the profile's order summary after
// it (for the customer base). Every instance reads the whole changelog from
// its start, read_committed, into its Shared state: the assoc.Model and a
// bounded sample of the customer base, on which a refit loop fits the score
// models every RefitInterval. At start the instance waits until the
// changelog as it was is applied before processing input, so a restart
// rebuilds the models from Kafka (no snapshot; see Limits).
//
// Why a changelog rather than each instance reading the whole input topic:
// transitions and sessions need each profile's previous basket and recent
// views, which is exactly the per-partition state the tasks already keep
// (and journal), while a reader of the whole input would need it for every
// profile of every partition, unbounded; and the changelog holds only
// orders (1–2% of events), so N instances do not decode the whole input N
// times.
//
// # What is deterministic, and what is not
//
// A function of each partition's input alone, identical after any crash and
// whatever the number of instances (TestCrashRestartEqualsUninterrupted
// checks it): the orders changelog (each order exactly once, with the same
// items, previous basket, session views, event time and summary), every
// profile's stored history, summary and session, and the raw measures of
// its scores (orders, revenue, first and last order).
//
// Not deterministic: what the global models know when a task uses them.
// They learn an order only after its transaction commits and the instance
// reads it back (about a poll interval later), instances read the
// changelog's partitions in different interleavings (the association
// tables prune by Misra–Gries, whose kept counts depend on the order, within
// the bounds assoc documents), and each instance refits on its own clock.
// So the content of a list or of scores, and how many versions a profile's
// list goes through, depend on timing. What does not depend on it, and the
// crash test checks: each emitted record is emitted exactly once, a
// profile's records carry versions 1, 2, 3, … without gap or repeat, and the
// last one is what Redis holds.
//
// # Refreshes and sweeps
//
// A profile's list is recomputed after every batch that holds a product
// view (Product Viewed, Clicked or Added) or an order (Order Completed) of
// it, with the current associations: so within a batch's latency of the
// event (milliseconds; TestRefreshWithinTwoSeconds measures it), well within
// the 2 s target. Other events change nothing. A list is stored and emitted
// only when its items, their order or their reasons change; scores move
// with every order anyone places and do not count as a change. Scores are
// recomputed after each order of the profile.
//
// Each refit starts a generation (Shared.Generation). Every task then
// sweeps its partition, a chunk of SweepChunk profiles per timer firing:
// each list is recomputed with the latest associations as of the profile's
// latest event (so only what the model learned shows), and each buyer is
// rescored with the new fit as of the fit's time. Lists computed while the
// associations still knew little (a backlog processed from scratch) catch
// up this way, and scores age. The sweep's progress (generation, HSCAN
// cursor) is journaled with each chunk's effects. An instance sweeps about
// 8,400 profiles/s (BenchmarkSweep, loaded machine), so a sweep of a
// million profiles takes two minutes; a generation that comes before the
// sweep ended restarts it.
//
// # Recommendations
//
// A list is assoc.Model.Recommend over the profile's history
// (assoc.History, exported and imported around each batch) with the
// session's views as context. The mix is `cdp ml eval`'s tuned one (repeat
// 1, next basket 2) plus a bought-together weight of 0.02 (DefaultMix), so
// that the views of a profile that has bought nothing steer its list; the
// recommend: section of the topology sets K, the mix and exclude_bought
// (items the profile bought are left out). Each item has a reason: repeat
// (bought before), viewed (in the current session), association (scored by
// the associations) or popular (filling a short list).
//
// # Scores
//
// From a profile's orders (Order Completed: revenue, else total, else the
// lines' sum; refunds are not subtracted) the processor keeps the order
// count, revenue, first and last order time. Time is event time in days.
//
//   - RFM: recency, frequency (orders) and monetary (revenue) quintiles
//     against the fit's customer base, as rfm.Scorer scores them (rfm's
//     quintile rule, ties sharing a score); recency ranks by the last order's
//     time, so a profile that ordered since the fit ranks above everyone. The
//     named segment is rfm.DefaultGrid's.
//   - Lifetime value: BG/NBD (x = orders − 1, t_x, T in days since the first
//     order) and Gamma-Gamma (the repeat orders' mean value), fitted by
//     maximum likelihood (internal/ml/clv) on the sample, refitted every
//     RefitInterval from the previous parameters; expected_orders is
//     E[X(T, T+365 days)] and clv that times the Gamma-Gamma expected order
//     value, undiscounted.
//   - Churn risk: 1 − P(at least one order in the next 90 days) = 1 −
//     P(alive)·P(a purchase in 90 days | alive). P(alive) alone is also
//     emitted, but BG/NBD gives every customer without a repeat order
//     P(alive) = 1 however long ago she bought; `cdp ml eval` measured P(active)
//     better calibrated on CDNOW (Brier 0.161 against 0.608).
//
// The fits use a sample of the customer base of at most MaxFitProfiles
// (5,000) profiles, chosen by hash with a threshold that halves when the
// sample outgrows the bound, so every instance that read the same changelog
// samples the same customers; a refit on 5,000 takes about 4 s of one core
// (BenchmarkFitScores). RFM needs MinFitCustomers (20) customers; BG/NBD and
// Gamma-Gamma as many repeat buyers (with fewer the likelihood is flat and
// the optimum runs off to extreme parameters); until then those fields are
// null. A scores record is emitted when an RFM score, the segment, the
// orders or the revenue change, or expected orders or lifetime value move
// by more than 1%, or P(alive) or churn risk by more than 0.01, against the
// last one emitted.
//
// # Records and Redis layout
//
// cdp.recommendations (schemas/recommendation.avsc) and cdp.profiles.scores
// (schemas/customer_scores.avsc) are keyed by profile id, compacted and
// kept forever: the latest record per profile is its current list or
// scores. List and Scores are their Go form; their JSON (the same field
// names) is what Redis holds.
//
// The state of input partition P of topic T lives under the Redis Cluster
// hash tag {recommend:T:P}, the tag of that partition's journal, with the
// key prefix of the deployment (CDP_TOPIC_PREFIX + ":"); for example
// cdp:{recommend:cdp.events.resolved:4}:rec:l. Every key is a hash from
// profile id to:
//
//	rec:l  List (JSON), the current recommendations       public: Reader.Recommendations
//	rec:s  Scores (JSON), the current scores              public: Reader.Scores
//	rec:n  "version:time:hash" of the current list        internal
//	rec:h  history and order summary (JSON)               internal, buyers only
//	rec:v  the session's views (JSON)                     internal
//	rec:w  (not per profile) the sweep's generation and cursor
//
// TestPipelineOnRedisCluster runs the pipeline test on a three-node Redis
// Cluster.
//
// A reader finds P from the profile id the way the producer of the input
// partitioned it (Kafka's murmur2 of the key, franz-go's and the Java
// client's default), which is what Reader does:
//
//	rd, err := recommend.OpenReader(ctx, svc, rdb) // asks Kafka for the partition count
//	list, err := rd.Recommendations(ctx, profileID) // nil, nil: no list yet
//	scores, err := rd.Scores(ctx, profileID)        // nil, nil: never ordered, or not scored yet
//
// # Memory
//
// Per profile, in Redis, measured by TestPipeline (MEMORY USAGE, generated
// traffic): a list 835 bytes, its digest 71, scores 598 (buyers), history
// and summary 450 (buyers; at most assoc.HistoryConfig.MaxItems = 200
// items), session 226 (at most MaxViews = 20 views): about 1.5 KB per
// profile that viewed or bought. Nothing per profile expires (see Limits).
//
// Per instance, in memory: the associations hold at most items × 2 ×
// assoc.Config.Capacity (200) counters of about 40 bytes (assoc's
// BenchmarkMemory), so 64 MB for a 4,000-item catalogue however many
// orders; the customer sample at most MaxFitProfiles summaries; a task only
// its current batch.
//
// # Limits
//
//   - The changelog is kept forever (the models are rebuilt from it at every
//     start: 18,900 orders/s measured by BenchmarkRebuild on a loaded
//     machine); there is no snapshot yet, so a start after ten million
//     orders takes about ten minutes. `cdp run` serves /healthz only once
//     the rebuild is done: the Kubernetes startup probe's 300 s
//     (deploy/kubernetes/recommend.yaml) cover about 5 million orders.
//   - Raising the input's partition count moves profiles to other
//     partitions, whose tasks do not have their state: as with any
//     partitioned state store, reset the processor (docs/OPERATIONS.md).
//   - Sessions and lists of profiles that never come back stay in Redis.
//   - Identity merges are not folded: after a merge the survivor's events
//     build on the survivor's own history, and the merged profile's state
//     stays. docs/design/features.md describes the fold topic that would
//     carry it across.
//   - Each instance's models, and so its lists and scores, differ slightly
//     from another instance's at the same moment (see above).
//
// # Metrics
//
// Besides the runtime's cdp_* metrics: cdp_recommend_model_orders, _items,
// _pairs and _lag_records (the instance's associations and how far it is
// behind the changelog), cdp_recommend_refreshes_total,
// cdp_recommend_list_changes_total, cdp_recommend_score_changes_total{cause},
// cdp_recommend_fits_total{outcome}, cdp_recommend_fit_duration_seconds,
// cdp_recommend_fit_customers and cdp_recommend_rescored_profiles_total.
package recommend
