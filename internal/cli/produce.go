package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/producer"
)

func init() { register(newProduceCmd) }

type produceFlags struct {
	file, topic, report string
	allowInvalid        bool
	show, workers       int
}

func newProduceCmd() *cobra.Command {
	var f produceFlags
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Validate JSON-lines events, encode them as Avro and produce them to the raw topic",
		Long: `produce reads events in the JSON form of docs/EVENT_JSON.md, one per line (what
'cdp generate --out' writes), validates each with the pipeline's rules, encodes
the valid ones as Avro in the Confluent wire format and produces them, in file
order, to the raw events topic (CDP_TOPIC_PREFIX.events.raw, or --topic).

It never stops at a bad line: every invalid line is reported at the end with its
line number, reason code, field and reason (all of them as JSON lines with
--report), and nothing invalid is sent. A line without messageId gets one derived
from its bytes, so producing the same file twice gives the same ids.

Exit status: 0 when every line was sent; 1 when a line was invalid (0 with
--allow-invalid) or was not delivered.`,
		Example: `  cdp generate --events 100000 --seed 1 --out events.jsonl && cdp produce --file events.jsonl
  cdp produce --file - --report bad.jsonl < events.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runProduce(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", `JSON-lines file to read ("-" = stdin)`)
	fl.StringVar(&f.topic, "topic", "", "topic to produce to (default: the raw events topic)")
	fl.StringVar(&f.report, "report", "", "write every rejected line to this file as JSON lines")
	fl.BoolVar(&f.allowInvalid, "allow-invalid", false, "exit 0 even when lines were invalid (delivery failures still fail)")
	fl.IntVar(&f.show, "show", 20, "print at most this many rejected lines at the end")
	fl.IntVar(&f.workers, "workers", 0, "goroutines parsing and encoding (default: one per CPU)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func runProduce(cmd *cobra.Command, f produceFlags) (err error) {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	in, size, closeIn, err := openProduceInput(cmd, f.file)
	if err != nil {
		return err
	}
	defer closeIn()

	cfg, err := producer.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Topic = f.topic
	p, err := producer.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		var de *producer.DeliveryError
		if cerr := p.Close(ctx); cerr != nil && !errors.As(cerr, &de) && err == nil {
			err = cerr // delivery failures are already in the report
		}
	}()

	rep := &rejectReport{show: f.show, byCode: map[string]int64{}}
	if f.report != "" {
		rf, err := os.Create(f.report)
		if err != nil {
			return fmt.Errorf("creating report: %w", err)
		}
		defer rf.Close()
		rep.out = json.NewEncoder(rf)
	}

	bar := newProduceProgress(stderr, size)
	if bar != nil {
		in = io.TeeReader(in, bar)
	}
	res, err := p.ProduceLines(ctx, in, producer.LinesOptions{Topic: f.topic, Workers: f.workers, OnReject: rep.add})
	if bar != nil {
		_ = bar.Finish()
	}
	rep.print(stderr, res, p.Topic(), f.report)
	if rep.writeErr != nil {
		return fmt.Errorf("writing report %s: %w", f.report, rep.writeErr)
	}
	if err != nil {
		return err
	}
	switch {
	case res.Failed > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d line(s) were not delivered", res.Failed)}
	case res.Invalid > 0 && !f.allowInvalid:
		return &exitError{code: 1, err: fmt.Errorf("%d invalid line(s) were not sent (see above; --allow-invalid exits 0)", res.Invalid)}
	}
	return nil
}

func openProduceInput(cmd *cobra.Command, name string) (io.Reader, int64, func(), error) {
	if name == "-" {
		return cmd.InOrStdin(), -1, func() {}, nil
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	size := int64(-1)
	if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return fh, size, func() { fh.Close() }, nil
}

// rejectReport keeps the first rejected lines for the terminal, counts all
// by code and streams all to --report. ProduceLines serializes add.
type rejectReport struct {
	show     int
	first    []producer.LineError
	byCode   map[string]int64
	out      *json.Encoder
	writeErr error
}

func (r *rejectReport) add(e producer.LineError) {
	r.byCode[e.Code]++
	if len(r.first) < r.show {
		r.first = append(r.first, e)
	}
	if r.out != nil && r.writeErr == nil {
		r.writeErr = r.out.Encode(e)
	}
}

func (r *rejectReport) print(w io.Writer, res producer.LinesResult, topic, reportPath string) {
	fmt.Fprintf(w, "read %d lines in %s (%.0f lines/s): %d sent to %s, %d invalid, %d not delivered\n",
		res.Lines, res.Elapsed.Round(time.Millisecond), res.PerSecond(), res.Sent, topic, res.Invalid, res.Failed)
	if len(r.byCode) == 0 {
		return
	}
	codes := make([]string, 0, len(r.byCode))
	for c := range r.byCode {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if r.byCode[codes[i]] != r.byCode[codes[j]] {
			return r.byCode[codes[i]] > r.byCode[codes[j]]
		}
		return codes[i] < codes[j]
	})
	for _, c := range codes {
		fmt.Fprintf(w, "  %-20s %d\n", c, r.byCode[c])
	}
	for _, e := range r.first {
		fmt.Fprintln(w, e.String())
	}
	total := res.Invalid + res.Failed
	if more := total - int64(len(r.first)); more > 0 {
		if reportPath != "" {
			fmt.Fprintf(w, "... and %d more in %s\n", more, reportPath)
		} else {
			fmt.Fprintf(w, "... and %d more (--report FILE writes all)\n", more)
		}
	}
}

// newProduceProgress shows bytes read on a terminal; nil otherwise, so logs
// and CI get only the summary line.
func newProduceProgress(w io.Writer, size int64) *progressbar.ProgressBar {
	f, ok := w.(*os.File)
	if !ok || !generateIsTTY(f) {
		return nil
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("producing"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}
