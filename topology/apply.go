package topology

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Action is the kind of a Change.
type Action string

// The changes Apply makes. It never deletes a topic, removes partitions or
// removes a config, so running it cannot lose data.
const (
	CreateTopic   Action = "create topic"
	AddPartitions Action = "add partitions"
	SetConfig     Action = "set config"
)

// Change is one step that brings the cluster to the declared topology.
type Change struct {
	Action Action
	// Topic is the physical topic name.
	Topic string
	// Partitions is the partition count after the change (CreateTopic,
	// AddPartitions); FromPartitions the count before (AddPartitions).
	Partitions, FromPartitions int32
	// Replication is the replication factor of a created topic.
	Replication int16
	// Configs are the configs a created topic gets.
	Configs map[string]string
	// Config is the key SetConfig changes, From its current value ("" when
	// unset) and To the declared one.
	Config, From, To string
}

// String describes the change for people, one line.
func (c Change) String() string {
	switch c.Action {
	case CreateTopic:
		var cfg []string
		for _, k := range slices.Sorted(maps.Keys(c.Configs)) {
			cfg = append(cfg, k+"="+c.Configs[k])
		}
		return fmt.Sprintf("create topic %s: %d partitions, replication %d, %s",
			c.Topic, c.Partitions, c.Replication, strings.Join(cfg, ", "))
	case AddPartitions:
		return fmt.Sprintf("add partitions to %s: %d -> %d", c.Topic, c.FromPartitions, c.Partitions)
	case SetConfig:
		from := c.From
		if from == "" {
			from = "(unset)"
		}
		return fmt.Sprintf("set %s %s: %s -> %s", c.Topic, c.Config, from, c.To)
	}
	return fmt.Sprintf("%s %s", c.Action, c.Topic)
}

// ApplyOption adjusts Plan and Apply.
type ApplyOption func(*applyConfig)

type applyConfig struct {
	replication int16
}

// WithReplicationFactor sets the replication factor of topics Apply creates.
// Without it the factor is min(3, number of brokers): 3 is the usual
// production choice, and a one-broker development cluster can only hold 1.
// Existing topics keep their replication factor: changing it is a partition
// reassignment, which is an operator's decision.
func WithReplicationFactor(n int16) ApplyOption {
	return func(c *applyConfig) { c.replication = n }
}

// Plan compares the declared topics, named "<prefix>.<name>", with the
// cluster and returns the changes Apply would make, changing nothing. It
// fails, listing every such topic, when a topic has more partitions than
// declared, because Kafka cannot remove partitions and silently keeping more
// would leave the file lying about the cluster.
func (t *Topology) Plan(ctx context.Context, adm *kadm.Client, prefix string, opts ...ApplyOption) ([]Change, error) {
	var cfg applyConfig
	for _, o := range opts {
		o(&cfg)
	}
	names := make([]string, len(t.Topics))
	var errs []error
	for i, tp := range t.Topics {
		names[i] = Physical(prefix, tp.Name)
		if msg := checkTopicName(names[i]); msg != "" {
			errs = append(errs, fmt.Errorf("with prefix %q: %s", prefix, msg))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// kadm answers Metadata from the kgo client's cache (up to
	// MetadataMinAge, 5s by default), and that cache keeps "unknown topic"
	// for a topic this same client has just created, so a second Apply
	// would try to create it again. WithAuthorizedOps is the kadm path that
	// asks the broker directly (and refreshes the cache).
	md, err := adm.Metadata(kadm.WithAuthorizedOps(ctx), names...)
	if err != nil {
		return nil, fmt.Errorf("reading topic metadata: %w", err)
	}
	replication := cfg.replication
	if replication == 0 {
		replication = int16(min(3, len(md.Brokers)))
	}
	if replication < 1 || int(replication) > len(md.Brokers) {
		return nil, fmt.Errorf("replication factor %d is impossible with %d broker(s)", replication, len(md.Brokers))
	}

	var changes []Change
	var existing []string
	for i, tp := range t.Topics {
		name := names[i]
		d, ok := md.Topics[name]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			changes = append(changes, Change{Action: CreateTopic, Topic: name, Partitions: tp.Partitions,
				Replication: replication, Configs: tp.KafkaConfigs()})
			continue
		case d.Err != nil:
			errs = append(errs, fmt.Errorf("reading metadata of topic %s: %w", name, d.Err))
			continue
		}
		existing = append(existing, name)
		have := int32(len(d.Partitions))
		switch {
		case have > tp.Partitions:
			errs = append(errs, fmt.Errorf("topic %s has %d partitions but the topology declares %d: "+
				"Kafka cannot remove partitions; declare %d again (or delete and recreate the topic, losing its data)",
				name, have, tp.Partitions, have))
		case have < tp.Partitions:
			changes = append(changes, Change{Action: AddPartitions, Topic: name, FromPartitions: have, Partitions: tp.Partitions})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(existing) == 0 {
		return changes, nil
	}

	current, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return nil, fmt.Errorf("reading topic configs: %w", err)
	}
	for i, tp := range t.Topics {
		name := names[i]
		if !slices.Contains(existing, name) {
			continue
		}
		rc, err := current.On(name, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reading configs of topic %s: %w", name, err))
			continue
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		want := tp.KafkaConfigs()
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if have[k] != want[k] {
				changes = append(changes, Change{Action: SetConfig, Topic: name, Config: k, From: have[k], To: want[k]})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return changes, nil
}

// Apply creates missing topics, adds partitions where the declared count
// grew, and sets configs (incrementally, so configs an operator set that the
// file does not mention are left alone) where they differ. It returns the
// changes made; run on a cluster that already matches, it returns none. It
// changes nothing if Plan fails, and on a failure midway returns the changes
// made so far.
func (t *Topology) Apply(ctx context.Context, adm *kadm.Client, prefix string, opts ...ApplyOption) ([]Change, error) {
	changes, err := t.Plan(ctx, adm, prefix, opts...)
	if err != nil {
		return nil, err
	}
	done := make([]Change, 0, len(changes))
	for _, c := range changes {
		if err := c.apply(ctx, adm); err != nil {
			return done, fmt.Errorf("%s: %w", c, err)
		}
		done = append(done, c)
	}
	return done, nil
}

func (c Change) apply(ctx context.Context, adm *kadm.Client) error {
	switch c.Action {
	case CreateTopic:
		configs := make(map[string]*string, len(c.Configs))
		for k, v := range c.Configs {
			configs[k] = kadm.StringPtr(v)
		}
		r, err := adm.CreateTopic(ctx, c.Partitions, c.Replication, configs, c.Topic)
		if errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("%w: it was created by someone else since the plan was made; run apply again", err)
		}
		return withMessage(err, r.ErrMessage)
	case AddPartitions:
		rs, err := adm.UpdatePartitions(ctx, int(c.Partitions), c.Topic)
		if err != nil {
			return err
		}
		r, err := rs.On(c.Topic, nil)
		if err != nil {
			return err
		}
		return withMessage(r.Err, r.ErrMessage)
	case SetConfig:
		rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: c.Config, Value: kadm.StringPtr(c.To)}}, c.Topic)
		if err != nil {
			return err
		}
		r, err := rs.On(c.Topic, nil)
		if err != nil {
			return err
		}
		return withMessage(r.Err, r.ErrMessage)
	}
	return fmt.Errorf("unknown action %q", c.Action)
}

// withMessage adds the broker's error message, which often says more than
// the error code.
func withMessage(err error, msg string) error {
	if err == nil || msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}
