package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/topology"
)

func init() { register(newTopologyCmd) }

func newTopologyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Validate, apply and describe the topics and processor graph",
		Long: `The topology is the set of Kafka topics and the processors that connect them,
kept as YAML. Without --file the built-in default is used; start your own from it
with: cdp topology default > topology.yaml`,
	}
	cmd.AddCommand(newTopologyValidateCmd(), newTopologyApplyCmd(), newTopologyDescribeCmd(), newTopologyDefaultCmd())
	return cmd
}

// loadTopology reads --file, or the embedded default, and prints warnings to
// stderr. On validation problems it prints each one and returns an exitError,
// so the user sees every problem as file:line:col, one per line.
func loadTopology(cmd *cobra.Command, file string) (*topology.Topology, error) {
	var (
		t   *topology.Topology
		err error
	)
	if file == "" {
		t, err = topology.Default()
		file = topology.DefaultFile
	} else {
		t, err = topology.Load(file)
	}
	if err != nil {
		var ve *topology.ValidationError
		if errors.As(err, &ve) {
			fmt.Fprintln(cmd.ErrOrStderr(), ve.Error())
			for _, w := range ve.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), w.String())
			}
			return nil, &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", file, len(ve.Problems))}
		}
		return nil, err
	}
	for _, w := range t.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), w.String())
	}
	return t, nil
}

func newTopologyValidateCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the topology file and print every problem with its line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := loadTopology(cmd, file)
			if err != nil {
				return err
			}
			name := file
			if name == "" {
				name = topology.DefaultFile
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d topics, %d processors)\n", name, len(t.Topics), len(t.Processors))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology YAML file (default: the built-in topology)")
	return cmd
}

func newTopologyApplyCmd() *cobra.Command {
	var (
		file        string
		dryRun      bool
		replication int16
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Create missing topics and bring existing ones to the declared partitions and configs",
		Long: `apply reads the brokers and the topic prefix from CDP_KAFKA_BROKERS and
CDP_TOPIC_PREFIX. It creates missing topics, adds partitions where the declared
count grew and sets configs that differ. It never deletes topics or partitions,
and refuses to run when a topic has more partitions than declared. Running it
again on an up-to-date cluster changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := loadTopology(cmd, file)
			if err != nil {
				return err
			}
			svc, err := config.Load()
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(svc.KafkaBrokers...))
			if err != nil {
				return fmt.Errorf("kafka client for %v: %w", svc.KafkaBrokers, err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if replication < 0 {
				return fmt.Errorf("--replication-factor %d: must be at least 1 (or 0 for min(3, brokers))", replication)
			}
			var opts []topology.ApplyOption
			if replication > 0 {
				opts = append(opts, topology.WithReplicationFactor(replication))
			}
			out := cmd.OutOrStdout()
			if dryRun {
				changes, err := t.Plan(ctx, adm, svc.TopicPrefix, opts...)
				if err != nil {
					return fmt.Errorf("planning topology on %v: %w", svc.KafkaBrokers, err)
				}
				printChanges(out, changes, "would ")
				return nil
			}
			changes, err := t.Apply(ctx, adm, svc.TopicPrefix, opts...)
			if err != nil {
				for _, c := range changes {
					fmt.Fprintln(out, c) // made before the failure
				}
				return fmt.Errorf("applying topology on %v: %w", svc.KafkaBrokers, err)
			}
			printChanges(out, changes, "")
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology YAML file (default: the built-in topology)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the changes without making them")
	cmd.Flags().Int16Var(&replication, "replication-factor", 0, "replication factor of created topics (default: min(3, brokers))")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long (for example when the brokers are unreachable)")
	return cmd
}

func printChanges(w io.Writer, changes []topology.Change, verb string) {
	if len(changes) == 0 {
		fmt.Fprintln(w, "no changes: the cluster matches the topology")
		return
	}
	for _, c := range changes {
		fmt.Fprintf(w, "%s%s\n", verb, c)
	}
}

func newTopologyDescribeCmd() *cobra.Command {
	var file, format string
	cmd := &cobra.Command{
		Use:   "describe",
		Short: "Print the processor graph as Mermaid or as text tables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "mermaid" && format != "text" {
				return fmt.Errorf("--format %q: want mermaid or text", format)
			}
			t, err := loadTopology(cmd, file)
			if err != nil {
				return err
			}
			if format == "mermaid" {
				_, err = io.WriteString(cmd.OutOrStdout(), t.Mermaid())
				return err
			}
			svc, err := config.Load()
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), t.Text(svc.TopicPrefix))
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology YAML file (default: the built-in topology)")
	cmd.Flags().StringVar(&format, "format", "mermaid", "output format: mermaid or text")
	return cmd
}

func newTopologyDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "default",
		Short: "Print the built-in topology YAML, to start a custom one from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(topology.DefaultYAML())
			return err
		},
	}
}
