package console

import (
	"testing"
	"time"
)

// The vendored Chart.js is the npm file byte for byte (static/VENDOR.md).
func TestVendoredChartJS(t *testing.T) {
	got, err := ChartJSDigest()
	if err != nil {
		t.Fatal(err)
	}
	if want := "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"; got != want {
		t.Fatalf("static/chart.umd.min.js has SHA-256 %s, VENDOR.md records %s", got, want)
	}
}

func TestRangesAndIntervals(t *testing.T) {
	for _, tc := range []struct {
		rng      string
		span, iv time.Duration
	}{
		{"15m", 15 * time.Minute, 10 * time.Second},
		{"1h", time.Hour, 30 * time.Second},
		{"24h", 24 * time.Hour, 30 * time.Minute},
		{"30d", 30 * 24 * time.Hour, 12 * time.Hour},
	} {
		span, err := ParseRange(tc.rng)
		if err != nil || span != tc.span {
			t.Errorf("ParseRange(%q) = %s, %v; want %s", tc.rng, span, err, tc.span)
		}
		if iv := Interval(span); iv != tc.iv {
			t.Errorf("Interval(%s) = %s, want %s", span, iv, tc.iv)
		}
	}
	if _, err := ParseRange("2y"); err == nil {
		t.Error("ParseRange accepted a range the page does not offer")
	}
}

// Every panel the page shows exists in the registry with its columns.
func TestSectionsComeFromTheRegistry(t *testing.T) {
	n := 0
	for _, s := range sections() {
		for _, p := range s.Panels {
			if _, q, ok := panelByKey(p.Key); !ok || len(q.Columns) == 0 {
				t.Errorf("panel %s not in the registry", p.Key)
			}
			n++
		}
	}
	if n != 14 {
		t.Errorf("the page shows %d panels, want 14 (7 Overview, 2 Customers, 5 Commerce)", n)
	}
}

func TestFeatureValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"last_order_at", float64(1796288297243), "2026-12-03 08:58:17.243"},
		{"first_seen", float64(1796288297243), "2026-12-03 08:58:17.243"},
		{"revenue_30d", 1234.5, "1234.5"},
		{"orders_lifetime", float64(3), "3"},
		{"favourite_category_90d", "kitchen", "kitchen"},
		{"avg_order_value", nil, ""},
	} {
		if got := featureValue(tc.name, tc.v); got != tc.want {
			t.Errorf("featureValue(%s, %v) = %q, want %q", tc.name, tc.v, got, tc.want)
		}
	}
}
