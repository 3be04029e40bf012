package identity_test

import (
	"reflect"
	"testing"

	"github.com/streamcdp/streamcdp/processors/identity"
	"github.com/streamcdp/streamcdp/schemas"
)

func TestIdentifiers(t *testing.T) {
	custom := []identity.CustomIdentifier{
		{Type: "loyalty_id", Path: "traits.loyalty"},
		{Type: "crm_id", Path: "context.extra.crm"},
		{Type: "store_card", Path: "properties.card"},
	}
	id := func(typ, v string) identity.Identifier { return identity.Identifier{Type: typ, Value: v} }
	for _, tc := range []struct {
		name string
		json string
		want []identity.Identifier
	}{
		{"track with ids and device", `{"type":"track","event":"X","messageId":"m","userId":"u1","anonymousId":"a1","context":{"device":{"id":"d1"}}}`,
			[]identity.Identifier{id("user_id", "u1"), id("anonymous_id", "a1"), id("device_id", "d1")}},
		{"identify traits and context traits", `{"type":"identify","messageId":"m","userId":"u1","traits":{"email":"Ann@X.com","phone":"+44 20 7946 0000"},"context":{"traits":{"email":"ann@work.com"}}}`,
			[]identity.Identifier{id("user_id", "u1"), id("email", "Ann@X.com"), id("phone", "+44 20 7946 0000"), id("email", "ann@work.com")}},
		{"alias links the previous id", `{"type":"alias","messageId":"m","userId":"u1","previousId":"a-old"}`,
			[]identity.Identifier{id("user_id", "u1"), id("anonymous_id", "a-old")}},
		{"custom identifiers, a number kept as text", `{"type":"track","event":"X","messageId":"m","anonymousId":"a","traits":{"loyalty":"L-7"},"context":{"crm":"c-9"},"properties":{"card":12345}}`,
			[]identity.Identifier{id("anonymous_id", "a"), id("loyalty_id", "L-7"), id("crm_id", "c-9"), id("store_card", "12345")}},
		{"non-string email ignored", `{"type":"identify","messageId":"m","userId":"u","traits":{"email":42}}`,
			[]identity.Identifier{id("user_id", "u")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := schemas.ParseJSON([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if got := identity.Identifiers(&ev, custom); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Identifiers = %v, want %v", got, tc.want)
			}
		})
	}
}
