package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/dlq"
)

func init() { register(newDLQCmd) }

// Headers a replayed record carries besides the original's own.
const (
	// HeaderReplayOf names the dead-letter record it came from,
	// "<dlq topic>/<partition>@<offset>".
	headerReplayOf   = "cdp.replay.of"
	headerReplayTime = "cdp.replay.time"
)

// defaultReplayGroup is the consumer group (prefix) replay records its
// progress in.
const defaultReplayGroup = "cdp-dlq-replay"

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay the dead-letter topic",
		Long: `Every record a stage could not process is kept in the dead-letter topic
(CDP_TOPIC_PREFIX.events.dlq) with its original bytes and headers naming the
reason code, the reason, the stage and where it was read. 'inspect' summarizes
them; 'replay' re-submits them after the cause is fixed.`,
	}
	cmd.AddCommand(newDLQInspectCmd(), newDLQReplayCmd())
	return cmd
}

// dlqFilter selects dead-letter entries.
type dlqFilter struct {
	Code  string
	Stage string
}

func (f dlqFilter) match(e *dlq.Entry) bool {
	return (f.Code == "" || e.Code == f.Code) && (f.Stage == "" || e.Stage == f.Stage)
}

type inspectOpts struct {
	Topic  string
	Since  time.Duration // 0: from the start
	Limit  int           // 0: all
	Show   int           // entries to list individually
	Filter dlqFilter
	Now    time.Time
}

// dlqSummary is what inspect prints, also as JSON.
type dlqSummary struct {
	Topic      string         `json:"topic"`
	Since      *time.Time     `json:"since,omitempty"`
	Read       int64          `json:"read"`       // dead-letter records read
	Matched    int64          `json:"matched"`    // of those, matching the filter
	Unreadable int64          `json:"unreadable"` // records not in the dead-letter format
	Truncated  bool           `json:"truncated"`  // --limit stopped the read
	Groups     []dlqGroup     `json:"groups"`
	Entries    []dlqEntryView `json:"entries,omitempty"`
	Problems   []string       `json:"problems,omitempty"` // why records were unreadable, first few
}

// dlqGroup is the entries of one reason code at one stage.
type dlqGroup struct {
	Code    string           `json:"code"`
	Stage   string           `json:"stage"`
	Count   int64            `json:"count"`
	First   time.Time        `json:"first"` // when the first was dead-lettered
	Last    time.Time        `json:"last"`
	Sources map[string]int64 `json:"sources"` // source topic -> count
	Reasons []string         `json:"reasons"` // a few distinct examples
	At      []string         `json:"at"`      // a few source positions, topic/partition@offset
}

type dlqEntryView struct {
	At       string    `json:"at"` // dead-letter position
	Code     string    `json:"code"`
	Stage    string    `json:"stage"`
	Reason   string    `json:"reason"`
	Source   string    `json:"source"`
	Time     time.Time `json:"time"`
	Key      string    `json:"key,omitempty"`
	Bytes    int       `json:"bytes"`
	Preview  string    `json:"preview"`
	Replayed bool      `json:"-"`
}

const (
	maxExamples = 3
	maxProblems = 5
)

func position(topic string, partition int32, offset int64) string {
	return fmt.Sprintf("%s/%d@%d", topic, partition, offset)
}

// preview shows the start of a value: as text when it is UTF-8 without
// control bytes (JSON sent by mistake), else as hex (Avro).
func preview(b []byte) string {
	const n = 48
	cut := b
	if len(cut) > n {
		cut = cut[:n]
	}
	printable := utf8.Valid(cut)
	for _, c := range cut {
		if c < 0x20 && c != '\t' {
			printable = false
			break
		}
	}
	s := fmt.Sprintf("%x", cut)
	if printable {
		s = strconv.Quote(string(cut))
	}
	if len(b) > n {
		s += "…"
	}
	return s
}

