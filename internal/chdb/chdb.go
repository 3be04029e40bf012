// Package chdb serves a real ClickHouse (26.x) from libchdb.so, the
// ClickHouse engine that chDB publishes as the npm package
// @chdb/lib-linux-x64-gnu. Its C entry point chdb_query_cmdline runs
// clickhouse-local with the given arguments; started with --tcp_port,
// --http_port and a query that first opens the listeners and then blocks, it
// serves the native and HTTP protocols for as long as that query runs.
//
// This is what lets the local stack run a current ClickHouse on machines
// without Docker, where the distribution's clickhouse-server is too old for
// clickhouse-go v2.
package chdb

import "fmt"

// Options says where the library is and how to serve.
type Options struct {
	Library  string // path to libchdb.so
	DataDir  string // ClickHouse --path; survives restarts
	Host     string // listen host, default 127.0.0.1
	TCPPort  int    // native protocol
	HTTPPort int    // HTTP interface
}

// blockingQuery opens the listeners, then sleeps for about 31 years: the
// listeners close when chdb_query_cmdline returns, so the query must not.
// max_block_size=1 makes sleepEachRow sleep one second per block, below the
// per-block sleep limit.
const blockingQuery = "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
	"SELECT sleepEachRow(1) FROM numbers(1000000000) " +
	"SETTINGS max_block_size=1, function_sleep_max_microseconds_per_block=0 FORMAT Null"

// args builds clickhouse-local's command line.
func (o Options) args() []string {
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return []string{
		"clickhouse",
		"--path=" + o.DataDir,
		fmt.Sprintf("--tcp_port=%d", o.TCPPort),
		fmt.Sprintf("--http_port=%d", o.HTTPPort),
		"--listen_host=" + host,
		"--query=" + blockingQuery,
	}
}
