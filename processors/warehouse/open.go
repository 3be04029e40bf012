package warehouse

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/config"
	"github.com/streamcdp/streamcdp/schemas"
)

// Connect opens ClickHouse at dsn twice: the native connection the
// warehouse inserts through, and a database/sql handle for migrations.
func Connect(ctx context.Context, dsn string) (driver.Conn, *sql.DB, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("CDP_CLICKHOUSE_DSN %q: %w", dsn, err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("opening ClickHouse at %s: %w", dsn, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ClickHouse at %s does not answer (is it running? `cdp local status`): %w", dsn, err)
	}
	return conn, clickhouse.OpenDB(opts), nil
}

// Migrate applies pending migrations (cfg.Migrate) or refuses an old
// schema.
func Migrate(ctx context.Context, db *sql.DB, apply bool, log *zap.Logger) error {
	if apply {
		var out strings.Builder
		if err := migrations.Up(ctx, db, &out); err != nil {
			return err
		}
		if out.Len() > 0 {
			log.Info("ClickHouse migrations applied", zap.String("applied", strings.TrimSpace(out.String())))
		}
		return nil
	}
	pending, err := migrations.Pending(ctx, db)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("the ClickHouse schema is behind this build (%d pending: %s): run `cdp migrate up`, or start with CDP_WAREHOUSE_MIGRATE=true",
			len(pending), strings.Join(pending, ", "))
	}
	return nil
}

// TopicsOf names the warehouse's topics under svc's prefix.
func TopicsOf(svc config.Services) Topics {
	return Topics{
		Resolved: svc.Topic("events.resolved"), Merges: svc.Topic("identity.merges"),
		Membership: svc.Topic("segments.membership"), Changes: svc.Topic("profiles.changes"),
		DeadLetters: svc.Topic("events.dlq"),
	}
}

// Open connects to the services of svc, brings the schema up to date (or
// checks it), and returns the processor and what releases it.
func Open(ctx context.Context, svc config.Services, cfg Config, reg prometheus.Registerer, log *zap.Logger) (*Processor, func(), error) {
	conn, db, err := Connect(ctx, svc.ClickHouseDSN)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { db.Close(); conn.Close() }
	if err := Migrate(ctx, db, cfg.Migrate, log); err != nil {
		cleanup()
		return nil, nil, err
	}
	src, err := sr.NewClient(sr.URLs(svc.SchemaRegistryURL))
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("schema registry client: %w", err)
	}
	p, err := New(cfg, TopicsOf(svc), conn, schemas.NewSerde(src), reg, log)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return p, cleanup, nil
}
