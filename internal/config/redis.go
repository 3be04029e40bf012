package config

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis URLs name one server or a cluster:
//
//	redis://[user:pass@]host:port/db        one server (rediss:// with TLS)
//	unix:///path/to/redis.sock?db=0         one server on a Unix socket
//	redis+cluster://host:port?addr=host2:port2&addr=host3:port3
//	                                        a Redis Cluster, from any seeds
//	                                        (rediss+cluster:// with TLS)
//
// Every key StreamCDP writes carries a hash tag, so one script's keys share
// a slot on a cluster.
const clusterScheme = "+cluster://"

// IsClusterURL reports whether url names a Redis Cluster.
func IsClusterURL(url string) bool { return strings.Contains(url, clusterScheme) }

// NewRedis connects to the server or cluster url names (see above).
func NewRedis(url string) (redis.UniversalClient, error) {
	if IsClusterURL(url) {
		opt, err := redis.ParseClusterURL(strings.Replace(url, clusterScheme, "://", 1))
		if err != nil {
			return nil, fmt.Errorf("parsing the Redis Cluster URL %q: %w", url, err)
		}
		return redis.NewClusterClient(opt), nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing the Redis URL %q: %w", url, err)
	}
	return redis.NewClient(opt), nil
}

// IdentityRedis is the URL of the identity graph's Redis: its own when
// CDP_IDENTITY_REDIS_URL is set, so that its scripts never stall the
// feature store, else the shared one.
func (s Services) IdentityRedis() string {
	if s.IdentityRedisURL != "" {
		return s.IdentityRedisURL
	}
	return s.RedisURL
}
