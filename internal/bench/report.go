package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// WriteFiles writes the result as JSON and Markdown.
func (r *Result) WriteFiles(jsonPath, mdPath string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", jsonPath, err)
	}
	var sb strings.Builder
	r.Markdown(&sb)
	if err := os.WriteFile(mdPath, []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", mdPath, err)
	}
	return nil
}

// Markdown writes the result as a short report.
func (r *Result) Markdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "# cdp bench, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "`%s`\n\n", r.Command)
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %d GiB, Linux %s, %s; load average %s before, %s after; all CPUs %.0f%% busy during the throughput phase.\n\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.Go, r.LoadBefore, r.LoadAfter, 100*r.MachineCPUBusy)
	fmt.Fprintf(w, "%d events (%d persons, seed %d) produced in %.1f s (%.0f/s); topic prefix `%s`.\n\n",
		r.Events, r.Persons, r.Seed, r.ProduceSecs, r.ProducePerSec, r.Prefix)
	fmt.Fprintf(w, "| what | result |\n|---|---|\n")
	fmt.Fprintf(w, "| end to end (first raw event produced → every processor committed all its input) | **%.0f events/s** (%.1f s) |\n", r.EndToEndPerSec, r.EndToEndSecs)
	lat := func(l Latency) string {
		if l.Count == 0 {
			return "no changes measured"
		}
		return fmt.Sprintf("p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (%d changes)", l.P50, l.P95, l.P99, l.Max, l.Count)
	}
	if r.LatencyRate > 0 {
		fmt.Fprintf(w, "| event → membership change visible (read_committed), at %.0f events/s | %s |\n", r.LatencyRate, lat(r.LatencyPaced))
		fmt.Fprintf(w, "| event → membership change decided (evaluated_at), at %.0f events/s | %s |\n", r.LatencyRate, lat(r.LatencyPacedDecide))
	}
	fmt.Fprintf(w, "| event → membership change visible, throughput phase (mostly queueing) | %s |\n", lat(r.LatencySaturated))
	fmt.Fprintf(w, "| Redis memory | %.0f bytes per profile (%d bytes for %d profiles); Redis CPU %.1f s |\n", r.RedisBytesPerProfile, r.RedisBytes, r.Profiles, r.RedisCPUSeconds)
	fmt.Fprintf(w, "| ClickHouse | %d rows inserted, %.0f rows/s; %d events rows |\n", r.ClickHouseRows, r.ClickHouseRowsPerSec, r.ClickHouseEvents)
	fmt.Fprintf(w, "| membership changes | %d |\n", r.MembershipChanges)
	fmt.Fprintf(w, "| this process (produce, watch) | %.1f CPU s |\n", r.BenchCPUSeconds)
	if len(r.Services) > 0 {
		fmt.Fprintf(w, "| services' CPU in the throughput phase |")
		for i, sv := range r.Services {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(w, "%s %s %.1f s", sep, sv.Name, sv.CPUSeconds)
		}
		fmt.Fprintf(w, " |\n")
	}
	fmt.Fprintf(w, "\n| processor | records in (all inputs) | first input | done after | records/s | first input/s | peak first input/s (2 s) | CPU s | CPU µs/event |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Processors {
		fmt.Fprintf(w, "| %s | %d | %d | %.1f s | %.0f | %.0f | %.0f | %.1f | %.0f |\n",
			p.Name, p.Records, p.Events, p.Seconds, p.RecordsPerSec, p.EventsPerSec, p.PeakPerSec, p.CPUSeconds, p.CPUMicrosPerEvent)
	}
}
