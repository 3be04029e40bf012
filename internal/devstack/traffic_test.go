package devstack

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRetime(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, in                      string
		timestamp, sentAt, receivedAt string
	}{
		{"moved to now, skew kept",
			`{"type":"page","timestamp":"2026-11-06T20:47:30.000Z","sentAt":"2026-11-06T20:47:44.000Z","receivedAt":"2026-11-06T20:47:45.000Z"}`,
			"2026-12-03T09:59:45.000Z", "2026-12-03T09:59:59.000Z", "2026-12-03T10:00:00.000Z"},
		{"an invalid 1970 timestamp stays invalid",
			`{"type":"page","timestamp":"1970-01-01T00:00:00.000Z","sentAt":"2026-11-06T20:47:44.000Z","receivedAt":"2026-11-06T20:47:45.000Z"}`,
			"1970-01-01T00:00:00.000Z", "2026-12-03T09:59:59.000Z", "2026-12-03T10:00:00.000Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(retime([]byte(tc.in), now), &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]string{"timestamp": tc.timestamp, "sentAt": tc.sentAt, "receivedAt": tc.receivedAt} {
				if got[k] != want {
					t.Errorf("%s = %v, want %s", k, got[k], want)
				}
			}
			if got["type"] != "page" {
				t.Errorf("type = %v: other fields must be kept", got["type"])
			}
		})
	}
	if got := string(retime([]byte(`not json`), now)); got != "not json" {
		t.Errorf("a line that is not JSON must pass unchanged, got %q", got)
	}
}
