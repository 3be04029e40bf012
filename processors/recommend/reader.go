package recommend

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/config"
)

// Reader reads profiles' current recommendations and scores from Redis:
// the read API of the profile API and of anyone else. A profile's state
// lives in the hash-tagged keys of the input partition its events go to, so
// the Reader computes that partition as the producer of the input did
// (Kafka's murmur2 of the profile id, franz-go's and the Java client's
// default) from the input topic's partition count.
type Reader struct {
	rdb        redis.UniversalClient
	prefix     string
	topic      string
	partitions int
	part       kgo.TopicPartitioner
}

// NewReader returns a Reader of the state under prefix ("cdp:") of the
// processor reading input, a topic of the given partition count.
func NewReader(rdb redis.UniversalClient, prefix, input string, partitions int) *Reader {
	return &Reader{rdb: rdb, prefix: prefix, topic: input, partitions: partitions,
		part: kgo.StickyKeyPartitioner(nil).ForTopic(input)}
}

// OpenReader returns a Reader for svc's deployment, asking Kafka for the
// resolved events topic's partition count.
func OpenReader(ctx context.Context, svc config.Services, rdb redis.UniversalClient) (*Reader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(svc.KafkaBrokers...))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	input := svc.Topic("events.resolved")
	td, err := kadm.NewClient(cl).ListTopics(ctx, input)
	if err != nil {
		return nil, fmt.Errorf("describing %s: %w", input, err)
	}
	t, ok := td[input]
	if !ok || t.Err != nil {
		return nil, fmt.Errorf("describing %s: topic missing (%v)", input, t.Err)
	}
	return NewReader(rdb, svc.TopicPrefix+":", input, len(t.Partitions)), nil
}

// Partition returns the input partition of profile's events.
func (r *Reader) Partition(profile string) int32 {
	return int32(r.part.Partition(&kgo.Record{Key: []byte(profile)}, r.partitions))
}

// Recommendations returns profile's current list, nil when it has none.
func (r *Reader) Recommendations(ctx context.Context, profile string) (*List, error) {
	return get[List](ctx, r, keyList, profile, "recommendations")
}

// Scores returns profile's current scores, nil when it has none (it never
// ordered, or no fit has scored it yet).
func (r *Reader) Scores(ctx context.Context, profile string) (*Scores, error) {
	return get[Scores](ctx, r, keyScores, profile, "scores")
}

// QueueRecommendations queues the read of Recommendations(profile) on
// pipe, so that a reader can send it in one round trip with other reads
// (the profile API does), and returns the function that gives its result
// once pipe has run.
func (r *Reader) QueueRecommendations(ctx context.Context, pipe redis.Pipeliner, profile string) func() (*List, error) {
	return queue[List](ctx, r, pipe, keyList, profile, "recommendations")
}

// QueueScores is QueueRecommendations for Scores.
func (r *Reader) QueueScores(ctx context.Context, pipe redis.Pipeliner, profile string) func() (*Scores, error) {
	return queue[Scores](ctx, r, pipe, keyScores, profile, "scores")
}

// get reads and decodes profile's field of the state hash suffix.
func get[T any](ctx context.Context, r *Reader, suffix, profile, what string) (*T, error) {
	return decode[T](r.hget(ctx, r.rdb, suffix, profile), profile, what)
}

func queue[T any](ctx context.Context, r *Reader, pipe redis.Pipeliner, suffix, profile, what string) func() (*T, error) {
	cmd := r.hget(ctx, pipe, suffix, profile)
	return func() (*T, error) { return decode[T](cmd, profile, what) }
}

func (r *Reader) hget(ctx context.Context, c redis.Cmdable, suffix, profile string) *redis.StringCmd {
	return c.HGet(ctx, slotKey(r.prefix, r.topic, r.Partition(profile), suffix), profile)
}

func decode[T any](cmd *redis.StringCmd, profile, what string) (*T, error) {
	b, err := cmd.Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the %s of %s: %w", what, profile, err)
	}
	v := new(T)
	if err := unmarshal(b, what+" of "+profile, v); err != nil {
		return nil, err
	}
	return v, nil
}
