package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/internal/generate"
)

func init() { register(newGenerateCmd) }

// generateKafkaSink opens the sink `cdp generate` writes to when --out is not
// given (the raw events topic). It is nil until the Avro producer exists; the
// returned close function flushes and waits for every delivery.
var generateKafkaSink func(ctx context.Context) (sink generate.Sink, closeFn func() error, err error)

// generateProgressMin is the smallest run that gets a progress bar: shorter
// ones finish before a bar is worth drawing.
const generateProgressMin = 5000

func newGenerateCmd() *cobra.Command {
	cfg := generate.DefaultConfig()
	var (
		start       string
		rate        float64
		out, truth  string
		catalogFrom string
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate deterministic synthetic e-commerce traffic and its ground truth",
		Long: `Generate simulates shoppers on several devices (page and screen views, product
views, carts, checkouts, orders, refunds) with daily and weekly rhythms, and
writes their events in the JSON form of docs/EVENT_JSON.md: to a JSON-lines file
with --out (that 'cdp produce --file' accepts), or to the raw events topic.
--truth writes the ground truth: every person's identifiers, the groups of
identifiers the events make linkable, and the counts a correct pipeline must
reach. The same flags and --seed give byte-identical output.`,
		Example: `  cdp generate --persons 100 --events 5000 --seed 7 --out events.jsonl --truth truth.json
  cdp generate --persons 5000 --duration 720h --late-share 0.05 --dup-share 0.01 --invalid-share 0.01 --out - | head`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := parseGenerateStart(start)
			if err != nil {
				return err
			}
			cfg.Start = t
			if catalogFrom != "" {
				if cfg.Catalog, err = generate.LoadCatalog(catalogFrom); err != nil {
					return err
				}
			}
			return runGenerate(cmd.Context(), cfg, rate, out, truth)
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed; the same seed and flags give byte-identical output")
	f.IntVar(&cfg.Persons, "persons", cfg.Persons, "number of simulated persons")
	f.IntVar(&cfg.Events, "events", 0, fmt.Sprintf("exact number of lines to write, duplicates and invalid ones included (default %d when --duration is not set)", generate.DefaultEvents))
	f.DurationVar(&cfg.Duration, "duration", 0, "event-time span; alone, sessions start within it and the volume follows from --persons (default 168h)")
	f.StringVar(&start, "start", generate.DefaultStart.Format(time.RFC3339), "event time of the beginning of the span (RFC 3339 or YYYY-MM-DD, UTC)")
	f.Float64Var(&rate, "rate", 0, "events per second to write (wall clock); 0 = as fast as possible")
	f.Float64Var(&cfg.LateShare, "late-share", 0, "fraction of valid events delivered after a later event of the same device (at most 0.3)")
	f.Float64Var(&cfg.DupShare, "dup-share", 0, "fraction of lines that repeat an earlier line (same messageId)")
	f.Float64Var(&cfg.InvalidShare, "invalid-share", 0, "fraction of lines that are deliberately invalid")
	f.Float64Var(&cfg.SharedDeviceShare, "shared-device-share", 0, "fraction of devices also used by a second person (the only identifiers persons share)")
	f.Float64Var(&cfg.SkewedDeviceShare, "skewed-device-share", cfg.SkewedDeviceShare, "fraction of devices with a wrong clock (valid after skew correction)")
	f.StringVar(&out, "out", "", `write JSON lines to this file ("-" = stdout) instead of the raw events topic`)
	f.StringVar(&truth, "truth", "", "write the ground truth as JSON to this file")
	f.StringVar(&catalogFrom, "catalog-from", "", "build the catalogue from the UCI Online Retail *.csv.gz files in this directory")
	return cmd
}

func parseGenerateStart(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--start %q: want RFC 3339 (2026-11-02T00:00:00Z) or YYYY-MM-DD", s)
}

func runGenerate(ctx context.Context, cfg generate.Config, rate float64, out, truthPath string) (err error) {
	var (
		sink    generate.Sink
		closeFn func() error
	)
	switch out {
	case "":
		if generateKafkaSink == nil {
			return errors.New("writing to Kafka is not available in this build yet: use --out FILE (or --out - for stdout)")
		}
		if sink, closeFn, err = generateKafkaSink(ctx); err != nil {
			return err
		}
	case "-":
		ws := generate.NewWriterSink(os.Stdout)
		sink, closeFn = ws, ws.Flush
	default:
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		ws := generate.NewWriterSink(f)
		sink = ws
		closeFn = func() error {
			return errors.Join(ws.Flush(), f.Close())
		}
	}
	defer func() {
		if cerr := closeFn(); cerr != nil && err == nil {
			err = fmt.Errorf("closing output: %w", cerr)
		}
	}()

	sink = generate.Paced(sink, rate)
	// A bar on a terminal that also shows the lines would garble both.
	bar := newGenerateProgress(cfg.Events)
	if bar != nil && out == "-" && generateIsTTY(os.Stdout) {
		bar = nil
	}
	if bar != nil {
		inner := sink
		sink = generate.SinkFunc(func(ctx context.Context, line []byte) error {
			_ = bar.Add(1)
			return inner.Write(ctx, line)
		})
	}

	tr, err := generate.Generate(ctx, cfg, sink)
	if bar != nil {
		_ = bar.Finish() // clears the bar before the summary below
	}
	if err != nil {
		return err
	}
	if truthPath != "" {
		if err := writeGenerateTruth(truthPath, tr); err != nil {
			return err
		}
	}
	c := tr.Counts
	fmt.Fprintf(os.Stderr, "generated %d lines (%d valid, %d duplicates, %d invalid, %d late) for %d active persons, %d knowable groups\n",
		c.Lines, c.Valid, c.Duplicates, c.Invalid, c.Late, c.ActivePersons, c.KnowableGroups)
	return nil
}

func writeGenerateTruth(path string, tr *generate.Truth) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tr.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("writing truth: %w", err)
	}
	return f.Close()
}

// newGenerateProgress returns a bar on stderr for runs large enough to need one,
// and nil when stderr is not a terminal (logs, CI) or the run is short.
// events 0 (duration mode) has no known total and gets a spinner.
func newGenerateProgress(events int) *progressbar.ProgressBar {
	if (events > 0 && events < generateProgressMin) || !generateIsTTY(os.Stderr) {
		return nil
	}
	total := int64(events)
	if events == 0 {
		total = -1
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("generating"),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionShowIts(),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func generateIsTTY(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
