package config

import (
	"strings"
	"testing"
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
