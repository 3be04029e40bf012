// Package config holds the settings every command and test reads from the
// environment. The same variables point StreamCDP at the local stack
// (`eval "$(cdp local env)"`), at docker compose, or at production services.
package config

import (
	"fmt"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Services locates the four external systems and the topic namespace.
type Services struct {
	// KafkaBrokers are the seed brokers, comma separated in CDP_KAFKA_BROKERS.
	KafkaBrokers []string `env:"CDP_KAFKA_BROKERS" envSeparator:"," envDefault:"127.0.0.1:9092"`
	// SchemaRegistryURL is a Confluent-compatible schema registry.
	SchemaRegistryURL string `env:"CDP_SCHEMA_REGISTRY_URL" envDefault:"http://127.0.0.1:8081"`
	// RedisURL is a redis:// URL (database number in the path), or a
	// redis+cluster:// one naming a Redis Cluster (see NewRedis).
	RedisURL string `env:"CDP_REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	// IdentityRedisURL, when set, gives the identity graph a Redis of its
	// own (default: RedisURL).
	IdentityRedisURL string `env:"CDP_IDENTITY_REDIS_URL"`
	// ClickHouseDSN is a clickhouse:// (native) or http:// DSN.
	ClickHouseDSN string `env:"CDP_CLICKHOUSE_DSN" envDefault:"clickhouse://127.0.0.1:9000/default"`
	// TopicPrefix is prepended with a dot to every logical topic name
	// ("events.raw" becomes "cdp.events.raw").
	TopicPrefix string `env:"CDP_TOPIC_PREFIX" envDefault:"cdp"`
	// KafkaCompression is the codec the processors compress their outputs
	// with: snappy (the default: cheap, and read by Java, librdkafka, Go and
	// Python clients out of the box), gzip (also read by KafkaJS without a
	// codec package), lz4, zstd or none.
	KafkaCompression string `env:"CDP_KAFKA_COMPRESSION" envDefault:"snappy"`
}

// Load reads Services from the environment, applying defaults.
func Load() (Services, error) {
	var s Services
	if err := env.Parse(&s); err != nil {
		return s, fmt.Errorf("reading CDP_* environment: %w", err)
	}
	return s, s.Validate()
}

// Validate reports settings that cannot work.
func (s Services) Validate() error {
	if _, err := s.Compression(); err != nil {
		return err
	}
	if len(s.KafkaBrokers) == 0 || strings.TrimSpace(s.KafkaBrokers[0]) == "" {
		return fmt.Errorf("CDP_KAFKA_BROKERS is empty: set it to host:port[,host:port]")
	}
	for _, u := range []struct{ name, val, want string }{
		{"CDP_SCHEMA_REGISTRY_URL", s.SchemaRegistryURL, "http"},
		{"CDP_REDIS_URL", s.RedisURL, ""},
		{"CDP_CLICKHOUSE_DSN", s.ClickHouseDSN, ""},
	} {
		if u.val == "" {
			return fmt.Errorf("%s is empty", u.name)
		}
		if u.want != "" && !strings.HasPrefix(u.val, u.want) {
			return fmt.Errorf("%s=%q: want a %s:// URL", u.name, u.val, u.want)
		}
	}
	for _, u := range []struct{ name, val string }{{"CDP_REDIS_URL", s.RedisURL}, {"CDP_IDENTITY_REDIS_URL", s.IdentityRedisURL}} {
		if u.val == "" && u.name == "CDP_IDENTITY_REDIS_URL" {
			continue
		}
		ok := false
		for _, p := range []string{"redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://"} {
			ok = ok || strings.HasPrefix(u.val, p)
		}
		if !ok {
			return fmt.Errorf("%s=%q: want a redis://, rediss://, unix:// or redis+cluster:// URL", u.name, u.val)
		}
	}
	return nil
}

// Topic returns the physical topic name for a logical one.
func (s Services) Topic(logical string) string {
	if s.TopicPrefix == "" {
		return logical
	}
	return s.TopicPrefix + "." + logical
}
