package warehouse

import (
	"slices"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/testkit"
)

// TestBuffersMatchTheSchema: every table the warehouse inserts into has
// exactly the buffer's columns, plus columns with a default (inserted_at),
// after the migrations.
func TestBuffersMatchTheSchema(t *testing.T) {
	env := testkit.New(t)
	conn := env.ClickHouse(t)
	opts, err := clickhouse.ParseDSN(env.Services.ClickHouseDSN)
	if err != nil {
		t.Fatal(err)
	}
	opts.Auth.Database = env.ClickHouseDatabase()
	db := clickhouse.OpenDB(opts)
	defer db.Close()
	ctx := testkit.Context(t)
	if err := migrations.Up(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*buffer{&newEventsBuffer().buffer, &newOrdersBuffer().buffer, &newLinesBuffer().buffer, &newMergesBuffer().buffer,
		&newMembershipBuffer().buffer, &newChangesBuffer().buffer, &newDeadLettersBuffer().buffer} {
		var mine []string
		for _, c := range b.cols {
			mine = append(mine, c.name())
		}
		rows, err := conn.Query(ctx, "SELECT name, default_kind FROM system.columns WHERE database = currentDatabase() AND table = ? ORDER BY position", b.table)
		if err != nil {
			t.Fatal(err)
		}
		var plain []string
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				t.Fatal(err)
			}
			if def == "" {
				plain = append(plain, name)
			}
			if def != "" && slices.Contains(mine, name) {
				t.Errorf("%s.%s has a default but the warehouse writes it", b.table, name)
			}
		}
		rows.Close()
		slices.Sort(mine)
		slices.Sort(plain)
		if !slices.Equal(mine, plain) {
			t.Errorf("%s: the warehouse writes %v, the table's columns without a default are %v", b.table, mine, plain)
		}
	}
}
