package grafana_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/deploy/grafana"
)

var update = flag.Bool("update", false, "rewrite dashboards/*.json from the registry")

// TestDashboardsAreGenerated keeps dashboards/ equal to the registry: the
// panel SQL lives in panels.go only.
func TestDashboardsAreGenerated(t *testing.T) {
	for _, d := range grafana.Dashboards {
		want, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("dashboards", d.File)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./deploy/grafana -run TestDashboardsAreGenerated -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the registry in panels.go: run go test ./deploy/grafana -run TestDashboardsAreGenerated -update", path)
		}
	}
}

func TestRegistryIsWellFormed(t *testing.T) {
	keys, uids := map[string]bool{}, map[string]bool{}
	for _, d := range grafana.Dashboards {
		if uids[d.UID] || d.Title == "" || d.File == "" || len(d.Panels) == 0 {
			t.Errorf("dashboard %q: duplicate uid, or no title, file or panels", d.UID)
		}
		uids[d.UID] = true
		for _, p := range d.Panels {
			if keys[p.Key] || p.Title == "" || p.SQL == "" || len(p.Columns) == 0 || p.W < 1 || p.W > 24 || p.H < 1 {
				t.Errorf("%s/%s: duplicate key, or missing title, SQL, columns or size", d.UID, p.Key)
			}
			keys[p.Key] = true
			if p.Kind == grafana.TimeSeries && p.Columns[0] != "time" {
				t.Errorf("%s/%s: a time series' first column must be time, got %v", d.UID, p.Key, p.Columns)
			}
		}
	}
	if len(grafana.Dashboards) != 4 {
		t.Errorf("%d dashboards, want Overview, Customers, Commerce and Profile", len(grafana.Dashboards))
	}
}

