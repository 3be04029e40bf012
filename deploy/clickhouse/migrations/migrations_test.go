package migrations_test

import (
	"bytes"
	"database/sql"
	"slices"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// openDB opens the test's own database through database/sql, as cdp migrate
// does.
func openDB(t *testing.T) (*sql.DB, func() []string) {
	t.Helper()
	env := testkit.New(t)
	conn := env.ClickHouse(t) // creates the database, drops it at the end
	opts, err := clickhouse.ParseDSN(env.Services.ClickHouseDSN)
	if err != nil {
		t.Fatal(err)
	}
	opts.Auth.Database = env.ClickHouseDatabase()
	db := clickhouse.OpenDB(opts)
	t.Cleanup(func() { db.Close() })
	tables := func() []string {
		rows, err := conn.Query(testkit.Context(t), "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	return db, tables
}

// TestUpStatusDownUp applies every migration, checks the tables, rolls them
// all back (leaving only goose's version table) and applies them again.
func TestUpStatusDownUp(t *testing.T) {
	db, tables := openDB(t)
	ctx := testkit.Context(t)
	files, err := migrations.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var sqlFiles []string
	for _, f := range files {
		if strings.HasSuffix(f.Name(), ".sql") {
			sqlFiles = append(sqlFiles, f.Name())
		}
	}
	pending, err := migrations.Pending(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pending, sqlFiles) {
		t.Fatalf("pending on an empty database: %v, want every file %v", pending, sqlFiles)
	}
	var out bytes.Buffer
	if err := migrations.Up(ctx, db, &out); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "OK"); n != len(sqlFiles) {
		t.Errorf("up reported %d applied migrations, want %d:\n%s", n, len(sqlFiles), out.String())
	}
	want := []string{"dead_letters", "events", "events_per_day", "events_per_day_mv", "events_per_hour", "events_per_hour_mv",
		"events_per_minute", "events_per_minute_mv", migrations.VersionTable, "merges", "order_lines", "orders",
		"profile_activity", "profile_activity_mv", "profile_aliases", "profile_aliases_mv", "profile_canonical",
		"profile_changes", "profile_features", "profile_features_mv", "profile_traits", "profile_traits_mv",
		"profiles_active_daily", "profiles_active_daily_mv", "revenue_daily", "revenue_daily_mv",
		"segment_members", "segment_members_mv", "segment_membership_changes", "segment_sizes_daily", "segment_sizes_daily_mv"}
	if got := tables(); !slices.Equal(got, want) {
		t.Errorf("tables after up:\n got %v\nwant %v", got, want)
	}
	if pending, err = migrations.Pending(ctx, db); err != nil || len(pending) != 0 {
		t.Errorf("pending after up: %v (err %v)", pending, err)
	}
	out.Reset()
	if err := migrations.Status(ctx, db, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), " applied "); n != len(sqlFiles) {
		t.Errorf("status shows %d applied, want %d:\n%s", n, len(sqlFiles), out.String())
	}
	// A second up is a no-op.
	out.Reset()
	if err := migrations.Up(ctx, db, &out); err != nil || out.Len() != 0 {
		t.Errorf("second up: err %v, output %q", err, out.String())
	}
	for range sqlFiles {
		if err := migrations.Down(ctx, db, nil); err != nil {
			t.Fatalf("down: %v", err)
		}
	}
	if got := tables(); !slices.Equal(got, []string{migrations.VersionTable}) {
		t.Errorf("tables after rolling everything back: %v", got)
	}
	if err := migrations.Up(ctx, db, nil); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if got := tables(); !slices.Equal(got, want) {
		t.Errorf("tables after up again: %v", got)
	}
}
