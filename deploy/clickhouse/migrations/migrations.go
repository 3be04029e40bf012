// Package migrations is the warehouse's ClickHouse schema as versioned
// migrations (the .sql files beside this file, embedded in the binary) and
// the goose provider that applies them: `cdp migrate up | status | down`,
// and the warehouse processor at start-up.
//
// Migrations run against the database of the connection (the DSN's). A
// file is one version: goose's version table (goose_db_version) records
// which are applied. ClickHouse has no transactional DDL, so every file is
// NO TRANSACTION and every statement is idempotent (IF NOT EXISTS), so that
// a migration that failed half way can simply be run again.
//
// 00001_facts.sql takes CDP_WAREHOUSE_EVENTS_TTL_DAYS (default 3650) as the
// events table's TTL when it is first applied; change it later with
// ALTER TABLE events MODIFY TTL toDateTime(time) + toIntervalDay(N).
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io"
	"strings"

	"github.com/pressly/goose/v3"
)

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS

// VersionTable is goose's record of the applied versions, in the same
// database as the tables.
const VersionTable = "goose_db_version"

// Provider returns a goose provider for db (a database/sql handle of
// clickhouse-go, clickhouse.OpenDB).
func Provider(db *sql.DB) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectClickHouse, db, FS,
		goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("loading the embedded ClickHouse migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration and reports each on w (nil: quiet).
func Up(ctx context.Context, db *sql.DB, w io.Writer) error {
	p, err := Provider(db)
	if err != nil {
		return err
	}
	res, err := p.Up(ctx)
	report(w, res)
	if err != nil {
		return fmt.Errorf("applying ClickHouse migrations: %w", err)
	}
	return nil
}

// Down rolls the newest applied migration back.
func Down(ctx context.Context, db *sql.DB, w io.Writer) error {
	p, err := Provider(db)
	if err != nil {
		return err
	}
	res, err := p.Down(ctx)
	if res != nil {
		report(w, []*goose.MigrationResult{res})
	}
	if err != nil {
		return fmt.Errorf("rolling back the newest ClickHouse migration: %w", err)
	}
	return nil
}

// Pending lists the migrations not yet applied, by file name.
func Pending(ctx context.Context, db *sql.DB) ([]string, error) {
	p, err := Provider(db)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the applied ClickHouse migrations: %w", err)
	}
	var out []string
	for _, s := range st {
		if s.State == goose.StatePending {
			out = append(out, s.Source.Path)
		}
	}
	return out, nil
}

// Status writes one line per migration: applied (with when) or pending.
func Status(ctx context.Context, db *sql.DB, w io.Writer) error {
	p, err := Provider(db)
	if err != nil {
		return err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading the applied ClickHouse migrations: %w", err)
	}
	for _, s := range st {
		when := "pending"
		if s.State == goose.StateApplied {
			when = "applied " + s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		fmt.Fprintf(w, "%-28s %s\n", s.Source.Path, when)
	}
	return nil
}

func report(w io.Writer, res []*goose.MigrationResult) {
	if w == nil {
		return
	}
	for _, r := range res {
		fmt.Fprintln(w, strings.TrimSpace(r.String()))
	}
}