func TestExpand(t *testing.T) {
	q := grafana.Query{
		From:     time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC),
		To:       time.Date(2026, 11, 3, 10, 0, 0, 500e6, time.UTC),
		Interval: 5 * time.Minute,
		Vars:     map[string]string{"profile": "o'brien@example.com", "seg": "vip", "quoted": `a"b`, "empty": ""},
		Multi:    map[string][]string{"segs": {"vip", "o'k"}, "one": {"vip"}, "all": {"engaged", "vip"}},
		All:      map[string]bool{"all": true},
	}
	from, to := "1793613600", "1793700000"
	for _, tc := range []struct {
		name, in, want, err string
	}{
		{"timeFilter", "WHERE $__timeFilter(time)", "WHERE time >= toDateTime(" + from + ") AND time <= toDateTime(" + to + ")", ""},
		{"timeFilter_ms", "$__timeFilter_ms(t)", "t >= fromUnixTimestamp64Milli(1793613600000) AND t <= fromUnixTimestamp64Milli(1793700000500)", ""},
		{"from and to", "$__fromTime, $__toTime - INTERVAL 7 DAY", "toDateTime(" + from + "), toDateTime(" + to + ") - INTERVAL 7 DAY", ""},
		{"ms bounds", "$__fromTime_ms $__toTime_ms", "fromUnixTimestamp64Milli(1793613600000) fromUnixTimestamp64Milli(1793700000500)", ""},
		{"dateFilter", "$__dateFilter(day)", "day >= toDate('2026-11-02') AND day <= toDate('2026-11-03')", ""},
		{"dateTimeFilter", "$__dt(d, t)", "(d >= toDate('2026-11-02') AND d <= toDate('2026-11-03')) AND (t >= toDateTime(" + from + ") AND t <= toDateTime(" + to + "))", ""},
		{"timeInterval", "$__timeInterval(minute)", "toStartOfInterval(toDateTime(minute), INTERVAL 300 second)", ""},
		{"timeInterval nested", "$__timeInterval(toStartOfHour(t))", "toStartOfInterval(toDateTime(toStartOfHour(t)), INTERVAL 300 second)", ""},
		{"timeInterval_ms", "$__timeInterval_ms(t)", "toStartOfInterval(toDateTime64(t, 3), INTERVAL 300000 millisecond)", ""},
		{"interval_s", "$__interval_s", "300", ""},
		{"sqlstring escapes quotes", "= ${profile:sqlstring}", "= 'o''brien@example.com'", ""},
		{"singlequote", "${seg:singlequote}", "'vip'", ""},
		{"plain forms", "$seg ${seg} [[seg]]", "vip vip vip", ""},
		{"sqlstring escapes double quotes", "${quoted:sqlstring}", `'a\"b'`, ""},
		{"format in brackets", "[[seg:sqlstring]]", "'vip'", ""},
		{"multi-value, plugin's default format: quoted, not escaped", "IN ($segs)", "IN ('vip','o'k')", ""},
		{"multi-value, one selected: still an array", "IN ($one)", "IN ('vip')", ""},
		{"multi-value sqlstring", "IN (${segs:sqlstring})", "IN ('vip','o''k')", ""},
		{"multi-value raw", "${segs:raw}|${segs:csv}", "vip,o'k|vip,o'k", ""},
		{"multi-value All: every option", "IN (${all:sqlstring})", "IN ('engaged','vip')", ""},
		{"conditionalAll, a selection", "WHERE $__conditionalAll(s IN (${segs:sqlstring}), $segs) AND x", "WHERE s IN ('vip','o''k') AND x", ""},
		{"conditionalAll, All", "WHERE $__conditionalAll(s IN (${all:sqlstring}), ${all})", "WHERE 1=1", ""},
		{"conditionalAll, empty text", "WHERE $__conditionalAll(s = $empty, $empty)", "WHERE 1=1", ""},
		{"conditionalAll keeps the condition as written", "$__conditionalAll( a, $seg)", " a", ""},
		{"conditionalAll twice", "$__conditionalAll(a, $all) AND $__conditionalAll(b IN ($segs), $segs)", "1=1 AND b IN ('vip','o'k')", ""},
		{"conditionalAll with a formatted variable", "$__conditionalAll(a, ${all:sqlstring})", "", "not a variable the plugin recognises"},
		{"built-in variables", "$__from $__to ${__from} $__interval $__interval_ms", "1793613600000 1793700000500 1793613600000 5m 300000", ""},
		{"unknown variable", "$nope", "", `dashboard variable "nope" has no value`},
		{"unknown macro", "$__timeGroup(t, day)", "", "not one of the ClickHouse datasource's"},
		{"bad arguments", "$__timeFilter(a, b)", "", "expected 1 argument, received 2"},
		{"unbalanced", "$__timeFilter(a", "", "unbalanced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := grafana.Expand(tc.in, q)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Expand(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Expand(%q) =\n %q, %v\nwant\n %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestEveryPanelExpands: every panel and variable query expands with the
// Profile dashboard's variables set, leaving no placeholder behind.
func TestEveryPanelExpands(t *testing.T) {
	q := grafana.Query{From: time.Now().Add(-time.Hour), To: time.Now(), Interval: time.Minute,
		Vars: map[string]string{"profile": "a@b.c", "profile_id": "p-1"}, Multi: map[string][]string{"segment": {"vip"}}}
	for _, d := range grafana.Dashboards {
		sqls := []string{}
		for _, p := range d.Panels {
			sqls = append(sqls, p.SQL)
		}
		for _, v := range d.Variables {
			if v.Query != "" {
				sqls = append(sqls, v.Query)
			}
		}
		for _, s := range sqls {
			got, err := grafana.Expand(s, q)
			if err != nil {
				t.Errorf("%s: %v\n%s", d.UID, err, s)
				continue
			}
			if slices.ContainsFunc([]string{"$", "[["}, func(p string) bool { return strings.Contains(got, p) }) {
				t.Errorf("%s: a placeholder is left in\n%s", d.UID, got)
			}
		}
	}
}
