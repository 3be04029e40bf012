// Package console serves the local console page of `cdp dev`: a small
// server-rendered page (html/template) for users without Grafana, with
// the live summary, the Overview, Customers and Commerce charts and a
// profile lookup by any identifier.
//
// The charts run exactly the SQL of the Grafana panels: the panel registry
// of deploy/grafana, expanded by its macro expansion (grafana.Expand) for
// the page's time range, so there is one copy of every query. The profile
// lookup goes through the profile API's Service (internal/profileapi), the
// same code that answers /v1/profiles, with recent events from the
// warehouse. Charts are drawn in the browser by Chart.js, vendored under
// static/ (no build chain).
//
// The page has no authentication of its own: `cdp dev` binds it to
// loopback only. Do not expose it; the profile API (with its tokens) is
// the interface for other machines.
package console

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/streamcdp/streamcdp/deploy/grafana"
	"github.com/streamcdp/streamcdp/internal/profileapi"
)

// ChartJSVersion is the vendored Chart.js (static/VENDOR.md).
const ChartJSVersion = "4.6.1"

//go:embed static/*.js static/*.css
var static embed.FS

//go:embed page.html
var pageHTML string

// Summary is the live state of the platform the page shows at its top
// and serves as /summary.json; `cdp dev` fills it every second.
type Summary struct {
	At              time.Time       `json:"at"`
	Uptime          string          `json:"uptime"`
	EventsIn        int64           `json:"events_in"`
	EventsRate      float64         `json:"events_per_second"`
	Processors      []ProcessorStat `json:"processors"`
	Profiles        int64           `json:"profiles"`
	Merges          int64           `json:"merges"`
	DeadLetters     int64           `json:"dead_letters"`
	Lag             int64           `json:"lag"`
	WarehouseEvents int64           `json:"warehouse_events"`
	Segments        []SegmentSize   `json:"segments"`
	URLs            []Link          `json:"urls"`
	// SampleCurl reads one live profile through the API (token included).
	SampleCurl string `json:"sample_curl,omitempty"`
	// SampleProfile is that profile's email (or id), for the lookup.
	SampleProfile string `json:"sample_profile,omitempty"`
}

// ProcessorStat is one processor's throughput and lag.
type ProcessorStat struct {
	Name    string  `json:"name"`
	Rate    float64 `json:"records_per_second"`
	Records int64   `json:"records"`
	Lag     int64   `json:"lag"`
}

// SegmentSize is a segment's current member count.
type SegmentSize struct {
	Name    string `json:"name"`
	Members int64  `json:"members"`
}

// Link is a named URL.
type Link struct{ Name, URL string }

// Options configure the console.
type Options struct {
	// ClickHouse holds the warehouse's tables (its default database).
	ClickHouse driver.Conn
	// Profiles answers lookups; IdentifierTypes are tried in order
	// (the identity rules' priority) when the query is not a profile id.
	Profiles        *profileapi.Service
	IdentifierTypes []string
	// Summary returns the latest live summary (nil: none shown).
	Summary func() Summary
	Logger  *zap.Logger
	// Now is the end of the charts' time range (default time.Now).
	Now func() time.Time
}

// Ranges are the time ranges the page offers, the first the default.
var Ranges = []string{"1h", "15m", "6h", "24h", "7d", "30d"}

// section is a group of panels on the page, taken from a dashboard.
type section struct {
	Title  string
	Panels []grafana.Panel
}

// sections picks the dashboards' panels the page shows, by key, in the
// dashboards' order: the main Overview and Commerce panels and the
// Customers dashboard's segment panels.
func sections() []section {
	want := map[string][]string{
		"streamcdp-overview":  {"events_per_interval", "events_by_type", "active_profiles", "new_profiles", "merges", "dead_letters", "processing_lag"},
		"streamcdp-customers": {"segment_members_now", "segment_flows"},
		"streamcdp-commerce":  {"orders_summary", "revenue_per_day", "funnel", "top_products", "revenue_by_category"},
	}
	var out []section
	for _, d := range grafana.Dashboards {
		keys, ok := want[d.UID]
		if !ok {
			continue
		}
		s := section{Title: strings.TrimPrefix(d.Title, "StreamCDP / ")}
		for _, p := range d.Panels {
			if slices.Contains(keys, p.Key) {
				s.Panels = append(s.Panels, p)
			}
		}
		out = append(out, s)
	}
	return out
}

