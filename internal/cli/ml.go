package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/internal/ml/eval"
)

func init() { register(newMLCmd) }

func newMLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ml",
		Short: "Machine learning: offline evaluation of recommendations and customer scores",
	}
	cmd.AddCommand(newMLEvalCmd())
	return cmd
}

func newMLEvalCmd() *cobra.Command {
	var (
		datasets, format, out string
		only                  []string
		o                     eval.Options
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate the recommender, BG/NBD, Gamma-Gamma, churn risk and RFM on the real data sets",
		Long: `Eval reads the research data sets (UCI Online Retail, the CDNOW sample; see
../shared/datasets/README.md) and measures, without any service running:
  recommend  hit-rate, precision, recall and MAP at K on each customer's last
             basket, for popularity, buy-again and the recommender (tuned on the
             second-to-last baskets);
  clv        BG/NBD and Gamma-Gamma fitted on CDNOW's 39 calibration weeks against
             the published fits, and predicted against actual holdout purchases;
  churn      churn risk (1 - P(alive)) and P(active) by decile against the holdout;
  rfm        RFM segments at the end of calibration against the holdout.
The datasets directory defaults to $CDP_DATASETS, else ../shared/datasets from the
repository root.`,
		Example: `  cdp ml eval
  cdp ml eval --only clv,churn --format json
  cdp ml eval --datasets /data/research --out report.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			dir, err := mlDatasetsDir(datasets)
			if err != nil {
				return err
			}
			o.Datasets, o.Only = dir, only
			if generateIsTTY(os.Stderr) {
				o.Progress = &barProgress{}
			}
			rep, err := eval.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if out != "" {
				if err := writeFileWith(out, rep.WriteMarkdown); err != nil {
					return fmt.Errorf("writing the Markdown report: %w", err)
				}
			}
			if format == "json" {
				return rep.WriteJSON(cmd.OutOrStdout())
			}
			return rep.WriteText(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&datasets, "datasets", "", "directory holding online-retail/ and cdnow/ (default $CDP_DATASETS, else ../shared/datasets from the repository root)")
	f.StringSliceVar(&only, "only", nil, "evaluations to run, comma separated: "+strings.Join(eval.Evaluations(), ",")+" (default all)")
	f.IntVar(&o.K, "k", 10, "length of each recommendation list")
	f.IntVar(&o.Workers, "workers", runtime.GOMAXPROCS(0), "parallel workers while tuning (the result does not depend on it)")
	f.StringVar(&format, "format", "text", "output on stdout: text or json")
	f.StringVar(&out, "out", "", "also write the report as Markdown to this file")
	return cmd
}

// mlDatasetsDir resolves the datasets directory: the flag, else
// $CDP_DATASETS, else ../shared/datasets next to the repository root (the
// nearest directory above the working directory holding go.mod).
func mlDatasetsDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := os.Getenv("CDP_DATASETS"); env != "" {
		return env, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	root := wd
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			root = dir
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("finding the repository root: %w", err)
		}
		if filepath.Dir(dir) == dir {
			break // no go.mod above: resolve from the working directory
		}
	}
	return filepath.Join(root, "..", "shared", "datasets"), nil
}

func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// barProgress draws eval's long steps as progress bars on stderr.
type barProgress struct{ bar *progressbar.ProgressBar }

func (p *barProgress) Stage(name string, total int) {
	p.bar = progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(name),
		progressbar.OptionSetItsString("baskets"),
		progressbar.OptionShowIts(),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *barProgress) Add(n int) {
	if p.bar != nil {
		_ = p.bar.Add(n)
	}
}

func (p *barProgress) Done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
