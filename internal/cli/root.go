// Package cli builds the `cdp` command tree. Each area of the product adds its
// commands from its own file through register, so this file stays small.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// constructors of the top-level subcommands, filled by init functions.
var constructors []func() *cobra.Command

func register(c func() *cobra.Command) { constructors = append(constructors, c) }

// exitError carries a specific exit code up to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

var logLevel string

// NewRoot returns the root command with every registered subcommand.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "cdp",
		Short:         "StreamCDP: a real-time customer data platform on Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	for _, c := range constructors {
		root.AddCommand(c())
	}
	return root
}

// Main runs the command line and returns the process exit code. SIGINT and
// SIGTERM cancel the command's context so long-running commands stop cleanly.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cdp:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// newLogger builds the zap logger used by long-running commands.
func newLogger() *zap.Logger {
	lvl, err := zapcore.ParseLevel(logLevel)
	if err != nil {
		lvl = zapcore.InfoLevel
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}
