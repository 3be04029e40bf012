package warehouse_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/deploy/clickhouse/migrations"
	"github.com/streamcdp/streamcdp/internal/processing"
	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/processors/warehouse"
)

// benchEvents is how many resolved events one benchmark run loads.
const benchEvents = 200_000

// BenchmarkWarehouseVsBareInsert loads the same rows twice, side by side:
// once through the warehouse (Kafka in, Avro decode, rows, inserts with
// deduplication tokens through the runtime's transactions), once as a bare
// clickhouse-go batch insert (PrepareBatch, Append per row, Send) of the
// rows the warehouse wrote, read back, in batches of the warehouse's
// default size, into a second database with the same migrations (so both
// feed the same materialized views). It reports rows/s of each and their
// ratio. Every iteration uses fresh databases and a fresh consumer group.
//
//	go test -run '^$' -bench WarehouseVsBareInsert -benchtime 3x ./processors/warehouse/
//
// The warehouse runs with its defaults except that a batch does not wait
// for its age once the input is drained (HoldWhenCaughtUp off), so the end
// of the backlog is not timed as two idle seconds.
func BenchmarkWarehouseVsBareInsert(b *testing.B) {
	s := newStage(b, 6)
	in := generateInput(b, benchEvents, 5)
	s.produce(b, s.records(b, in.resolved))
	want := uint64(len(in.resolved) + in.orders + in.lines)
	var whRate, bareRate float64
	for i := 0; i < b.N; i++ {
		db := fmt.Sprintf("%s_wh%d", s.env.ClickHouseDatabase(), i)
		bareDB := fmt.Sprintf("%s_bare%d", s.env.ClickHouseDatabase(), i)
		for _, d := range []string{db, bareDB} {
			createMigrated(b, s, d)
		}
		svc := s.env.Services
		svc.ClickHouseDSN = dsnWithDatabase(b, svc.ClickHouseDSN, db)

		// The warehouse, from the first record to the last row inserted.
		reg := prometheus.NewRegistry()
		ctx, cancel := context.WithCancel(context.Background())
		p, closeFn, err := warehouse.Open(ctx, svc, warehouse.Config{Migrate: false}, reg, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		rc := processing.Config{Name: "warehouse", Brokers: svc.KafkaBrokers, Group: fmt.Sprintf("%s-bench-%d-%d", svc.TopicPrefix, time.Now().UnixNano(), i),
			Inputs: []string{s.topics.Resolved}, InstanceID: fmt.Sprintf("%s-bench-%d", s.env.ID, i), Logger: zap.NewNop()}
		p.Config().Tune(&rc)
		rc.HoldWhenCaughtUp = false
		r, err := processing.New(rc, p)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(ctx) }()
		for inserted(b, reg) < want {
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("the warehouse inserted %d of %d rows in 5 minutes", inserted(b, reg), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		whElapsed := time.Since(start)
		b.StopTimer()
		cancel()
		wg.Wait()
		closeFn()

		// The same rows, bare.
		conn := connectTo(b, s, db)
		bare := connectTo(b, s, bareDB)
		var bareElapsed time.Duration
		var bareRows uint64
		for _, table := range []string{"events", "orders", "order_lines"} {
			cols, rows := readRows(b, conn, table)
			bareRows += uint64(len(rows))
			start := time.Now()
			bareInsert(b, bare, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+")", rows, 50_000)
			bareElapsed += time.Since(start)
		}
		if bareRows != want {
			b.Fatalf("read back %d rows, the warehouse inserted %d", bareRows, want)
		}
		whRate += float64(want) / whElapsed.Seconds()
		bareRate += float64(want) / bareElapsed.Seconds()
		b.Logf("run %d: %d rows; warehouse %s (%.0f rows/s), bare insert %s (%.0f rows/s)", i, want,
			whElapsed.Round(time.Millisecond), float64(want)/whElapsed.Seconds(), bareElapsed.Round(time.Millisecond), float64(want)/bareElapsed.Seconds())
		for _, d := range []string{db, bareDB} {
			_ = s.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+d)
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(whRate/n, "warehouse_rows/s")
	b.ReportMetric(bareRate/n, "bare_rows/s")
	b.ReportMetric(whRate/bareRate, "ratio")
	b.ReportMetric(0, "ns/op") // one op is a whole load: its time says nothing
}

func createMigrated(b *testing.B, s *stage, db string) {
	b.Helper()
	if err := s.conn.Exec(testkit.Context(b), "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	conn, sqlDB, err := warehouse.Connect(testkit.Context(b), dsnWithDatabase(b, s.env.Services.ClickHouseDSN, db))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	defer sqlDB.Close()
	if err := migrations.Up(testkit.Context(b), sqlDB, nil); err != nil {
		b.Fatal(err)
	}
}

func connectTo(b *testing.B, s *stage, db string) driver.Conn {
	b.Helper()
	conn, sqlDB, err := warehouse.Connect(testkit.Context(b), dsnWithDatabase(b, s.env.Services.ClickHouseDSN, db))
	if err != nil {
		b.Fatal(err)
	}
	sqlDB.Close()
	b.Cleanup(func() { conn.Close() })
	return conn
}

func inserted(b *testing.B, reg *prometheus.Registry) uint64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "cdp_warehouse_rows_inserted_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return uint64(n)
}

// readRows reads a table back as rows of typed values, every column but
// the server's default (inserted_at).
func readRows(b *testing.B, conn driver.Conn, table string) ([]string, [][]any) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT * EXCEPT (inserted_at) FROM "+table)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]any
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			b.Fatal(err)
		}
		row := make([]any, len(ptrs))
		for i, p := range ptrs {
			row[i] = reflect.ValueOf(p).Elem().Interface()
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return rows.Columns(), out
}

// bareInsert is the plain clickhouse-go way: a batch, Append per row, Send.
func bareInsert(b *testing.B, conn driver.Conn, insert string, rows [][]any, batch int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for len(rows) > 0 {
		n := min(batch, len(rows))
		bt, err := conn.PrepareBatch(ctx, insert)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rows[:n] {
			if err := bt.Append(r...); err != nil {
				b.Fatal(err)
			}
		}
		if err := bt.Send(); err != nil {
			b.Fatal(err)
		}
		rows = rows[n:]
	}
}
