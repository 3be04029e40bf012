package devstack

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/internal/console"
	"github.com/streamcdp/streamcdp/internal/profileapi"
	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/processors/segments"
)

// collector samples the platform every second into a console.Summary.
// Totals come from where they persist (Kafka end offsets, the identity
// graph's counters, segment sizes in Redis, ClickHouse), so a second
// `cdp dev` on the same data continues them; rates per processor come from
// this process's Prometheus registry.
type collector struct {
	start     time.Time
	reg       *prometheus.Registry
	adm       *kadm.Client
	graph     *identity.Graph
	segs      *segments.Reader
	ch        driver.Conn
	profiles  *profileapi.Service
	rawTopic  string
	dlqTopic  string
	urls      []console.Link
	apiURL    string
	token     string
	processor []string
	log       *zap.Logger

	mu     sync.Mutex
	latest console.Summary
	// recent samples, oldest first, for rates over rateWindow
	history []point
	// ClickHouse figures are refreshed every few seconds
	chAt    time.Time
	chRows  int64
	sample  string // profile id of the sample
	sampleQ string // its email, else its id
}

// rateWindow is what rates average over: the warehouse inserts in
// batches, so a one-second rate would flicker between 0 and a burst.
const rateWindow = 5 * time.Second

// point is what rates are computed from.
type point struct {
	at      time.Time
	in      int64
	records map[string]float64
}

// Latest returns the newest sample.
func (c *collector) Latest() console.Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latest
}

// sampleNow takes one sample; errors of single sources leave their figures
// at the previous value and are logged (a store may be restarting).
func (c *collector) sampleNow(ctx context.Context) console.Summary {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	now := time.Now()
	c.mu.Lock()
	s := c.latest
	c.mu.Unlock()
	s.At, s.Uptime, s.URLs = now.UTC(), time.Since(c.start).Round(time.Second).String(), c.urls

	if ends, err := c.adm.ListEndOffsets(ctx, c.rawTopic, c.dlqTopic); err == nil {
		var in, dlq int64
		ends.Each(func(o kadm.ListedOffset) {
			switch o.Topic {
			case c.rawTopic:
				in += o.Offset
			case c.dlqTopic:
				dlq += o.Offset
			}
		})
		s.EventsIn, s.DeadLetters = in, dlq
	} else {
		c.log.Debug("summary: end offsets", zap.Error(err))
	}
	records, lags := c.gather()
	var base *point
	for len(c.history) > 1 && now.Sub(c.history[1].at) >= rateWindow {
		c.history = c.history[1:]
	}
	if len(c.history) > 0 {
		base = &c.history[0]
	}
	s.Processors = s.Processors[:0:0]
	s.Lag = 0
	for _, name := range c.processor {
		p := console.ProcessorStat{Name: name, Records: int64(records[name]), Lag: int64(lags[name])}
		if base != nil {
			p.Rate = (records[name] - base.records[name]) / now.Sub(base.at).Seconds()
		}
		s.Lag += p.Lag
		s.Processors = append(s.Processors, p)
	}
	s.EventsRate = 0
	if base != nil && s.EventsIn >= base.in {
		s.EventsRate = float64(s.EventsIn-base.in) / now.Sub(base.at).Seconds()
	}
	c.history = append(c.history, point{at: now, in: s.EventsIn, records: records})

	if st, err := c.graph.Stats(ctx); err == nil {
		s.Profiles, s.Merges = st.Profiles, st.Created-st.Profiles
	} else {
		c.log.Debug("summary: graph stats", zap.Error(err))
	}
	if sizes, err := c.segs.Sizes(ctx); err == nil {
		s.Segments = s.Segments[:0:0]
		for _, seg := range c.segs.Rules().Segments {
			s.Segments = append(s.Segments, console.SegmentSize{Name: seg.Name, Members: sizes[seg.Name]})
		}
	} else {
		c.log.Debug("summary: segment sizes", zap.Error(err))
	}
	if now.Sub(c.chAt) >= 5*time.Second {
		c.chAt = now
		c.clickhouse(ctx)
	}
	s.WarehouseEvents = c.chRows
	if c.sample != "" {
		s.SampleProfile = c.sampleQ
		s.SampleCurl = c.curl()
	}
	c.mu.Lock()
	c.latest = s
	c.mu.Unlock()
	return s
}