// panelByKey finds a panel of the registry and its dashboard.
func panelByKey(key string) (grafana.Dashboard, grafana.Panel, bool) {
	for _, d := range grafana.Dashboards {
		for _, p := range d.Panels {
			if p.Key == key {
				return d, p, true
			}
		}
	}
	return grafana.Dashboard{}, grafana.Panel{}, false
}

type handler struct {
	o    Options
	page *template.Template
}

// NewHandler returns the console's HTTP handler.
func NewHandler(o Options) (http.Handler, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	page, err := template.New("page").Funcs(template.FuncMap{
		"json": func(v any) (template.JS, error) {
			b, err := json.Marshal(v)
			return template.JS(b), err
		},
		"num":     func(f float64) string { return fmt.Sprintf("%.1f", f) },
		"feature": featureValue,
	}).Parse(pageHTML)
	if err != nil {
		return nil, fmt.Errorf("parsing the console page: %w", err)
	}
	h := &handler{o: o, page: page}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.index)
	mux.HandleFunc("GET /summary.json", h.summary)
	mux.HandleFunc("GET /panels/{key}", h.panel)
	mux.Handle("GET /static/", http.FileServerFS(static))
	return mux, nil
}

// pageData is what page.html renders.
type pageData struct {
	Summary  *Summary
	Sections []section
	Range    string
	Ranges   []string
	Query    string
	Lookup   *lookupResult
	ChartJS  string
}

