// Package eval is the offline evaluation behind `cdp ml eval` (issue 12,
// item 3): readers for the real data sets in ../shared/datasets (UCI Online
// Retail, the CDNOW sample) and the protocols that score the models of
// internal/ml against them.
//
//   - Recommendations (EvaluateRecommendations): UCI Online Retail, each
//     customer's last basket held out, prequential replay in time order,
//     tuned on the second-to-last basket; hit-rate, precision, recall and
//     MAP at K for popularity, buy-again and the assoc recommender.
//   - Lifetime value (EvaluateCLV): CDNOW, BG/NBD and Gamma-Gamma fitted on
//     39 calibration weeks and compared with the next 39 weeks and with the
//     published fits; churn risk and P(active) by decile; RFM segments.
//
// Run selects evaluations and renders a Report as text, Markdown or JSON.
// Nothing here needs Kafka, Redis or ClickHouse. The data sets are read,
// never copied.
package eval
