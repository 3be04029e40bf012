package schemas_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/schemas"
)

// v2 of the event schema: v1 plus one optional field, the kind of change
// the contract allows.
func eventV2(t testing.TB) string {
	return addField(t, `{"name": "consent", "type": ["null", "string"], "default": null, "doc": "added in v2"}`)
}

// Registration against the stack's registry: the subject follows the
// topic-name strategy, is set to BACKWARD, and ids are stable.
func TestRegistryRegistration(t *testing.T) {
	env := testkit.New(t)
	cl := env.Registry(t)
	c := testkit.Context(t)
	topic := env.Services.Topic("events.raw")
	s := schemas.NewSerde(cl)

	id, err := s.Register(c, topic, schemas.EventSchema)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	got, err := cl.SchemaByVersion(c, topic+"-value", -1)
	if err != nil {
		t.Fatalf("subject %s-value not found: %v", topic, err)
	}
	if got.ID != id {
		t.Fatalf("latest id = %d, registered %d", got.ID, id)
	}
	if lvl := cl.Compatibility(c, topic+"-value")[0]; lvl.Err != nil || lvl.Level != sr.CompatBackward {
		t.Fatalf("subject compatibility = %v (%v), want BACKWARD", lvl.Level, lvl.Err)
	}
	// Another process registering the same schema gets the same id.
	id2, err := schemas.NewSerde(cl).Register(c, topic, schemas.EventSchema)
	if err != nil || id2 != id {
		t.Fatalf("second registration: id %d, %v; want %d", id2, err, id)
	}
}

// Incompatible changes are refused with a message naming the field, and
// leave the subject unchanged.
func TestRegistryEnforcesBackward(t *testing.T) {
	env := testkit.New(t)
	cl := env.Registry(t)
	c := testkit.Context(t)
	topic := env.Services.Topic("events.raw")
	if _, err := schemas.NewSerde(cl).Register(c, topic, schemas.EventSchema); err != nil {
		t.Fatal(err)
	}
	breaking := []struct {
		name, schema, field string
	}{
		{"required field without default", addField(t, `{"name": "tenant", "type": "string"}`), "tenant"},
		{"field type changed", strings.Replace(schemas.EventSchema, `{"name": "user_id", "type": ["null", "string"]`, `{"name": "user_id", "type": ["null", "long"]`, 1), "user_id"},
		{"enum symbol removed", strings.Replace(schemas.EventSchema, `"group", "alias"]`, `"group"]`, 1), "type"},
	}
	for _, b := range breaking {
		t.Run(b.name, func(t *testing.T) {
			_, err := schemas.NewSerde(cl).Register(c, topic, b.schema)
			var inc *schemas.IncompatibleError
			if !errors.As(err, &inc) || !errors.Is(err, schemas.ErrIncompatible) {
				t.Fatalf("err = %v, want IncompatibleError", err)
			}
			if inc.Level != "BACKWARD" || !strings.Contains(err.Error(), b.field+":") {
				t.Fatalf("error %q should name level BACKWARD and field %s", err, b.field)
			}
		})
	}
	versions, err := cl.SubjectVersions(c, topic+"-value")
	if err != nil || len(versions) != 1 {
		t.Fatalf("versions = %v, %v; refused schemas must not be registered", versions, err)
	}
}

// A v2 producer (one more optional field) and a v1 producer write to the
// same topic; both are read correctly by v1 and by v2 readers.
func TestRegistryEvolutionBothWays(t *testing.T) {
	env := testkit.New(t)
	cl := env.Registry(t)
	c := testkit.Context(t)
	topic := env.Services.Topic("events.raw")
	v2 := eventV2(t)

	producerV1 := schemas.NewSerde(cl)
	producerV2 := schemas.NewSerde(cl, schemas.WithEventSchema(v2))
	want := orderCompleted()

	fromV1, err := producerV1.Encode(c, topic, want)
	if err != nil {
		t.Fatalf("v1 encode: %v", err)
	}
	nativeV2 := schemas.ToNative(&want)
	nativeV2["consent"] = map[string]any{"string": "marketing"}
	fromV2, err := producerV2.EncodeNative(c, topic, v2, nativeV2)
	if err != nil {
		t.Fatalf("v2 encode: %v", err)
	}
	idV1, idV2 := binary.BigEndian.Uint32(fromV1[1:5]), binary.BigEndian.Uint32(fromV2[1:5])
	if idV1 == idV2 {
		t.Fatalf("v1 and v2 share schema id %d", idV1)
	}
	if versions, err := cl.SubjectVersions(c, topic+"-value"); err != nil || len(versions) != 2 {
		t.Fatalf("versions = %v, %v; want 2", versions, err)
	}

	// A fresh consumer, knowing nothing, as a separate process would.
	consumer := schemas.NewSerde(cl)

	t.Run("v1 code reads v2 data, ignoring the new field", func(t *testing.T) {
		got, err := consumer.Decode(c, fromV2)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
		native, err := consumer.DecodeNative(c, fromV2, schemas.EventSchema)
		if err != nil {
			t.Fatal(err)
		}
		if _, has := native.(map[string]any)["consent"]; has {
			t.Fatal("a v1 reader must not see consent")
		}
		ev, err := schemas.FromNative(native)
		if err != nil || !reflect.DeepEqual(ev, want) {
			t.Fatalf("v1-resolved native maps to %+v, %v", ev, err)
		}
	})
	t.Run("v2 code reads v1 data, getting the default", func(t *testing.T) {
		native, err := consumer.DecodeNative(c, fromV1, v2)
		if err != nil {
			t.Fatal(err)
		}
		m := native.(map[string]any)
		if consent, has := m["consent"]; !has || consent != nil {
			t.Fatalf("consent = %v (present %v), want the default null", consent, has)
		}
		ev, err := schemas.FromNative(native)
		if err != nil || !reflect.DeepEqual(ev, want) {
			t.Fatalf("v2-resolved native maps to %+v, %v", ev, err)
		}
	})
	t.Run("v2 code reads v2 data", func(t *testing.T) {
		native, err := consumer.DecodeNative(c, fromV2, v2)
		if err != nil {
			t.Fatal(err)
		}
		if got := native.(map[string]any)["consent"]; !reflect.DeepEqual(got, map[string]any{"string": "marketing"}) {
			t.Fatalf("consent = %#v", got)
		}
	})
	t.Run("v1 code reads v1 data", func(t *testing.T) {
		got, err := consumer.Decode(c, fromV1)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
}
