package validate_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

var now = time.Date(2026, 11, 28, 10, 0, 1, 0, time.UTC)

func good() schemas.Event {
	return schemas.Event{
		MessageID: "m-1", Type: schemas.Track, Event: "Product Viewed", AnonymousID: "a-1",
		OriginalTimestamp: now.Add(-time.Second),
	}
}

func TestRules(t *testing.T) {
	price := math.NaN()
	tests := []struct {
		name  string
		edit  func(*schemas.Event)
		size  int
		code  string // "" for valid
		field string
	}{
		{"valid", func(*schemas.Event) {}, 500, "", ""},
		{"exactly 32 KB", func(*schemas.Event) {}, 32 << 10, "", ""},
		{"oversize", func(*schemas.Event) {}, 32<<10 + 1, schemas.CodeOversize, ""},
		{"no type", func(e *schemas.Event) { e.Type = "" }, 1, schemas.CodeMissingField, "type"},
		{"unknown type", func(e *schemas.Event) { e.Type = "purchase" }, 1, schemas.CodeUnknownType, "type"},
		{"no message id", func(e *schemas.Event) { e.MessageID = " " }, 1, schemas.CodeMissingField, "messageId"},
		{"track without event", func(e *schemas.Event) { e.Event = "" }, 1, schemas.CodeMissingField, "event"},
		{"page without name", func(e *schemas.Event) { e.Type, e.Event = schemas.Page, "" }, 1, "", ""},
		{"screen without name", func(e *schemas.Event) { e.Type, e.Event = schemas.Screen, "" }, 1, "", ""},
		{"identify", func(e *schemas.Event) { e.Type = schemas.Identify }, 1, "", ""},
		{"group without groupId", func(e *schemas.Event) { e.Type = schemas.Group }, 1, schemas.CodeMissingField, "groupId"},
		{"group", func(e *schemas.Event) { e.Type, e.GroupID = schemas.Group, "g" }, 1, "", ""},
		{"alias without previousId", func(e *schemas.Event) { e.Type, e.UserID = schemas.Alias, "u" }, 1, schemas.CodeMissingField, "previousId"},
		{"alias without userId", func(e *schemas.Event) { e.Type, e.PreviousID = schemas.Alias, "a" }, 1, schemas.CodeMissingField, "userId"},
		{"alias", func(e *schemas.Event) { e.Type, e.PreviousID, e.UserID = schemas.Alias, "a", "u" }, 1, "", ""},
		{"no identifier", func(e *schemas.Event) { e.AnonymousID = "" }, 1, schemas.CodeMissingIdentifier, ""},
		{"blank identifiers", func(e *schemas.Event) {
			e.AnonymousID, e.UserID = "", "  "
			e.Traits = map[string]json.RawMessage{"email": json.RawMessage(`"  "`), "phone": json.RawMessage(`5550100`)}
		}, 1, schemas.CodeMissingIdentifier, ""},
		{"email only", func(e *schemas.Event) {
			e.AnonymousID = ""
			e.Traits = map[string]json.RawMessage{"email": json.RawMessage(`"ann@example.com"`)}
		}, 1, "", ""},
		{"context email only", func(e *schemas.Event) {
			e.AnonymousID = ""
			e.Context.Traits = map[string]json.RawMessage{"email": json.RawMessage(`"ann@example.com"`)}
		}, 1, "", ""},
		{"phone only", func(e *schemas.Event) {
			e.AnonymousID = ""
			e.Traits = map[string]json.RawMessage{"phone": json.RawMessage(`"+44 20 7946 0000"`)}
		}, 1, "", ""},
		{"device id only", func(e *schemas.Event) { e.AnonymousID, e.Context.Device.ID = "", "d-1" }, 1, "", ""},
		{"before 2000", func(e *schemas.Event) { e.OriginalTimestamp = time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC) }, 1, schemas.CodeBadTimestamp, "timestamp"},
		{"epoch zero", func(e *schemas.Event) { e.OriginalTimestamp = time.UnixMilli(0) }, 1, schemas.CodeBadTimestamp, "timestamp"},
		{"device clock in 1970, corrected", func(e *schemas.Event) {
			e.OriginalTimestamp, e.SentAt, e.ReceivedAt = time.UnixMilli(1000), time.UnixMilli(5000), now
		}, 1, "", ""},
		{"device clock a week fast, corrected", func(e *schemas.Event) {
			e.OriginalTimestamp, e.SentAt, e.ReceivedAt = now.Add(7*24*time.Hour-time.Second), now.Add(7*24*time.Hour), now
		}, 1, "", ""},
		{"23h in the future", func(e *schemas.Event) { e.OriginalTimestamp = now.Add(23 * time.Hour) }, 1, "", ""},
		{"25h in the future", func(e *schemas.Event) { e.OriginalTimestamp = now.Add(25 * time.Hour) }, 1, schemas.CodeBadTimestamp, "timestamp"},
		{"future after correction", func(e *schemas.Event) {
			e.OriginalTimestamp, e.SentAt, e.ReceivedAt = now.Add(48*time.Hour), now, now
		}, 1, schemas.CodeBadTimestamp, "timestamp"},
		{"receivedAt absurd", func(e *schemas.Event) { e.ReceivedAt = time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC) }, 1, schemas.CodeBadTimestamp, "receivedAt"},
		{"no timestamps at all", func(e *schemas.Event) { e.OriginalTimestamp = time.Time{} }, 1, "", ""},
		{"NaN price", func(e *schemas.Event) { e.Commerce = &schemas.Commerce{Price: &price} }, 1, schemas.CodeWrongType, "properties.price"},
		{"NaN product price", func(e *schemas.Event) {
			e.Commerce = &schemas.Commerce{Products: []schemas.Product{{}, {Price: &price}}}
		}, 1, schemas.CodeWrongType, "properties.products[1].price"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := good()
			tt.edit(&ev)
			err := validate.Event(&ev, tt.size, now)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var fe *schemas.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want FieldError %s", err, tt.code)
			}
			if fe.Code != tt.code || fe.Field != tt.field {
				t.Fatalf("got %s/%q (%v), want %s/%q", fe.Code, fe.Field, err, tt.code, tt.field)
			}
			if fe.Reason == "" || (fe.Field != "" && !strings.Contains(err.Error(), fe.Field)) {
				t.Fatalf("error %q must name the field and give a reason", err)
			}
		})
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// The shared fixtures: every valid line passes, every invalid line fails
// with the code and field listed in invalid.codes.
func TestFixtures(t *testing.T) {
	for i, line := range readLines(t, "../../testdata/events/valid.jsonl") {
		var ev schemas.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("valid line %d: %v", i+1, err)
		}
		if err := validate.Event(&ev, len(line), now); err != nil {
			t.Errorf("valid line %d: %v", i+1, err)
		}
	}
	lines := readLines(t, "../../testdata/events/invalid.jsonl")
	checked := 0
	for _, c := range readLines(t, "../../testdata/events/invalid.codes") {
		if strings.HasPrefix(c, "#") || c == "" {
			continue
		}
		var code, field string
		parts := strings.Fields(c)
		if len(parts) != 3 {
			t.Fatalf("bad codes line %q", c)
		}
		n, err := strconv.Atoi(parts[0])
		if err != nil {
			t.Fatal(err)
		}
		code, field = parts[1], strings.TrimPrefix(parts[2], "-")
		ev, err := schemas.ParseJSON([]byte(lines[n-1]))
		if err == nil {
			err = validate.Event(&ev, len(lines[n-1]), now)
		}
		var fe *schemas.FieldError
		if !errors.As(err, &fe) || fe.Code != code || fe.Field != field {
			t.Errorf("invalid line %d: got %v, want %s on %q", n, err, code, field)
		}
		checked++
	}
	if checked != len(lines) {
		t.Fatalf("invalid.codes covers %d of %d lines", checked, len(lines))
	}
}