// openDLQ connects to the brokers and returns the dead-letter topic's
// stable end offsets as of now. The caller closes cl.
func openDLQ(ctx context.Context, brokers []string, topic string) (*kgo.Client, *kadm.Client, map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	adm := kadm.NewClient(cl)
	ends, err := stableEnds(ctx, adm, topic)
	if err != nil {
		cl.Close()
		return nil, nil, nil, err
	}
	return cl, adm, ends, nil
}

// inspectDLQ reads the dead-letter topic from the start (or opts.Since) to
// its end at the time of the call and groups the entries by code and stage.
func inspectDLQ(ctx context.Context, brokers []string, opts inspectOpts) (*dlqSummary, error) {
	sum := &dlqSummary{Topic: opts.Topic, Groups: []dlqGroup{}}
	cl, adm, ends, err := openDLQ(ctx, brokers, opts.Topic)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var starts map[int32]int64
	if opts.Since > 0 {
		since := opts.Now.Add(-opts.Since).UTC()
		sum.Since = &since
		starts, err = offsetsAfter(ctx, adm, opts.Topic, since)
	} else {
		starts, err = startOffsets(ctx, adm, opts.Topic)
	}
	if err != nil {
		return nil, err
	}

	groups := map[[2]string]*dlqGroup{}
	err = scanPartitions(ctx, brokers, opts.Topic, starts, ends, func(r *kgo.Record) bool {
		if opts.Limit > 0 && sum.Read >= int64(opts.Limit) {
			sum.Truncated = true
			return false
		}
		sum.Read++
		e, err := dlq.Parse(r)
		if err != nil {
			sum.Unreadable++
			if len(sum.Problems) < maxProblems {
				sum.Problems = append(sum.Problems, err.Error())
			}
			return true
		}
		if !opts.Filter.match(&e) {
			return true
		}
		sum.Matched++
		k := [2]string{e.Code, e.Stage}
		g := groups[k]
		if g == nil {
			g = &dlqGroup{Code: e.Code, Stage: e.Stage, First: e.Time, Last: e.Time, Sources: map[string]int64{}}
			groups[k] = g
		}
		g.Count++
		if e.Time.Before(g.First) {
			g.First = e.Time
		}
		if e.Time.After(g.Last) {
			g.Last = e.Time
		}
		g.Sources[e.SourceTopic]++
		if len(g.Reasons) < maxExamples && !contains(g.Reasons, e.Reason) {
			g.Reasons = append(g.Reasons, e.Reason)
		}
		if len(g.At) < maxExamples {
			g.At = append(g.At, position(e.SourceTopic, e.SourcePartition, e.SourceOffset))
		}
		if len(sum.Entries) < opts.Show {
			sum.Entries = append(sum.Entries, dlqEntryView{
				At: position(r.Topic, r.Partition, r.Offset), Code: e.Code, Stage: e.Stage, Reason: e.Reason,
				Source: position(e.SourceTopic, e.SourcePartition, e.SourceOffset), Time: e.Time,
				Key: string(e.Key), Bytes: len(e.Value), Preview: preview(e.Value),
			})
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		sum.Groups = append(sum.Groups, *g)
	}
	sort.Slice(sum.Groups, func(i, j int) bool {
		a, b := sum.Groups[i], sum.Groups[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		return a.Stage < b.Stage
	})
	return sum, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// stableEnds lists each partition's last stable offset: reading with
// read_committed reaches exactly there.
func stableEnds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	l, err := adm.ListCommittedOffsets(ctx, topic)
	return listed(l, err, topic, "end offsets")
}

func startOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	l, err := adm.ListStartOffsets(ctx, topic)
	return listed(l, err, topic, "start offsets")
}

func offsetsAfter(ctx context.Context, adm *kadm.Client, topic string, t time.Time) (map[int32]int64, error) {
	l, err := adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
	return listed(l, err, topic, "offsets after "+t.Format(time.RFC3339))
}

func listed(l kadm.ListedOffsets, err error, topic, what string) (map[int32]int64, error) {
	if err != nil {
		return nil, fmt.Errorf("listing %s of %s: %w", what, topic, err)
	}
	ps, ok := l[topic]
	if !ok {
		return nil, fmt.Errorf("topic %s does not exist (create the topics with `cdp topology apply`)", topic)
	}
	out := make(map[int32]int64, len(ps))
	for p, o := range ps {
		if errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("topic %s does not exist (create the topics with `cdp topology apply`)", topic)
		}
		if o.Err != nil {
			return nil, fmt.Errorf("listing %s of %s partition %d: %w", what, topic, p, o.Err)
		}
		out[p] = o.Offset
	}
	return out, nil
}

// scanPartitions reads topic from starts to ends (exclusive) with
// read_committed, calling fn for each data record in offset order per
// partition until fn returns false. Control records are kept so that the
// read provably reaches the end even when the last offsets are transaction
// markers.
func scanPartitions(ctx context.Context, brokers []string, topic string, starts, ends map[int32]int64, fn func(*kgo.Record) bool) error {
	from := map[int32]kgo.Offset{}
	open := map[int32]bool{}
	for p, end := range ends {
		if s := starts[p]; s < end {
			from[p] = kgo.NewOffset().At(s)
			open[p] = true
		}
	}
	if len(from) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	for len(open) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		if err := fetchErr(fs); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		stop := false
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			p := ftp.Partition
			if !open[p] || stop || len(ftp.Records) == 0 {
				return
			}
			for _, r := range ftp.Records {
				if r.Offset >= ends[p] {
					break
				}
				if !r.Attrs.IsControl() && !fn(r) {
					stop = true
					return
				}
				if r.Offset+1 >= ends[p] {
					break
				}
			}
			if last := ftp.Records[len(ftp.Records)-1]; last.Offset+1 >= ends[p] {
				delete(open, p)
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}

func fetchErr(fs kgo.Fetches) error {
	var first error
	fs.EachError(func(t string, p int32, err error) {
		if first == nil {
			first = fmt.Errorf("partition %d of %s: %w", p, t, err)
		}
	})
	return first
}

func printSummary(w io.Writer, s *dlqSummary) {
	scope := "from the start"
	if s.Since != nil {
		scope = "since " + s.Since.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s %s: %d dead-letter record(s) read, %d matching", s.Topic, scope, s.Read, s.Matched)
	if s.Truncated {
		fmt.Fprint(w, " (stopped at --limit)")
	}
	fmt.Fprintln(w)
	if s.Unreadable > 0 {
		fmt.Fprintf(w, "%d record(s) are not dead-letter records:\n", s.Unreadable)
		for _, p := range s.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
	if len(s.Groups) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "COUNT\tCODE\tSTAGE\tSOURCES\tFIRST\tLAST")
		for _, g := range s.Groups {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", g.Count, g.Code, g.Stage, sources(g.Sources),
				g.First.UTC().Format(time.RFC3339), g.Last.UTC().Format(time.RFC3339))
		}
		tw.Flush()
		for _, g := range s.Groups {
			fmt.Fprintf(w, "\n%s (%s), %d:\n", g.Code, g.Stage, g.Count)
			for _, r := range g.Reasons {
				fmt.Fprintf(w, "  reason: %s\n", r)
			}
			fmt.Fprintf(w, "  at: %s\n", strings.Join(g.At, ", "))
		}
	}
	if len(s.Entries) > 0 {
		fmt.Fprintln(w)
		for _, e := range s.Entries {
			fmt.Fprintf(w, "%s  %s  %s/%s  from %s  key=%q  %d bytes %s\n  %s\n",
				e.At, e.Time.UTC().Format(time.RFC3339), e.Code, e.Stage, e.Source, e.Key, e.Bytes, e.Preview, e.Reason)
		}
	}
}

func sources(m map[string]int64) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func newDLQInspectCmd() *cobra.Command {
	var (
		o      inspectOpts
		format string
	)
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Summarize dead-letter records by reason code and stage",
		Long: `inspect reads the dead-letter topic from the start (or --since ago) up to its
current end and prints, per reason code and stage, how many records there are,
from which source topics, a few example reasons and source positions. --show N
lists the first N records individually.`,
		Example: `  cdp dlq inspect
  cdp dlq inspect --since 1h --code missing_identifier --show 5
  cdp dlq inspect --format json | jq '.groups[] | {code, count}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			svc, err := config.Load()
			if err != nil {
				return err
			}
			if o.Topic == "" {
				o.Topic = svc.Topic("events.dlq")
			}
			o.Now = time.Now()
			sum, err := inspectDLQ(cmd.Context(), svc.KafkaBrokers, o)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			printSummary(cmd.OutOrStdout(), sum)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Topic, "topic", "", "dead-letter topic (default: CDP_TOPIC_PREFIX.events.dlq)")
	f.DurationVar(&o.Since, "since", 0, "only records dead-lettered within this long before now (e.g. 1h)")
	f.IntVar(&o.Limit, "limit", 0, "read at most this many records (0 = all)")
	f.IntVar(&o.Show, "show", 0, "also print the first N matching records")
	f.StringVar(&o.Filter.Code, "code", "", "only this reason code")
	f.StringVar(&o.Filter.Stage, "stage", "", "only this stage")
	f.StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}

type replayOpts struct {
	Topic  string // the dead-letter topic
	Code   string // only this code; progress is kept per code
	To     string // target topic; default: each entry's source topic
	DryRun bool
	Group  string // consumer group prefix
	Batch  int    // records per transaction
}

// replayResult counts what a replay did (or, dry, would do).
type replayResult struct {
	Group      string
	Read       int64            // dead-letter records read
	Replayed   int64            // re-produced (dry run: would be)
	Skipped    int64            // matching, but replayed before
	Other      int64            // not matching --code
	Unreadable int64            // not in the dead-letter format
	ByCode     map[string]int64 // replayed per code
	ByTarget   map[string]int64 // replayed per target topic
	Batches    int              // transactions committed
}

// replayGroup is the consumer group that records progress for code: one per
// code, so that replaying one code after its fix does not mark the others
// (still broken) as done, plus the bare prefix for replays of every code.
func replayGroup(prefix, code string) string {
	if code == "" {
		return prefix
	}
	return prefix + "." + code
}

// replayedBelow is, per partition, the offset below which an entry of code
// was already replayed: by a replay of all codes (group prefix) or of that
// code (prefix.code).
type replayedBelow map[string]map[int32]int64 // group -> partition -> next offset

func (rb replayedBelow) done(prefix, code string, partition int32, offset int64) bool {
	return offset < rb[prefix][partition] || offset < rb[replayGroup(prefix, code)][partition]
}

// loadReplayProgress reads the committed offsets of every replay group of
// the prefix on topic.
func loadReplayProgress(ctx context.Context, adm *kadm.Client, prefix, topic string) (replayedBelow, error) {
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing consumer groups: %w", err)
	}
	rb := replayedBelow{}
	for _, g := range lg.Groups() {
		if g != prefix && !strings.HasPrefix(g, prefix+".") {
			continue
		}
		offs, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("reading offsets of group %s: %w", g, err)
		}
		rb[g] = map[int32]int64{}
		for p, o := range offs[topic] {
			if o.Err == nil {
				rb[g][p] = o.At
			}
		}
	}
	return rb, nil
}

// replayDLQ re-produces the dead-letter entries that match opts and were
// not replayed before, to their source topic (or opts.To), with their
// original key, value and headers plus cdp.replay.of. Each polled batch is
// one Kafka transaction that also commits the batch's offsets in the
// replay group, so a crash never resends or loses an entry, and a second
// replay resends nothing.
func replayDLQ(ctx context.Context, log *zap.Logger, brokers []string, opts replayOpts) (*replayResult, error) {
	if opts.Group == "" {
		opts.Group = defaultReplayGroup
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	group := replayGroup(opts.Group, opts.Code)
	res := &replayResult{Group: group, ByCode: map[string]int64{}, ByTarget: map[string]int64{}}

	cl, adm, ends, err := openDLQ(ctx, brokers, opts.Topic)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	progress, err := loadReplayProgress(ctx, adm, opts.Group, opts.Topic)
	if err != nil {
		return nil, err
	}
	starts, err := startOffsets(ctx, adm, opts.Topic)
	if err != nil {
		return nil, err
	}
	for p, o := range progress[group] {
		starts[p] = max(starts[p], o)
	}

	// decide classifies one record and returns the record to produce, or
	// nil.
	decide := func(r *kgo.Record, now time.Time, res *replayResult) (*kgo.Record, error) {
		res.Read++
		e, err := dlq.Parse(r)
		if err != nil {
			res.Unreadable++
			log.Warn("skipping a record that is not a dead-letter record", zap.String("at", position(r.Topic, r.Partition, r.Offset)), zap.Error(err))
			return nil, nil
		}
		switch {
		case opts.Code != "" && e.Code != opts.Code:
			res.Other++
			return nil, nil
		case progress.done(opts.Group, e.Code, r.Partition, r.Offset):
			res.Skipped++
			return nil, nil
		}
		out := e.Replay(opts.To)
		if out.Topic == "" {
			return nil, fmt.Errorf("dead-letter record %s names no source topic: replay it with --to TOPIC", position(r.Topic, r.Partition, r.Offset))
		}
		out.Headers = append(out.Headers,
			kgo.RecordHeader{Key: headerReplayOf, Value: []byte(position(r.Topic, r.Partition, r.Offset))},
			kgo.RecordHeader{Key: headerReplayTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		)
		res.Replayed++
		res.ByCode[e.Code]++
		res.ByTarget[out.Topic]++
		return out, nil
	}

	if opts.DryRun {
		now := time.Now()
		var derr error
		err := scanPartitions(ctx, brokers, opts.Topic, starts, ends, func(r *kgo.Record) bool {
			_, derr = decide(r, now, res)
			return derr == nil
		})
		return res, errors.Join(err, derr)
	}

	pending := 0
	for p, end := range ends {
		if starts[p] < end {
			pending++
		}
	}
	if pending == 0 {
		return res, nil
	}
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(opts.Topic),
		kgo.TransactionalID(group), // one replay per group at a time: a second one fences the first
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka session for group %s: %w", group, err)
	}
	defer sess.Close()

	reached := map[int32]bool{}
	for p, end := range ends {
		reached[p] = starts[p] >= end
	}
	for pending > 0 {
		fs := sess.PollRecords(ctx, opts.Batch)
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("replaying %s: %w", opts.Topic, err)
		}
		if err := fetchErr(fs); err != nil {
			return res, fmt.Errorf("replaying %s: %w", opts.Topic, err)
		}
		if err := sess.Begin(); err != nil {
			return res, fmt.Errorf("beginning a transaction: %w", err)
		}
		batch := &replayResult{ByCode: map[string]int64{}, ByTarget: map[string]int64{}}
		now := time.Now()
		var (
			mu      sync.Mutex
			prodErr error
			decErr  error
		)
		hit := map[int32]bool{}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				hit[r.Partition] = true
			}
			if r.Attrs.IsControl() || decErr != nil {
				return
			}
			out, err := decide(r, now, batch)
			if err != nil {
				decErr = err
				return
			}
			if out != nil {
				sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						prodErr = errors.Join(prodErr, err)
						mu.Unlock()
					}
				})
			}
		})
		if err := sess.Client().Flush(ctx); err != nil {
			return res, fmt.Errorf("flushing replayed records: %w", err)
		}
		mu.Lock()
		failed := errors.Join(decErr, prodErr)
		mu.Unlock()
		committed, err := sess.End(ctx, kgo.TransactionEndTry(failed == nil))
		switch {
		case err != nil:
			return res, fmt.Errorf("ending the replay transaction: %w", err)
		case failed != nil:
			return res, fmt.Errorf("replay aborted, nothing of this batch was sent or recorded: %w", failed)
		case !committed:
			log.Info("replay transaction aborted (group rebalanced); retrying the batch")
			continue // the session rewound to the committed offsets
		}
		res.add(batch)
		res.Batches++
		for p := range hit {
			if !reached[p] {
				reached[p] = true
				pending--
			}
		}
		log.Info("replay batch committed", zap.Int64("read", batch.Read), zap.Int64("replayed", batch.Replayed), zap.Int("partitions_left", pending))
	}
	return res, nil
}

func (r *replayResult) add(b *replayResult) {
	r.Read += b.Read
	r.Replayed += b.Replayed
	r.Skipped += b.Skipped
	r.Other += b.Other
	r.Unreadable += b.Unreadable
	for k, v := range b.ByCode {
		r.ByCode[k] += v
	}
	for k, v := range b.ByTarget {
		r.ByTarget[k] += v
	}
}

func printReplay(w io.Writer, r *replayResult, opts replayOpts) {
	verb := "replayed"
	if opts.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(w, "%s %d of %d dead-letter record(s) read from %s", verb, r.Replayed, r.Read, opts.Topic)
	if len(r.ByTarget) > 0 {
		fmt.Fprintf(w, " to %s", sources(r.ByTarget))
	}
	fmt.Fprintln(w)
	if len(r.ByCode) > 0 {
		fmt.Fprintf(w, "  by code: %s\n", sources(r.ByCode))
	}
	fmt.Fprintf(w, "  skipped: %d replayed before, %d other codes, %d unreadable\n", r.Skipped, r.Other, r.Unreadable)
	if !opts.DryRun {
		fmt.Fprintf(w, "  progress recorded in consumer group %s (%d transaction(s))\n", r.Group, r.Batches)
	}
}

func newDLQReplayCmd() *cobra.Command {
	var o replayOpts
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-submit dead-letter records to their source topic after a fix",
		Long: `replay re-produces dead-letter records, byte for byte with their original key and
headers, to the topic they were read from (or --to), adding the header
cdp.replay.of=<dlq topic>/<partition>@<offset>. Each batch is one Kafka
transaction that also records the progress in a consumer group, so an
interrupted replay resumes where it stopped and a second replay resends nothing.

Progress is kept per --code (group cdp-dlq-replay.<code>; without --code, group
cdp-dlq-replay), and an entry replayed under either is never replayed again: fix
one cause, replay its code, and the other codes stay available for later.
Records that fail again are dead-lettered again as new entries.`,
		Example: `  cdp dlq replay --code missing_identifier --dry-run
  cdp dlq replay --code missing_identifier
  cdp dlq replay --to cdp.events.raw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := config.Load()
			if err != nil {
				return err
			}
			if o.Topic == "" {
				o.Topic = svc.Topic("events.dlq")
			}
			log := newLogger()
			defer func() { _ = log.Sync() }()
			res, err := replayDLQ(cmd.Context(), log, svc.KafkaBrokers, o)
			if res != nil {
				printReplay(cmd.OutOrStdout(), res, o)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Topic, "topic", "", "dead-letter topic (default: CDP_TOPIC_PREFIX.events.dlq)")
	f.StringVar(&o.Code, "code", "", "only records with this reason code")
	f.StringVar(&o.To, "to", "", "produce to this topic instead of each record's source topic")
	f.BoolVar(&o.DryRun, "dry-run", false, "count what would be replayed without producing or recording anything")
	f.StringVar(&o.Group, "group", defaultReplayGroup, "consumer group (prefix) recording replay progress")
	f.IntVar(&o.Batch, "batch", 500, "records per transaction")
	return cmd
}
