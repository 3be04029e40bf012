// Package replay reads and re-submits the dead-letter topic: Inspect
// summarizes its entries by reason code and stage, Run replays them to
// their source topic on the processing runtime (a transaction per batch,
// progress kept in a consumer group per code, so a replay never resends
// or loses an entry), and Scan reads a topic up to a snapshot of its end.
// The record format is internal/dlq's.
package replay

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/dlq"
)

// Filter selects dead-letter entries by reason code and stage (empty:
// any).
type Filter struct {
	Code  string
	Stage string
}

func (f Filter) Match(e *dlq.Entry) bool {
	return (f.Code == "" || e.Code == f.Code) && (f.Stage == "" || e.Stage == f.Stage)
}

// InspectOptions say what Inspect reads.
type InspectOptions struct {
	Topic  string
	Since  time.Duration // 0: from the start
	Limit  int           // 0: all
	Show   int           // entries to list individually
	Filter Filter
	Now    time.Time
}

// Summary is what `cdp dlq inspect` prints, also as JSON.
type Summary struct {
	Topic      string      `json:"topic"`
	Since      *time.Time  `json:"since,omitempty"`
	Read       int64       `json:"read"`       // dead-letter records read
	Matched    int64       `json:"matched"`    // of those, matching the filter
	Unreadable int64       `json:"unreadable"` // records not in the dead-letter format
	Truncated  bool        `json:"truncated"`  // --limit stopped the read
	Groups     []Group     `json:"groups"`
	Entries    []EntryView `json:"entries,omitempty"`
	Problems   []string    `json:"problems,omitempty"` // why records were unreadable, first few
}

// Group is the entries of one reason code at one stage.
type Group struct {
	Code    string           `json:"code"`
	Stage   string           `json:"stage"`
	Count   int64            `json:"count"`
	First   time.Time        `json:"first"` // when the first was dead-lettered
	Last    time.Time        `json:"last"`
	Sources map[string]int64 `json:"sources"` // source topic -> count
	Reasons []string         `json:"reasons"` // a few distinct examples
	At      []string         `json:"at"`      // a few source positions, topic/partition@offset
}

// EntryView is one entry as `cdp dlq inspect --show` lists it.
type EntryView struct {
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
	// MaxExamples bounds the reasons and positions a Group keeps.
	MaxExamples = 3
	maxProblems = 5
)

// Position names a record: "<topic>/<partition>@<offset>".
func Position(topic string, partition int32, offset int64) string {
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
	ends, err := StableEnds(ctx, adm, topic)
	if err != nil {
		cl.Close()
		return nil, nil, nil, err
	}
	return cl, adm, ends, nil
}

// Inspect reads the dead-letter topic from the start (or opts.Since) to
// its end at the time of the call and groups the entries by code and stage.
func Inspect(ctx context.Context, brokers []string, opts InspectOptions) (*Summary, error) {
	sum := &Summary{Topic: opts.Topic, Groups: []Group{}}
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
		starts, err = StartOffsets(ctx, adm, opts.Topic)
	}
	if err != nil {
		return nil, err
	}

	groups := map[[2]string]*Group{}
	err = Scan(ctx, brokers, opts.Topic, starts, ends, func(r *kgo.Record) bool {
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
		if !opts.Filter.Match(&e) {
			return true
		}
		sum.Matched++
		k := [2]string{e.Code, e.Stage}
		g := groups[k]
		if g == nil {
			g = &Group{Code: e.Code, Stage: e.Stage, First: e.Time, Last: e.Time, Sources: map[string]int64{}}
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
		if len(g.Reasons) < MaxExamples && !contains(g.Reasons, e.Reason) {
			g.Reasons = append(g.Reasons, e.Reason)
		}
		if len(g.At) < MaxExamples {
			g.At = append(g.At, Position(e.SourceTopic, e.SourcePartition, e.SourceOffset))
		}
		if len(sum.Entries) < opts.Show {
			sum.Entries = append(sum.Entries, EntryView{
				At: Position(r.Topic, r.Partition, r.Offset), Code: e.Code, Stage: e.Stage, Reason: e.Reason,
				Source: Position(e.SourceTopic, e.SourcePartition, e.SourceOffset), Time: e.Time,
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
func StableEnds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	l, err := adm.ListCommittedOffsets(ctx, topic)
	return listed(l, err, topic, "end offsets")
}

func StartOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
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
func Scan(ctx context.Context, brokers []string, topic string, starts, ends map[int32]int64, fn func(*kgo.Record) bool) error {
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
