package processing

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Config configures a Runner. Name, Brokers, Group and Inputs are required;
// every other field has a default suited to a processor that writes Redis.
type Config struct {
	// Name is the processor's name, used in metrics, logs, the
	// transactional id and the journal's keys.
	Name    string
	Brokers []string
	// Group is the consumer group; all instances of a processor share it.
	Group  string
	Inputs []string

	// InstanceID distinguishes instances of one processor. It must be
	// stable across restarts of one instance and unique among running
	// ones: it names the transactional id ("cdp-<Name>-<InstanceID>"), so a
	// restarted instance fences its crashed predecessor and aborts its
	// open transaction at once instead of after TransactionTimeout.
	// Default: the host name.
	InstanceID string
	// TransactionalID overrides "cdp-<Name>-<InstanceID>" (for tools whose
	// id must carry the topic prefix, like `cdp dlq replay`).
	TransactionalID string
	// StaticMembership makes InstanceID the group's static member id
	// (KIP-345) as well: a restarted instance takes its partitions back at
	// once, without a rebalance, but an instance that stops for good keeps
	// them until SessionTimeout. Use it when ids are stable (a
	// StatefulSet, a fixed --instance).
	StaticMembership bool

	// Journal is the store where tasks journal their effects (see
	// internal/journal). Nil for processors whose effects are outside any
	// store or idempotent by construction: their records are simply
	// processed again after an abort, and they cannot use timers.
	Journal Journal
	// DeadLetterTopic receives records that failed MaxAttempts times, with
	// the error (internal/dlq format). Empty: such records are retried
	// for ever (the partition stays paused, the others go on).
	DeadLetterTopic string
	// MaxAttempts is how often one record may fail before it is
	// dead-lettered (default 5). Transient failures do not count.
	MaxAttempts int

	// MaxPollRecords bounds one poll (default 5000).
	MaxPollRecords int
	// CommitInterval is how long a transaction may collect polls before it
	// commits (default 100ms, as Kafka Streams under exactly-once). 0 keeps
	// the default; a negative value commits after every poll. Unless
	// HoldWhenCaughtUp is set, a transaction also commits as soon as a poll
	// comes back short of MaxPollRecords: the input is drained, and waiting
	// would only add latency. So under a backlog transactions grow to
	// CommitInterval for throughput, and at a trickle every event commits
	// right after it was processed.
	CommitInterval time.Duration
	// HoldWhenCaughtUp keeps a transaction open until CommitInterval or a
	// size bound even when the input is drained: for tasks that batch
	// external writes in PreCommit (a warehouse inserting every few
	// seconds), at the cost of that much latency.
	HoldWhenCaughtUp bool
	// MaxTxnRecords and MaxTxnBytes bound the input held by one open
	// transaction (defaults 100,000 records and 64 MiB): at the bound the
	// transaction commits before more is polled, so memory stays bounded
	// even when tasks hold records until PreCommit.
	MaxTxnRecords int
	MaxTxnBytes   int64
	// ProcessingTimeout bounds one step (a Process, OnTimer or PreCommit
	// call and its journal write; default 10s). It must stay well under
	// RebalanceTimeout: rebalances wait for the step.
	ProcessingTimeout time.Duration
	// TransactionTimeout is the broker-side limit of a transaction
	// (default 30s). It also bounds how long a crashed instance's open
	// transaction blocks read_committed readers when no instance with the
	// same id restarts. A transaction the broker timed out starts a new
	// session; it is not a fence.
	TransactionTimeout time.Duration
	// SessionTimeout and RebalanceTimeout are the group's (defaults 45s
	// and 60s, franz-go's).
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	// MaxBackoff caps the wait between retries of a failing partition or
	// session (default 5s).
	MaxBackoff time.Duration
	// TimerPoll is the longest a poll waits before due timers and
	// lifecycle changes are looked at (default 250ms): wall-clock timers
	// fire within about this much of their due time.
	TimerPoll time.Duration

	// StopAt, when set, makes Run return once every listed partition's
	// committed offset has reached the given offset (a replay of a topic
	// up to a snapshot of its end). Partitions not listed are processed
	// normally.
	StopAt map[TopicPartition]int64

	Logger  *zap.Logger
	Metrics *Metrics
	// KafkaOpts are appended to the client options (SASL, TLS, ...).
	KafkaOpts []kgo.Opt
	// Now is the clock (tests).
	Now func() time.Time
}

func (c *Config) defaults() error {
	switch {
	case c.Name == "":
		return errors.New("processing: Config.Name is required")
	case len(c.Brokers) == 0:
		return errors.New("processing: Config.Brokers is required")
	case c.Group == "":
		return errors.New("processing: Config.Group is required")
	case len(c.Inputs) == 0:
		return errors.New("processing: Config.Inputs is required")
	}
	if c.InstanceID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("processing: no InstanceID and no host name: %w", err)
		}
		c.InstanceID = h
	}
	if c.TransactionalID == "" {
		c.TransactionalID = "cdp-" + c.Name + "-" + c.InstanceID
	}
	setDefault(&c.MaxAttempts, 5)
	setDefault(&c.MaxPollRecords, 5000)
	setDefault(&c.MaxTxnRecords, 100_000)
	setDefault(&c.MaxTxnBytes, 64<<20)
	setDefault(&c.CommitInterval, 100*time.Millisecond)
	if c.CommitInterval < 0 {
		c.CommitInterval = 0
	}
	setDefault(&c.ProcessingTimeout, 10*time.Second)
	setDefault(&c.TransactionTimeout, 30*time.Second)
	setDefault(&c.SessionTimeout, 45*time.Second)
	setDefault(&c.RebalanceTimeout, 60*time.Second)
	setDefault(&c.MaxBackoff, 5*time.Second)
	setDefault(&c.TimerPoll, 250*time.Millisecond)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// A transaction must be able to collect polls, run a step and commit
	// well within the broker's limit, and a step must end well before the
	// group gives up on a blocked rebalance.
	if c.CommitInterval+c.ProcessingTimeout > c.TransactionTimeout/2 {
		return fmt.Errorf("processing: CommitInterval (%s) + ProcessingTimeout (%s) must be under half of TransactionTimeout (%s)",
			c.CommitInterval, c.ProcessingTimeout, c.TransactionTimeout)
	}
	if c.CommitInterval+2*c.ProcessingTimeout > c.RebalanceTimeout {
		return fmt.Errorf("processing: CommitInterval (%s) + 2 ProcessingTimeouts (%s) must be under RebalanceTimeout (%s)",
			c.CommitInterval, c.ProcessingTimeout, c.RebalanceTimeout)
	}
	return nil
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
