package localstack

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func TestMutating(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/subjects/a-value/versions", true},
		{"POST", "/subjects/a-value", false}, // lookup
		{"POST", "/compatibility/subjects/a-value/versions/latest", false},
		{"PUT", "/config/a-value", true},
		{"DELETE", "/subjects/a-value", true},
		{"GET", "/subjects", false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if got := mutating(r); got != tc.want {
			t.Errorf("mutating(%s %s) = %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestJournalReplayKeepsIDs registers schemas, deletes one subject, then
// replays the journal into a fresh registry and expects the same ids.
func TestJournalReplayKeepsIDs(t *testing.T) {
	dir := t.TempDir()
	j, n, err := openJournal(dir, srfake.NewRegistry().Handler())
	if err != nil || n != 0 {
		t.Fatalf("open: n=%d err=%v", n, err)
	}
	post := func(h http.Handler, method, path, body string) (int, string) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, strings.TrimSpace(w.Body.String())
	}
	schema := func(name string) string {
		return `{"schema":"{\"type\":\"record\",\"name\":\"` + name + `\",\"fields\":[]}"}`
	}
	for i, name := range []string{"A", "B", "C"} {
		code, body := post(j, "POST", "/subjects/"+name+"-value/versions", schema(name))
		if code != 200 || body != `{"id":`+string(rune('1'+i))+`}` {
			t.Fatalf("register %s: %d %s", name, code, body)
		}
	}
	if code, _ := post(j, "DELETE", "/subjects/B-value", ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	j.Close()

	j2, n, err := openJournal(dir, srfake.NewRegistry().Handler())
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if n != 4 {
		t.Errorf("replayed %d mutations, want 4", n)
	}
	if code, body := post(j2, "GET", "/schemas/ids/3", ""); code != 200 || !strings.Contains(body, `\"C\"`) {
		t.Errorf("schema 3 after replay: %d %s", code, body)
	}
	if code, body := post(j2, "POST", "/subjects/D-value/versions", schema("D")); code != 200 || body != `{"id":4}` {
		t.Errorf("next id after replay: %d %s, want id 4", code, body)
	}
}
