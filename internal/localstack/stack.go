// Package localstack runs StreamCDP's four services as ordinary processes on
// one machine, with all data under one directory that survives restarts:
//
//   - kafka:      a Kafka-protocol broker (franz-go's kfake with a data dir)
//   - registry:   a Confluent-compatible schema registry (srfake) whose
//     mutations are journaled and replayed, so schema ids survive restarts
//   - redis:      the distribution's redis-server with an append-only file
//   - clickhouse: ClickHouse 26.x from libchdb.so (package chdb)
//
// Each service is a background process with a pid file and a log under the
// stack directory; `cdp local up` starts what is not running, `down` stops
// everything, `status` health-checks each service on its address.
package localstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Ports are the loopback ports the stack listens on.
type Ports struct {
	Kafka          int `json:"kafka"`
	Registry       int `json:"registry"`
	Redis          int `json:"redis"`
	ClickHouseTCP  int `json:"clickhouse_tcp"`
	ClickHouseHTTP int `json:"clickhouse_http"`
}

// DefaultPorts are the services' usual ports, so third-party tools work
// against the stack without flags.
var DefaultPorts = Ports{Kafka: 9092, Registry: 8081, Redis: 6379, ClickHouseTCP: 9000, ClickHouseHTTP: 8123}

// Host is the address every service binds to: loopback only.
const Host = "127.0.0.1"

// Stack is one stack directory.
type Stack struct {
	Dir   string
	Ports Ports
	// CHDBLibrary is the path of libchdb.so (see EnsureCHDB).
	CHDBLibrary string `json:"chdb_library"`
}

const stateFile = "stack.json"

// Open reads the stack in dir. A stack that was never started has no state
// file; Open then returns a Stack with default ports and ok=false.
func Open(dir string) (st *Stack, ok bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, false, fmt.Errorf("resolving stack dir %s: %w", dir, err)
	}
	st = &Stack{Dir: abs, Ports: DefaultPorts}
	b, err := os.ReadFile(filepath.Join(abs, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading stack state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, false, fmt.Errorf("parsing %s: %w", filepath.Join(abs, stateFile), err)
	}
	st.Dir = abs
	return st, true, nil
}

// Save writes the stack's ports so later commands find the same addresses.
func (s *Stack) Save() error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("creating stack dir: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing stack state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.Dir, stateFile))
}

// path returns a path inside the stack directory.
func (s *Stack) path(parts ...string) string {
	return filepath.Join(append([]string{s.Dir}, parts...)...)
}

// Env returns the CDP_* variables that point commands and tests at the stack.
func (s *Stack) Env() [][2]string {
	return [][2]string{
		{"CDP_KAFKA_BROKERS", addr(s.Ports.Kafka)},
		{"CDP_SCHEMA_REGISTRY_URL", "http://" + addr(s.Ports.Registry)},
		{"CDP_REDIS_URL", "redis://" + addr(s.Ports.Redis) + "/0"},
		{"CDP_CLICKHOUSE_DSN", "clickhouse://" + addr(s.Ports.ClickHouseTCP) + "/default"},
		{"CDP_CLICKHOUSE_HTTP_URL", "http://" + addr(s.Ports.ClickHouseHTTP)},
	}
}

func addr(port int) string { return net.JoinHostPort(Host, strconv.Itoa(port)) }

// FreePorts asks the kernel for five distinct free loopback ports.
func FreePorts() (Ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports [5]int
	for i := range ports {
		l, err := net.Listen("tcp", Host+":0")
		if err != nil {
			return Ports{}, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return Ports{Kafka: ports[0], Registry: ports[1], Redis: ports[2], ClickHouseTCP: ports[3], ClickHouseHTTP: ports[4]}, nil
}

// portFree reports whether nothing listens on the loopback port.
func portFree(port int) bool {
	l, err := net.Listen("tcp", addr(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