type lookupResult struct {
	By      string
	Profile *profileapi.Profile
	Events  []profileapi.Event
	// EventsNote says why events are missing, if they are.
	EventsNote string
	Error      string
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	d := pageData{Sections: sections(), Range: Ranges[0], Ranges: Ranges, ChartJS: ChartJSVersion}
	if rg := r.URL.Query().Get("range"); slices.Contains(Ranges, rg) {
		d.Range = rg
	}
	if h.o.Summary != nil {
		s := h.o.Summary()
		d.Summary = &s
	}
	if q := strings.TrimSpace(r.URL.Query().Get("q")); q != "" {
		d.Query = q
		d.Lookup = h.lookup(r.Context(), q)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := h.page.Execute(w, d); err != nil {
		h.o.Logger.Warn("rendering the console page", zap.Error(err))
	}
}

func (h *handler) summary(w http.ResponseWriter, _ *http.Request) {
	var s Summary
	if h.o.Summary != nil {
		s = h.o.Summary()
	}
	writeJSON(w, http.StatusOK, s)
}

// lookup finds the profile q names: a profile id (also a merged-away
// one), else an identifier of the first type, in the identity rules'
// priority, that some profile holds.
func (h *handler) lookup(ctx context.Context, q string) *lookupResult {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res := &lookupResult{}
	p, err := h.o.Profiles.ByID(ctx, q)
	res.By = "profile_id"
	for _, typ := range h.o.IdentifierTypes {
		if !errors.Is(err, profileapi.ErrProfileNotFound) {
			break
		}
		p, err = h.o.Profiles.ByIdentifier(ctx, typ, q)
		res.By = typ
	}
	switch {
	case errors.Is(err, profileapi.ErrProfileNotFound):
		res.Error = fmt.Sprintf("no profile has the id or identifier %q", q)
		return res
	case err != nil:
		res.Error = "looking the profile up: " + err.Error()
		return res
	}
	res.Profile = p
	page, err := h.o.Profiles.Events(ctx, p.ProfileID, "", 20)
	switch {
	case errors.Is(err, profileapi.ErrEventsUnavailable):
		res.EventsNote = "no event warehouse configured"
	case err != nil:
		res.EventsNote = "reading recent events: " + err.Error()
	default:
		res.Events = page.Events
	}
	return res
}

// PanelData is a panel's result as the page's script reads it: column
// names and rows, times as Unix milliseconds.
type PanelData struct {
	Key     string   `json:"key"`
	Title   string   `json:"title"`
	Kind    string   `json:"kind"`
	Unit    string   `json:"unit,omitempty"`
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
	SQL     string   `json:"sql"`
}

func (h *handler) panel(w http.ResponseWriter, r *http.Request) {
	rg := r.URL.Query().Get("range")
	if rg == "" {
		rg = Ranges[0]
	}
	span, err := ParseRange(rg)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	data, err := h.RunPanel(ctx, r.PathValue("key"), span)
	if err != nil {
		h.o.Logger.Warn("console panel", zap.String("panel", r.PathValue("key")), zap.Error(err))
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, data)
}

// ParseRange reads a range of Ranges ("15m", "7d", ...).
func ParseRange(s string) (time.Duration, error) {
	if !slices.Contains(Ranges, s) {
		return 0, fmt.Errorf("range %q: want one of %s", s, strings.Join(Ranges, ", "))
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := time.ParseDuration(n + "h")
		return d * 24, err
	}
	return time.ParseDuration(s)
}

// Interval is the panel interval for a time range, as Grafana derives it:
// the range over about 120 points, rounded up to a round step.
func Interval(span time.Duration) time.Duration {
	steps := []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
		10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	want := span / 120
	for _, s := range steps {
		if s >= want {
			return s
		}
	}
	return steps[len(steps)-1]
}

// RunPanel runs the registry panel key over the last span, its SQL
// expanded as the Grafana plugin expands it (variables of the
// dashboard at their defaults: "All" for a multi-value one).
func (h *handler) RunPanel(ctx context.Context, key string, span time.Duration) (*PanelData, error) {
	d, p, ok := panelByKey(key)
	if !ok {
		return nil, fmt.Errorf("no panel %q in the dashboard registry", key)
	}
	to := h.o.Now().UTC()
	q := grafana.Query{From: to.Add(-span), To: to, Interval: Interval(span), Vars: map[string]string{}, Multi: map[string][]string{}, All: map[string]bool{}}
	for _, v := range d.Variables {
		if v.Multi {
			q.Multi[v.Name], q.All[v.Name] = []string{}, true
		} else {
			q.Vars[v.Name] = v.Default
		}
	}
	sql, err := grafana.Expand(p.SQL, q)
	if err != nil {
		return nil, fmt.Errorf("expanding panel %s: %w", key, err)
	}
	rows, err := h.o.ClickHouse.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("running panel %s: %w", key, err)
	}
	defer rows.Close()
	out := &PanelData{Key: p.Key, Title: p.Title, Kind: string(p.Kind), Unit: p.Unit, Columns: rows.Columns(), Rows: [][]any{}, SQL: sql}
	if !slices.Equal(out.Columns, p.Columns) {
		return nil, fmt.Errorf("panel %s returned columns %v, the registry says %v", key, out.Columns, p.Columns)
	}
	types := rows.ColumnTypes()
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("reading panel %s: %w", key, err)
		}
		row := make([]any, len(dest))
		for i, v := range dest {
			row[i] = plain(reflect.ValueOf(v).Elem())
		}
		out.Rows = append(out.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading panel %s: %w", key, err)
	}
	return out, nil
}

// plain turns a scanned ClickHouse value into what JSON and the page's
// script use: numbers as float64, times as Unix milliseconds, NULL as nil.
func plain(v reflect.Value) any {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if t, ok := v.Interface().(time.Time); ok {
		return t.UnixMilli()
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint())
	case reflect.Float32, reflect.Float64:
		// JSON has no NaN (an average over no orders) or infinity.
		if f := v.Float(); !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
		return nil
	case reflect.String:
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}

// featureValue shows a feature's value: times (features named *_at or
// *_seen hold Unix milliseconds) as times, numbers without exponents.
func featureValue(name string, v any) string {
	f, ok := v.(float64)
	switch {
	case v == nil:
		return ""
	case !ok:
		return fmt.Sprint(v)
	case strings.HasSuffix(name, "_at") || strings.HasSuffix(name, "_seen"):
		return time.UnixMilli(int64(f)).UTC().Format("2006-01-02 15:04:05.000")
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ChartJSDigest is the SHA-256 of the embedded Chart.js file.
func ChartJSDigest() (string, error) {
	b, err := static.ReadFile("static/chart.umd.min.js")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
