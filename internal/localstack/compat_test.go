package localstack

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Record schemas for the evolution cases; field names say what changed.
const (
	schemaA         = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`
	schemaAB        = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","string"],"default":null}]}`
	schemaABReq     = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"string"}]}`
	schemaACDefault = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"c","type":"int","default":1}]}`
	schemaACReq     = `{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"c","type":"int"}]}`
	schemaNone      = `{"type":"record","name":"R","fields":[]}`
	schemaAInt      = `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`
)

// newCompatRegistry serves srfake behind the journal behind the enforcer,
// as ServeRegistry does, and returns a client and the journal path.
func newCompatRegistry(t *testing.T) (*sr.Client, string) {
	t.Helper()
	dir := t.TempDir()
	j, _, err := openJournal(dir, srfake.NewRegistry().Handler())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	srv := httptest.NewServer(enforceCompatibility(j))
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return cl, filepath.Join(dir, "journal.jsonl")
}

func journalLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	return n
}

func TestCompatibilityEnforced(t *testing.T) {
	for _, tc := range []struct {
		name    string
		level   sr.CompatibilityLevel // 0: leave the default (global BACKWARD)
		history []string              // registered in order, all must succeed
		next    string
		ok      bool
		problem string // substring of the 409 message when !ok
	}{
		{"backward: add optional field", 0, []string{schemaA}, schemaAB, true, ""},
		{"backward: add required field", 0, []string{schemaA}, schemaABReq, false, "b"},
		{"backward: change type", sr.CompatBackward, []string{schemaA}, schemaAInt, false, "a"},
		{"backward: remove field", 0, []string{schemaAB}, schemaA, true, ""},
		{"backward checks only latest", sr.CompatBackward, []string{schemaA, schemaACDefault}, schemaACReq, true, ""},
		{"backward transitive checks all", sr.CompatBackwardTransitive, []string{schemaA, schemaACDefault}, schemaACReq, false, "version 1"},
		{"forward: add required field", sr.CompatForward, []string{schemaA}, schemaABReq, true, ""},
		{"forward: remove field without default", sr.CompatForward, []string{schemaA}, schemaNone, false, "old schema reading new data"},
		{"full: add optional field", sr.CompatFull, []string{schemaA}, schemaAB, true, ""},
		{"full: add required field", sr.CompatFull, []string{schemaA}, schemaABReq, false, "b"},
		{"none: anything", sr.CompatNone, []string{schemaA}, schemaAInt, true, ""},
		{"re-registering an old version returns its id", 0, []string{schemaA, schemaAB}, schemaA, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cl, journal := newCompatRegistry(t)
			const subject = "orders-value"
			if tc.level != 0 {
				if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: tc.level}, subject)[0]; res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			var firstID int
			for i, s := range tc.history {
				id, err := cl.RegisterSchema(ctx, subject, sr.Schema{Schema: s}, -1, -1)
				if err != nil {
					t.Fatalf("history %d: %v", i, err)
				}
				if i == 0 {
					firstID = id
				}
			}
			before := journalLines(t, journal)

			// The dry check answers as the registration does.
			cc, err := cl.CheckCompatibility(ctx, subject, -2, sr.Schema{Schema: tc.next})
			if err != nil {
				t.Fatalf("compatibility check: %v", err)
			}
			if cc.Is != tc.ok {
				t.Errorf("is_compatible = %v (%v), want %v", cc.Is, cc.Messages, tc.ok)
			}
			if !tc.ok && !strings.Contains(strings.Join(cc.Messages, "\n"), tc.problem) {
				t.Errorf("messages %q do not mention %q", cc.Messages, tc.problem)
			}

			id, err := cl.RegisterSchema(ctx, subject, sr.Schema{Schema: tc.next}, -1, -1)
			if tc.ok {
				if err != nil {
					t.Fatalf("register: %v", err)
				}
				if tc.next == tc.history[0] && id != firstID {
					t.Errorf("re-registered id %d, want %d", id, firstID)
				}
				return
			}
			var re *sr.ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("register: err = %v, want a 409 response error", err)
			}
			if re.StatusCode != http.StatusConflict || re.ErrorCode != 409 {
				t.Errorf("status %d error_code %d, want 409/409", re.StatusCode, re.ErrorCode)
			}
			if !strings.Contains(re.Message, `incompatible with an earlier schema for subject "orders-value"`) ||
				!strings.Contains(re.Message, tc.problem) {
				t.Errorf("message %q", re.Message)
			}
			if after := journalLines(t, journal); after != before {
				t.Errorf("journal grew from %d to %d lines on a refused registration", before, after)
			}
			vs, err := cl.SubjectVersions(ctx, subject)
			if err != nil || len(vs) != len(tc.history) {
				t.Errorf("versions after refusal = %v, %v; want %d", vs, err, len(tc.history))
			}
		})
	}
}

// TestCompatibilityAgainstVersion checks /compatibility/.../versions/{v}
// against that version only, and that a subject without versions accepts
// anything.
func TestCompatibilityAgainstVersion(t *testing.T) {
	ctx := context.Background()
	cl, _ := newCompatRegistry(t)
	const subject = "s-value"
	if cc, err := cl.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: schemaAInt}); err != nil || !cc.Is {
		t.Fatalf("empty subject: %+v %v, want compatible", cc, err)
	}
	for _, s := range []string{schemaA, schemaACDefault} {
		if _, err := cl.RegisterSchema(ctx, subject, sr.Schema{Schema: s}, -1, -1); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		version int
		want    bool
	}{{1, false}, {2, true}, {-1, true}} {
		cc, err := cl.CheckCompatibility(ctx, subject, tc.version, sr.Schema{Schema: schemaACReq})
		if err != nil {
			t.Fatalf("version %d: %v", tc.version, err)
		}
		if cc.Is != tc.want {
			t.Errorf("against version %d: is_compatible = %v %v, want %v", tc.version, cc.Is, cc.Messages, tc.want)
		}
	}
}

func TestRouteOf(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         compatRoute
		ok           bool
	}{
		{"POST", "/subjects/a-value/versions", compatRoute{subject: "a-value", register: true}, true},
		{"POST", "/subjects/a%2Fb/versions", compatRoute{subject: "a/b", register: true}, true},
		{"POST", "/compatibility/subjects/a-value/versions", compatRoute{subject: "a-value"}, true},
		{"POST", "/compatibility/subjects/a-value/versions/latest", compatRoute{subject: "a-value", version: "latest"}, true},
		{"POST", "/subjects/a-value", compatRoute{}, false},
		{"GET", "/subjects/a-value/versions", compatRoute{}, false},
		{"PUT", "/config/a-value", compatRoute{}, false},
	} {
		got, ok := routeOf(httptest.NewRequest(tc.method, tc.path, nil))
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s %s = %+v %v, want %+v %v", tc.method, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}
