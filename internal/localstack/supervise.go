package localstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Engine restarts: a run shorter than engineQuickExit counts as failing at
// start (a port taken, a broken data directory); after engineMaxQuick such
// runs in a row the supervisor gives up rather than loop.
const (
	engineQuickExit = 10 * time.Second
	engineMaxQuick  = 3
)

// SuperviseEngine runs the ClickHouse engine as a child process (path with
// args, which serve it in that process) and starts it again when it exits
// by itself. The chDB engine has been seen to exit when a client is
// SIGKILLed in the middle of an insert; every acknowledged insert is on
// disk, so a restart on the same data directory loses nothing, and the
// stack's ClickHouse comes back within seconds instead of staying down
// until the next `cdp local up`. The child dies with the supervisor
// (Pdeathsig), so stopping or killing the supervisor stops the engine. It
// returns nil when ctx ends (the child is killed; exiting at once is safe
// for the same reason), or an error after engineMaxQuick quick exits in a
// row.
func SuperviseEngine(ctx context.Context, log *zap.Logger, path string, args []string) error {
	quick := 0
	for run := 1; ; run++ {
		started := time.Now()
		pid, exited, err := startEngine(path, args)
		if err != nil {
			return err
		}
		log.Info("clickhouse engine started", zap.Int("pid", pid), zap.Int("run", run))
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
			return nil
		case err := <-exited:
			ran := time.Since(started)
			if ran < engineQuickExit {
				quick++
			} else {
				quick = 0
			}
			if quick >= engineMaxQuick {
				return fmt.Errorf("the ClickHouse engine exited %d times in a row within %s of starting (last: %v); see the lines above", quick, engineQuickExit, err)
			}
			log.Warn("the ClickHouse engine exited by itself; starting it again on its data",
				zap.Int("pid", pid), zap.Duration("ran", ran.Round(time.Millisecond)), zap.NamedError("exit", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Duration(quick) * time.Second):
			}
		}
	}
}

// startEngine starts the child on a goroutine locked to its OS thread: the
// parent-death signal is tied to the thread that started the child, which
// must live as long as the child.
func startEngine(path string, args []string) (int, <-chan error, error) {
	started := make(chan error, 1)
	exited := make(chan error, 1)
	var pid int
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		cmd := exec.Command(path, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("starting the ClickHouse engine (%s): %w", path, err)
			return
		}
		pid = cmd.Process.Pid
		started <- nil
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		exited <- err
	}()
	if err := <-started; err != nil {
		return 0, nil, err
	}
	return pid, exited, nil
}
