package cli

import (
	"context"
	"database/sql"
	"io"

	"github.com/spf13/cobra"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/processors/warehouse"
)

func init() { register(newMigrateCmd) }

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate up | status | down",
		Short: "Apply, list or roll back the warehouse's ClickHouse migrations",
		Long: `Manages the ClickHouse schema the warehouse writes (the migrations embedded
in this binary, deploy/clickhouse/migrations) in the database of
CDP_CLICKHOUSE_DSN. up applies every pending migration, status lists them,
down rolls the newest applied one back (dropping its tables and their data).
cdp run warehouse applies pending migrations itself unless
CDP_WAREHOUSE_MIGRATE=false.`,
	}
	sub := func(use, short string, do func(context.Context, *sql.DB, io.Writer) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				svc, err := config.Load()
				if err != nil {
					return err
				}
				conn, db, err := warehouse.Connect(cmd.Context(), svc.ClickHouseDSN)
				if err != nil {
					return err
				}
				defer conn.Close()
				defer db.Close()
				return do(cmd.Context(), db, cmd.OutOrStdout())
			}}
	}
	cmd.AddCommand(
		sub("up", "Apply every pending migration", migrations.Up),
		sub("status", "List the migrations, applied or pending", migrations.Status),
		sub("down", "Roll the newest applied migration back (drops its tables)", migrations.Down),
	)
	return cmd
}
