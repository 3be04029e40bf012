// Package assoc learns item-to-item associations incrementally from baskets
// (orders), from each profile's basket sequence and from sessions (viewed →
// bought), keeps per-profile purchase histories, and mixes the two into
// per-profile top-K recommendations. It is the model of the future
// `recommend` processor (issue 12) and is evaluated offline by
// `cdp ml eval` (internal/ml/eval).
//
// # Model
//
// [Model] keeps two tables per item i. Bought together: n_i counts the
// baskets containing i, c_ij those containing i and j, B all baskets. From
// them come the association-rule measures of i → j (the Apriori
// vocabulary of Agrawal & Srikant):
//
//	support    = c_ij / B
//	confidence = c_ij / n_i             (an estimate of P(j | i))
//	lift       = c_ij · B / (n_i · n_j) (> 1: bought together more than by chance)
//
// and the similarities of item-based collaborative filtering, cosine
// c_ij / √(n_i n_j) and Jaccard c_ij / (n_i + n_j − c_ij). Any measure can be
// damped against popular targets by dividing by n_j^β ([Options].Damping);
// for the neighbours of one item, confidence with β = ½ ranks like the
// cosine, larger β favours niche items. A session adds the directed pairs
// viewed → bought to this table with weight [Config].SessionWeight.
//
// Bought next (sequential rules): when a profile's basket follows its
// previous one, every pair (i in the previous, j in the new basket) is
// counted, i = j included. Its confidence P(j in the next basket | i in a
// basket) is what next-basket prediction asks for: the self pair learns how
// often an item is bought again (a staple versus a one-off), the other pairs
// what tends to follow. [Model.Rule] gives support, confidence and lift for
// both tables.
//
// # Memory bound
//
// Counting every pair needs memory quadratic in the catalogue. Instead each
// table keeps at most [Config].Capacity counters (default 200) and prunes
// with the Misra–Gries frequent-items summary (Misra & Gries 1982), in its
// "reduce by the median" form (Anderson et al., "A high-performance
// algorithm for identifying frequent items in data streams", IMC 2017): when
// a new key arrives at a full table, the median counter value m is
// subtracted from every counter (the newcomer's included) and the counters
// that reach zero are dropped, so rare pairs go first and at least half the
// table is freed. Consequences, deterministic and tested (TestPruningBound):
//
//   - at most 2 × Capacity counters per item, so memory is at most
//     items × 2 × Capacity counters ([Model.MaxPairs]); BenchmarkMemory
//     measures the bytes per counter;
//   - a kept count never exceeds the true count and falls short of it by at
//     most the table's pruned total, itself at most 2·N_i/(Capacity+1), N_i
//     being the total weight offered to the table ([Model.Pruning]); so a
//     pair whose true share of N_i exceeds 2/(Capacity+1) is always kept;
//   - counts do not depend on the order of items within a basket: each
//     basket is applied in a canonical order (by item hash).
//
// Baskets larger than [Config].MaxBasketItems (default 100) count pairs
// among a deterministic pseudo-random subset of that many items, chosen by
// a hash of the basket's contents: a wholesale order of 500 lines would cost
// 250,000 updates while saying little about which items go together; n_i
// still counts every item. Per-profile state is [History]: at most
// [HistoryConfig].MaxItems items (default 200) and the last basket.
//
// # Histories and recommendations
//
// [History] keeps, per profile, each bought item's number of baskets, last
// purchase time and decayed count with half-life [HistoryConfig].HalfLife
// (weight 2^(−age/half-life) per purchase), and the decayed number of
// baskets W. For a profile at query time, with w_i the decayed count of item
// i and u_i = w_i / W its decayed share of the profile's baskets:
//
//	repeat(j)   = u_j                                  (0 if never bought)
//	next(j)     = Σ_i u_i · P(j in the next basket | i) / Σ_i u_i
//	together(j) = Σ_i u_i · sim(i, j) / Σ_i u_i        (sim: Options.Measure)
//	score(j)    = Mix.Repeat·repeat(j) + Mix.Next·next(j) + Mix.Together·together(j)
//
// [Model.Recommend] returns the K best, filled with the most popular items
// when fewer candidates exist. The scores are shares and probabilities, so
// they compare across profiles and the mix means the same for a profile with
// two baskets as for one with two hundred. Only ratios of the mix weights
// matter; Repeat alone is buy-again. A repeat item is one in the profile's
// history, an explore item one that is not; each [Rec] says which.
// ExcludeBought drops repeat items for catalogues where buying twice makes
// no sense. The defaults ([DefaultOptions]) were tuned on the UCI Online
// Retail validation split, where repeat purchases dominate and the next-basket
// table adds most (README, "Machine learning (offline evaluation)").
//
// # Cost
//
// AddBasket with n items costs O(n²) counter updates (n ≤ MaxBasketItems),
// a transition O(n_prev · n), pruning an amortised O(log Capacity) per
// update; a query costs O(h · Capacity) for h history items.
// BenchmarkAddBasket and BenchmarkRecommend measure them. Neither Model nor
// History is safe for concurrent writes; concurrent reads (queries) between
// writes are safe. The processor owns one per partition and serialises
// access.
package assoc
