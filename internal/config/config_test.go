package config

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestLoadDefaultsAndOverrides(t *testing.T) {
	t.Setenv("CDP_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("CDP_TOPIC_PREFIX", "acme")
	t.Setenv("CDP_REDIS_URL", "")
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.KafkaBrokers) != 2 || s.KafkaBrokers[1] != "b:2" {
		t.Errorf("brokers = %v", s.KafkaBrokers)
	}
	if s.RedisURL != "redis://127.0.0.1:6379/0" {
		t.Errorf("empty CDP_REDIS_URL should take the default, got %q", s.RedisURL)
	}
	if got := s.Topic("events.raw"); got != "acme.events.raw" {
		t.Errorf("Topic = %q", got)
	}
}

func TestValidate(t *testing.T) {
	ok := Services{KafkaBrokers: []string{"k:9092"}, SchemaRegistryURL: "http://r", RedisURL: "redis://x", ClickHouseDSN: "clickhouse://c"}
	for _, tc := range []struct {
		name   string
		mutate func(*Services)
		want   string
	}{
		{"valid", func(*Services) {}, ""},
		{"no brokers", func(s *Services) { s.KafkaBrokers = []string{" "} }, "CDP_KAFKA_BROKERS"},
		{"registry not http", func(s *Services) { s.SchemaRegistryURL = "r:8081" }, "CDP_SCHEMA_REGISTRY_URL"},
		{"redis not redis url", func(s *Services) { s.RedisURL = "127.0.0.1:6379" }, "CDP_REDIS_URL"},
		{"redis cluster", func(s *Services) { s.RedisURL = "redis+cluster://a:1?addr=b:2" }, ""},
		{"identity redis", func(s *Services) { s.IdentityRedisURL = "rediss://x:1" }, ""},
		{"identity redis not a url", func(s *Services) { s.IdentityRedisURL = "x:1" }, "CDP_IDENTITY_REDIS_URL"},
		{"no clickhouse", func(s *Services) { s.ClickHouseDSN = "" }, "CDP_CLICKHOUSE_DSN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.KafkaBrokers = append([]string(nil), ok.KafkaBrokers...)
			tc.mutate(&s)
			err := s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestTopicWithoutPrefix(t *testing.T) {
	if got := (Services{}).Topic("events.raw"); got != "events.raw" {
		t.Errorf("Topic = %q", got)
	}
}

func TestNewRedis(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		addrs   string
	}{
		{"redis://127.0.0.1:6379/2", false, "127.0.0.1:6379"},
		{"redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", true, "127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002"},
	} {
		c, err := NewRedis(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		switch cl := c.(type) {
		case *redis.ClusterClient:
			if !tc.cluster || strings.Join(cl.Options().Addrs, " ") != tc.addrs {
				t.Errorf("%s: cluster client of %v", tc.url, cl.Options().Addrs)
			}
		case *redis.Client:
			if tc.cluster || cl.Options().Addr != tc.addrs || cl.Options().DB != 2 {
				t.Errorf("%s: client of %s db %d", tc.url, cl.Options().Addr, cl.Options().DB)
			}
		default:
			t.Errorf("%s: %T", tc.url, c)
		}
		c.Close()
	}
	if _, err := NewRedis("redis+cluster://h:1?bogus=1"); err == nil {
		t.Error("an unknown cluster URL parameter was accepted")
	}
	if IsClusterURL("redis://a:1") || !IsClusterURL("rediss+cluster://a:1") {
		t.Error("IsClusterURL")
	}
	if s := (Services{RedisURL: "redis://a:1"}); s.IdentityRedis() != "redis://a:1" {
		t.Error("IdentityRedis default")
	}
	if s := (Services{RedisURL: "redis://a:1", IdentityRedisURL: "redis://b:2"}); s.IdentityRedis() != "redis://b:2" {
		t.Error("IdentityRedis override")
	}
}
