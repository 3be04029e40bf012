package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/internal/dlq/replay"
)

func init() { register(newDLQCmd) }

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

func printSummary(w io.Writer, s *replay.Summary) {
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
		o      replay.InspectOptions
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
			sum, err := replay.Inspect(cmd.Context(), svc.KafkaBrokers, o)
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

func printReplay(w io.Writer, r *replay.Result, opts replay.Options) {
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
		fmt.Fprintf(w, "  progress recorded in consumer group %s (%d committed batch(es))\n", r.Group, r.Batches)
	}
}

func newDLQReplayCmd() *cobra.Command {
	var o replay.Options
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-submit dead-letter records to their source topic after a fix",
		Long: `replay re-produces dead-letter records, byte for byte with their original key and
headers, to the topic they were read from (or --to), adding the header
cdp.replay.of=<dlq topic>/<partition>@<offset>. Each batch is one Kafka
transaction that also records the progress in a consumer group, so an
interrupted replay resumes where it stopped and a second replay resends nothing.

Progress is kept per --code (group <prefix>-dlq-replay.<code>; without --code,
group <prefix>-dlq-replay, where <prefix> is CDP_TOPIC_PREFIX), and an entry
replayed under either is never replayed again: fix one cause, replay its code,
and the other codes stay available for later. Records that fail again are
dead-lettered again as new entries.`,
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
			if o.Group == "" {
				o.Group = svc.TopicPrefix + "-dlq-replay"
			}
			log := newLogger()
			defer func() { _ = log.Sync() }()
			o.Logger = log
			res, err := replay.Run(cmd.Context(), svc.KafkaBrokers, o)
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
	f.StringVar(&o.Group, "group", "", "consumer group (prefix) recording replay progress (default: CDP_TOPIC_PREFIX-dlq-replay)")
	f.IntVar(&o.Batch, "batch", 500, "records per poll")
	return cmd
}
