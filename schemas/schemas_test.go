package schemas_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/streamcdp/streamcdp/schemas"
)

var published = map[string]string{
	"event.avsc":              schemas.EventSchema,
	"resolved_event.avsc":     schemas.ResolvedEventSchema,
	"identity_merge.avsc":     schemas.IdentityMergeSchema,
	"profile_change.avsc":     schemas.ProfileChangeSchema,
	"segment_membership.avsc": schemas.SegmentMembershipSchema,
	"recommendation.avsc":     schemas.RecommendationSchema,
	"customer_scores.avsc":    schemas.CustomerScoresSchema,
}

// Every published schema must be valid plain Avro in our namespace, and
// every optional field must be a union with null first and default null so
// that adding fields later stays BACKWARD compatible.
func TestPublishedSchemas(t *testing.T) {
	for file, text := range published {
		t.Run(file, func(t *testing.T) {
			if _, err := goavro.NewCodec(text); err != nil {
				t.Fatalf("goavro rejects %s: %v", file, err)
			}
			var root map[string]any
			if err := json.Unmarshal([]byte(text), &root); err != nil {
				t.Fatal(err)
			}
			if root["namespace"] != schemas.Namespace {
				t.Errorf("namespace = %v, want %s", root["namespace"], schemas.Namespace)
			}
			walkFields(root, "", func(path string, f map[string]any) {
				union, ok := f["type"].([]any)
				if !ok {
					return // required field
				}
				if union[0] != "null" {
					t.Errorf("%s: optional field's union must start with null, got %v", path, union[0])
				}
				if def, has := f["default"]; !has || def != nil {
					t.Errorf("%s: optional field needs \"default\": null", path)
				}
			})
		})
	}
}

// walkFields calls fn for every record field in a schema tree.
func walkFields(node any, path string, fn func(string, map[string]any)) {
	switch n := node.(type) {
	case []any:
		for _, b := range n {
			walkFields(b, path, fn)
		}
	case map[string]any:
		if fields, ok := n["fields"].([]any); ok {
			for _, f := range fields {
				fm := f.(map[string]any)
				p := strings.TrimPrefix(path+"."+fm["name"].(string), ".")
				fn(p, fm)
				walkFields(fm["type"], p, fn)
			}
		}
		for _, k := range []string{"items", "values"} {
			if v, ok := n[k]; ok {
				walkFields(v, path, fn)
			}
		}
	}
}

// resolved_event.avsc carries Event inline so it stands alone; it must not
// drift from event.avsc.
func TestResolvedEventEmbedsEvent(t *testing.T) {
	var root map[string]any
	if err := json.Unmarshal([]byte(schemas.ResolvedEventSchema), &root); err != nil {
		t.Fatal(err)
	}
	var inline any
	for _, f := range root["fields"].([]any) {
		if fm := f.(map[string]any); fm["name"] == "event" {
			inline = fm["type"]
		}
	}
	b, err := json.Marshal(inline)
	if err != nil {
		t.Fatal(err)
	}
	got, err := goavro.NewCodec(string(b))
	if err != nil {
		t.Fatalf("inline event schema: %v", err)
	}
	want, err := goavro.NewCodec(schemas.EventSchema)
	if err != nil {
		t.Fatal(err)
	}
	if got.CanonicalSchema() != want.CanonicalSchema() {
		t.Fatalf("resolved_event.avsc's event differs from event.avsc:\n%s\n%s", got.CanonicalSchema(), want.CanonicalSchema())
	}
}

// addField returns the event schema with one more top-level field.
func addField(t testing.TB, fieldJSON string) string {
	t.Helper()
	i := strings.LastIndex(schemas.EventSchema, "]")
	out := schemas.EventSchema[:i] + "," + fieldJSON + schemas.EventSchema[i:]
	if _, err := goavro.NewCodec(out); err != nil {
		t.Fatalf("bad test schema: %v", err)
	}
	return out
}

func TestCheckBackward(t *testing.T) {
	enumWithout := strings.Replace(schemas.EventSchema, `"group", "alias"]`, `"group"]`, 1)
	enumWith := strings.Replace(schemas.EventSchema, `"group", "alias"]`, `"group", "alias", "screenview"]`, 1)
	userIDLong := strings.Replace(schemas.EventSchema, `{"name": "user_id", "type": ["null", "string"]`, `{"name": "user_id", "type": ["null", "long"]`, 1)
	priceFloat := `{"type":"record","name":"P","fields":[{"name":"price","type":"float"}]}`
	priceDouble := `{"type":"record","name":"P","fields":[{"name":"price","type":"double"}]}`
	tests := []struct {
		name           string
		reader, writer string
		wantProblem    string // substring of the first problem, "" for compatible
	}{
		{"same", schemas.EventSchema, schemas.EventSchema, ""},
		{"add optional field", addField(t, `{"name":"consent","type":["null","string"],"default":null}`), schemas.EventSchema, ""},
		{"remove optional field", schemas.EventSchema, addField(t, `{"name":"consent","type":["null","string"],"default":null}`), ""},
		{"add required field", addField(t, `{"name":"tenant","type":"string"}`), schemas.EventSchema, "tenant: new field has no default"},
		{"change field type", userIDLong, schemas.EventSchema, "user_id: writer union type string has no matching type in the reader's union"},
		{"remove enum symbol", enumWithout, schemas.EventSchema, `type: enum symbol "alias" was removed`},
		{"add enum symbol", enumWith, schemas.EventSchema, ""},
		{"promote float to double", priceDouble, priceFloat, ""},
		{"narrow double to float", priceFloat, priceDouble, "price: writer type double cannot be read as float"},
		{"rename record", strings.Replace(priceDouble, `"P"`, `"Q"`, 1), priceDouble, "record name Q does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, err := schemas.CheckBackward(tt.reader, tt.writer)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantProblem == "" {
				if len(problems) > 0 {
					t.Fatalf("want compatible, got %q", problems)
				}
				return
			}
			if len(problems) == 0 || !strings.Contains(problems[0], tt.wantProblem) {
				t.Fatalf("problems = %q, want one containing %q", problems, tt.wantProblem)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	if got := schemas.Subject("cdp.events.raw"); got != "cdp.events.raw-value" {
		t.Fatalf("Subject = %q", got)
	}
	if topic, ok := schemas.TopicOfSubject("cdp.events.raw-value"); !ok || topic != "cdp.events.raw" {
		t.Fatalf("TopicOfSubject = %q, %v", topic, ok)
	}
	if _, ok := schemas.TopicOfSubject("cdp.events.raw-key"); ok {
		t.Fatal("a key subject is not a value subject")
	}
}