// gather sums the processors' consumed records and lag by processor.
func (c *collector) gather() (records, lags map[string]float64) {
	records, lags = map[string]float64{}, map[string]float64{}
	mfs, err := c.reg.Gather()
	if err != nil {
		c.log.Debug("summary: gathering metrics", zap.Error(err))
	}
	for _, mf := range mfs {
		var into map[string]float64
		switch mf.GetName() {
		case "cdp_records_in_total":
			into = records
		case "cdp_consumer_lag":
			into = lags
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			var proc string
			for _, l := range m.GetLabel() {
				if l.GetName() == "processor" {
					proc = l.GetValue()
				}
			}
			if m.Counter != nil {
				into[proc] += m.Counter.GetValue()
			} else if m.Gauge != nil {
				into[proc] += m.Gauge.GetValue()
			}
		}
	}
	return records, lags
}

// clickhouse refreshes the warehouse's row count and, until one is found,
// picks the sample profile: the latest with a user id and an email (a
// signed-in shopper, looked up by email in the curl), whose segments move
// as it buys.
func (c *collector) clickhouse(ctx context.Context) {
	var n uint64
	if err := c.ch.QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err == nil {
		c.chRows = int64(n)
	} else {
		c.log.Debug("summary: counting warehouse events", zap.Error(err))
	}
	if c.sample != "" {
		return
	}
	var id string
	err := c.ch.QueryRow(ctx, `SELECT profile_id FROM events WHERE user_id != '' AND email != '' ORDER BY inserted_at DESC LIMIT 1`).Scan(&id)
	if err != nil || id == "" {
		return
	}
	p, err := c.profiles.ByID(ctx, id)
	if err != nil {
		return
	}
	c.sample, c.sampleQ = p.ProfileID, p.ProfileID
	for _, ident := range p.Identities {
		if ident.Type == identity.TypeEmail {
			c.sampleQ = ident.Value
			break
		}
	}
}

// curl is a ready-to-paste request for the sample profile.
func (c *collector) curl() string {
	u := c.apiURL + "/v1/profiles/" + url.PathEscape(c.sample)
	if c.sampleQ != c.sample {
		u = c.apiURL + "/v1/profiles/by-identifier?type=email&value=" + url.QueryEscape(c.sampleQ)
	}
	return fmt.Sprintf("curl -s -H 'Authorization: Bearer %s' '%s'", c.token, u)
}

// line is the one-line form of a summary, for logs and pipes.
func line(s console.Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dev: up=%s events_in=%d rate=%.1f/s", s.Uptime, s.EventsIn, s.EventsRate)
	for _, p := range s.Processors {
		fmt.Fprintf(&b, " %s=%.1f/s", p.Name, p.Rate)
	}
	fmt.Fprintf(&b, " profiles=%d merges=%d dlq=%d lag=%d warehouse_events=%d segments=", s.Profiles, s.Merges, s.DeadLetters, s.Lag, s.WarehouseEvents)
	for i, g := range s.Segments {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", g.Name, g.Members)
	}
	return b.String()
}

// screen draws the full-screen form of a summary on a terminal.
func screen(w io.Writer, s console.Summary, dir string) {
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J") // home, clear: redraw in place
	fmt.Fprintf(&b, "StreamCDP dev · up %s · data in %s · Ctrl-C stops everything\n\n", s.Uptime, dir)
	fmt.Fprintf(&b, "  events in     %12d   %8.1f/s\n", s.EventsIn, s.EventsRate)
	fmt.Fprintf(&b, "  profiles      %12d   merges %d\n", s.Profiles, s.Merges)
	fmt.Fprintf(&b, "  dead letters  %12d   lag %d records\n", s.DeadLetters, s.Lag)
	fmt.Fprintf(&b, "  warehouse     %12d   events in ClickHouse\n\n", s.WarehouseEvents)
	fmt.Fprintf(&b, "  %-12s %10s %14s %8s\n", "processor", "records/s", "this run", "lag")
	for _, p := range s.Processors {
		fmt.Fprintf(&b, "  %-12s %10.1f %14d %8d\n", p.Name, p.Rate, p.Records, p.Lag)
	}
	b.WriteString("\n  segments\n")
	for _, g := range s.Segments {
		fmt.Fprintf(&b, "    %-18s %8d\n", g.Name, g.Members)
	}
	b.WriteByte('\n')
	for _, l := range s.URLs {
		fmt.Fprintf(&b, "  %-11s %s\n", l.Name, l.URL)
	}
	if s.SampleCurl != "" {
		b.WriteString("\n  one live profile:\n  ")
		b.WriteString(s.SampleCurl) // one line, so it pastes whole
		b.WriteByte('\n')
	} else {
		b.WriteString("\n  (waiting for a profile to enter a segment for the sample curl)\n")
	}
	_, _ = io.WriteString(w, b.String())
}
