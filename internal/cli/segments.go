package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/processors/features"
	"github.com/streamcdp/streamcdp/processors/segments"
)

func init() { register(newSegmentsCmd) }

func newSegmentsCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "segments",
		Short: "List segments, describe one, show sizes and the backfill's progress",
		Long: `Segments are defined in the topology's segments: section and evaluated by
` + "`cdp run segments`" + `. After a definition changes (or on the first start) the
processor backfills: it evaluates every profile of the feature store again, at
backfill_rate profiles per second per partition. These commands read the
definitions from the topology and sizes and progress from Redis.`,
	}
	cmd.PersistentFlags().StringVar(&file, "topology", "", "topology file (default: the built-in topology)")
	reader := func(cmd *cobra.Command) (*segments.Reader, func(), error) {
		topo, err := loadTopology(cmd, file)
		if err != nil {
			return nil, nil, err
		}
		svc, err := config.Load()
		if err != nil {
			return nil, nil, err
		}
		cfg, set, fcfg, err := segments.ConfigFrom(topo, svc)
		if err != nil {
			return nil, nil, err
		}
		fset, err := features.Definitions(topo)
		if err != nil {
			return nil, nil, err
		}
		rdb, err := config.NewRedis(svc.RedisURL)
		if err != nil {
			return nil, nil, err
		}
		return segments.NewReader(rdb, cfg, set, features.NewReader(rdb, fcfg, fset)), func() { rdb.Close() }, nil
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Every segment with its size and condition",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, done, err := reader(cmd)
			if err != nil {
				return err
			}
			defer done()
			sizes, err := r.Sizes(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SEGMENT\tSIZE\tCONDITION")
			for _, s := range r.Rules().Segments {
				fmt.Fprintf(w, "%s\t%d\t%s\n", s.Name, sizes[s.Name], s.Condition)
			}
			for _, name := range removed(r, sizes) {
				fmt.Fprintf(w, "%s\t%d\t(removed: its members exit during the backfill)\n", name, sizes[name])
			}
			return w.Flush()
		},
	}
	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "A segment's definition, what it reads, and its size",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, done, err := reader(cmd)
			if err != nil {
				return err
			}
			defer done()
			s := r.Rules().Segment(args[0])
			if s == nil {
				return fmt.Errorf("no segment %q; the segments are %s", args[0], segmentNames(r))
			}
			sizes, err := r.Sizes(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "segment:    %s\ncondition:  %s\nfeatures:   %s\ntraits:     %s\nactivation: %s\nsize:       %d\n",
				s.Name, s.Condition, orNone(s.Features), orNone(s.Traits), orNone(s.Activation), sizes[s.Name])
			if s.Topic != "" {
				fmt.Fprintf(out, "topic:      %s\n", s.Topic)
			}
			return nil
		},
	}
	size := &cobra.Command{
		Use:   "size NAME",
		Short: "A segment's number of members",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, done, err := reader(cmd)
			if err != nil {
				return err
			}
			defer done()
			sizes, err := r.Sizes(cmd.Context())
			if err != nil {
				return err
			}
			if r.Rules().Segment(args[0]) == nil && sizes[args[0]] == 0 {
				return fmt.Errorf("no segment %q; the segments are %s", args[0], segmentNames(r))
			}
			fmt.Fprintln(cmd.OutOrStdout(), sizes[args[0]])
			return nil
		},
	}
	var wait bool
	status := &cobra.Command{
		Use:   "status",
		Short: "The backfill's progress per partition (--wait: a progress bar until it is done)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, done, err := reader(cmd)
			if err != nil {
				return err
			}
			defer done()
			if !wait {
				st, err := r.Status(cmd.Context())
				if err != nil {
					return err
				}
				return printStatus(cmd.OutOrStdout(), st)
			}
			return waitBackfill(cmd, r)
		},
	}
	status.Flags().BoolVar(&wait, "wait", false, "show a progress bar until every partition is backfilled")
	cmd.AddCommand(list, describe, size, status)
	return cmd
}

func removed(r *segments.Reader, sizes map[string]int64) []string {
	var out []string
	for name, n := range sizes {
		if n != 0 && r.Rules().Segment(name) == nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func segmentNames(r *segments.Reader) string {
	var names []string
	for _, s := range r.Rules().Segments {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ", ")
}

func printStatus(out io.Writer, st []segments.PartitionStatus) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PARTITION\tBACKFILL\tSCANNED\tSTARTED")
	for _, p := range st {
		state := "running (or not started: is cdp run segments up?)"
		if p.Done {
			state = "done"
		}
		started := "-"
		if !p.Started.IsZero() {
			started = p.Started.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%d\t%s\t%d\t%s\n", p.Partition, state, p.Scanned, started)
	}
	return w.Flush()
}

func waitBackfill(cmd *cobra.Command, r *segments.Reader) error {
	ctx := cmd.Context()
	total, err := r.StoreProfiles(ctx)
	if err != nil {
		return err
	}
	bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription("backfilling segments"), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("profiles"), progressbar.OptionThrottle(200*time.Millisecond))
	for {
		st, err := r.Status(ctx)
		if err != nil {
			return err
		}
		var scanned int64
		done := true
		for _, p := range st {
			scanned += p.Scanned
			done = done && p.Done
		}
		if done {
			_ = bar.Finish()
			fmt.Fprintln(cmd.ErrOrStderr())
			return printStatus(cmd.OutOrStdout(), st)
		}
		_ = bar.Set64(min(scanned, total))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
