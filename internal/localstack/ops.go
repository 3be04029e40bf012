package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ServiceStatus is the state of one service.
type ServiceStatus struct {
	Name    string
	What    string
	Address string
	PID     int
	Healthy bool
	// Detail is the health check's summary, or why the service is down.
	Detail string
	// PortTaken: the service does not run and another process holds one
	// of its ports.
	PortTaken bool
}

// Status checks every service: its process and its health on its ports.
func (s *Stack) Status(ctx context.Context) []ServiceStatus {
	out := make([]ServiceStatus, 0, len(services))
	for _, sv := range services {
		out = append(out, s.status(ctx, sv))
	}
	return out
}

func (s *Stack) status(ctx context.Context, sv service) ServiceStatus {
	st := ServiceStatus{Name: sv.name, What: sv.what, PID: s.pid(sv.name)}
	var addrs []string
	for _, p := range sv.ports(s.Ports) {
		addrs = append(addrs, addr(p))
	}
	st.Address = strings.Join(addrs, ", ")
	if st.PID == 0 {
		st.Detail = "not running"
		if !portsFree(sv.ports(s.Ports)) {
			st.Detail, st.PortTaken = "not running; its port is taken by another process", true
		}
		return st
	}
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	detail, err := sv.health(hctx, s)
	if err != nil {
		st.Detail = "process runs but does not answer: " + err.Error()
		return st
	}
	st.Healthy, st.Detail = true, detail
	return st
}

func portsFree(ports []int) bool {
	for _, p := range ports {
		if !portFree(p) {
			return false
		}
	}
	return true
}

// Up starts every service that is not running and waits until each answers.
// Progress lines go to w. self is the cdp binary that serves kafka, registry
// and clickhouse.
func (s *Stack) Up(ctx context.Context, self string, w io.Writer) error {
	if err := s.Save(); err != nil {
		return err
	}
	for _, sv := range services {
		if err := s.up(ctx, sv, self, w); err != nil {
			return fmt.Errorf("starting %s: %w", sv.name, err)
		}
	}
	return nil
}

func (s *Stack) up(ctx context.Context, sv service, self string, w io.Writer) error {
	if pid := s.pid(sv.name); pid != 0 {
		st := s.status(ctx, sv)
		if st.Healthy {
			fmt.Fprintf(w, "  %-10s already running (pid %d) on %s: %s\n", sv.name, pid, st.Address, st.Detail)
			return nil
		}
		// Running but not answering: it may still be starting.
		return s.waitHealthy(ctx, sv, pid, w)
	}
	for _, p := range sv.ports(s.Ports) {
		if !portFree(p) {
			return fmt.Errorf("port %d on %s is in use by another process: stop that process, or start the stack on other ports (cdp local up --ports auto, or --%s-port N)", p, Host, sv.name)
		}
	}
	path, args, err := sv.command(s, self)
	if err != nil {
		return err
	}
	pid, err := s.spawn(sv.name, path, args)
	if err != nil {
		return err
	}
	return s.waitHealthy(ctx, sv, pid, w)
}

func (s *Stack) waitHealthy(ctx context.Context, sv service, pid int, w io.Writer) error {
	start := time.Now()
	deadline := start.Add(sv.startTimeout)
	var lastErr error
	for {
		if !alive(pid) {
			return fmt.Errorf("the process exited; last lines of %s:\n%s", s.LogFile(sv.name), s.logTail(sv.name, 15))
		}
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		detail, err := sv.health(hctx, s)
		cancel()
		if err == nil {
			fmt.Fprintf(w, "  %-10s up (pid %d) on %s in %.1fs: %s\n", sv.name, pid, strings.Join(addrsOf(sv.ports(s.Ports)), ", "), time.Since(start).Seconds(), detail)
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s (%v); see %s", sv.startTimeout, lastErr, s.LogFile(sv.name))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func addrsOf(ports []int) []string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = addr(p)
	}
	return out
}

// Down stops every running service, in reverse start order.
func (s *Stack) Down(w io.Writer) error {
	var errs []error
	for i := len(services) - 1; i >= 0; i-- {
		name := services[i].name
		stopped, err := s.stop(name, 20*time.Second)
		switch {
		case err != nil:
			errs = append(errs, err)
		case stopped:
			fmt.Fprintf(w, "  %-10s stopped\n", name)
		default:
			fmt.Fprintf(w, "  %-10s was not running\n", name)
		}
	}
	return errors.Join(errs...)
}

// Kill stops one service with SIGKILL, as a crash would. For tests.
func (s *Stack) Kill(name string) error {
	pid := s.pid(name)
	if pid == 0 {
		return fmt.Errorf("%s is not running", name)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Kill(); err != nil {
		return err
	}
	for i := 0; i < 250 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
