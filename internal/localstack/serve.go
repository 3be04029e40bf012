package localstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/chdb"
)

// ServeKafka runs a single-broker kfake cluster on 127.0.0.1:port with its
// state in dir until ctx ends, then closes it cleanly (flushing state).
// After a crash kfake recovers from the same dir: topics, records, committed
// offsets and aborted transactions.
func ServeKafka(ctx context.Context, log *zap.Logger, dir string, port int) error {
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.NumBrokers(1),
		kfake.DataDir(dir),
		kfake.ClusterID("streamcdp-local"),
		kfake.WithLogger(kfake.BasicLogger(zap.NewStdLog(log).Writer(), kfake.LogLevelWarn)),
	)
	if err != nil {
		return fmt.Errorf("starting kfake on port %d with data in %s: %w", port, dir, err)
	}
	log.Info("kafka broker serving", zap.Strings("addrs", c.ListenAddrs()), zap.String("dir", dir))
	<-ctx.Done()
	log.Info("kafka broker shutting down")
	c.Close()
	return nil
}

// ServeRegistry runs the schema registry on 127.0.0.1:port until ctx ends.
// Every mutation is journaled in dir and replayed on start, so schema ids
// are the same after a restart (srfake itself keeps everything in memory).
func ServeRegistry(ctx context.Context, log *zap.Logger, dir string, port int) error {
	reg := srfake.NewRegistry()
	j, replayed, err := openJournal(dir, reg.Handler())
	if err != nil {
		return err
	}
	defer j.Close()
	log.Info("schema registry journal replayed", zap.Int("mutations", replayed), zap.String("dir", dir))
	ln, err := net.Listen("tcp", net.JoinHostPort(Host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listening on port %d: %w", port, err)
	}
	srv := &http.Server{Handler: enforceCompatibility(j), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("schema registry serving", zap.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving registry: %w", err)
	}
	return nil
}

// ServeClickHouse serves ClickHouse from libchdb.so. It does not return
// while serving; the process is stopped by a signal.
func ServeClickHouse(log *zap.Logger, lib, dir string, tcpPort, httpPort int) error {
	log.Info("clickhouse serving", zap.String("lib", lib), zap.String("dir", dir), zap.Int("tcp", tcpPort), zap.Int("http", httpPort))
	return chdb.Serve(chdb.Options{Library: lib, DataDir: dir, Host: Host, TCPPort: tcpPort, HTTPPort: httpPort})
}
