package warehouse

import (
	"errors"
	"fmt"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/streamcdp/streamcdp/internal/processing"
)

// Config tunes the warehouse. The zero value of a field takes its default;
// `cdp run warehouse` reads them from CDP_WAREHOUSE_* variables.
type Config struct {
	// BatchRows bounds the input records of one batch, that is of one
	// transaction: at the bound the batch is inserted and committed before
	// more is polled (default 50,000). Each task inserts its partition's
	// share of the batch, one insert per table.
	BatchRows int `env:"CDP_WAREHOUSE_BATCH_ROWS" envDefault:"50000"`
	// BatchBytes bounds the input bytes of one batch (default 32 MiB); with
	// BatchRows it bounds the memory rows take while they wait for their
	// insert, whatever ClickHouse does.
	BatchBytes int64 `env:"CDP_WAREHOUSE_BATCH_BYTES" envDefault:"33554432"`
	// BatchAge is how long a batch collects input before it is inserted
	// (default 2s): the freshness of the tables under a trickle of input.
	BatchAge time.Duration `env:"CDP_WAREHOUSE_BATCH_AGE" envDefault:"2s"`
	// RetryFor is how long one insert is retried (with backoff, the same
	// rows and deduplication token) before the batch is given up: the
	// transaction aborts, the partitions pause and back off, and the
	// records are read again from Kafka once ClickHouse answers (default 5s).
	RetryFor time.Duration `env:"CDP_WAREHOUSE_RETRY_FOR" envDefault:"5s"`
	// Migrate applies pending migrations at start-up (default true). With
	// several instances, run `cdp migrate up` once before them instead and
	// set it to false: each instance then refuses to start on an old schema.
	Migrate bool `env:"CDP_WAREHOUSE_MIGRATE" envDefault:"true"`
}

// ConfigFromEnv reads Config from CDP_WAREHOUSE_* variables.
func ConfigFromEnv() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("reading CDP_WAREHOUSE_* environment: %w", err)
	}
	return c, nil
}

func (c *Config) defaults() error {
	if c.BatchRows == 0 {
		c.BatchRows = 50_000
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 32 << 20
	}
	if c.BatchAge == 0 {
		c.BatchAge = 2 * time.Second
	}
	if c.RetryFor == 0 {
		c.RetryFor = 5 * time.Second
	}
	switch {
	case c.BatchRows < 0 || c.BatchBytes < 0 || c.BatchAge < 0 || c.RetryFor < 0:
		return errors.New("warehouse: batch rows, bytes, age and retry time must not be negative")
	case c.BatchAge > 5*time.Second:
		// The transaction holding the batch must end well within the
		// broker's transaction timeout (see processing.Config).
		return fmt.Errorf("warehouse: CDP_WAREHOUSE_BATCH_AGE %s is above the 5s the runtime's transaction timeout allows", c.BatchAge)
	}
	return nil
}

// Tune sets the runtime's batching to the warehouse's: a transaction is a
// batch, held until BatchAge or a size bound even when the input is drained,
// so that inserts stay large.
func (c Config) Tune(rc *processing.Config) {
	rc.CommitInterval = c.BatchAge
	rc.MaxTxnRecords = c.BatchRows
	rc.MaxTxnBytes = c.BatchBytes
	rc.HoldWhenCaughtUp = true
	// A poll is never cut, so it must not exceed a batch either.
	if rc.MaxPollRecords == 0 || rc.MaxPollRecords > c.BatchRows {
		rc.MaxPollRecords = min(5000, c.BatchRows)
	}
}
