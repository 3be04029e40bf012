package identity

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	rules := DefaultRules()
	rules.Priority = append(rules.Priority, "loyalty_id")
	rules.Blocked = []string{"qa@shop.example", "*@test.example", "+44 20 7946 0000"}
	id := func(typ, v string) Identifier { return Identifier{Type: typ, Value: v} }
	tests := []struct {
		name     string
		in       Identifier
		want     *Identifier // nil: rejected
		wantRule string
	}{
		{"email lower-cased and trimmed", id("email", "  Ann.Lee@Example.COM "), &Identifier{"email", "ann.lee@example.com"}, ""},
		{"email without at", id("email", "ann.example.com"), nil, RuleInvalid},
		{"email without domain", id("email", "ann@"), nil, RuleInvalid},
		{"email without local part", id("email", "@example.com"), nil, RuleInvalid},
		{"phone with spaces to E.164", id("phone", "+44 7700 123456"), &Identifier{"phone", "+447700123456"}, ""},
		{"phone with dashes to E.164", id("phone", "+44-7700-123-456"), &Identifier{"phone", "+447700123456"}, ""},
		{"phone with brackets", id("phone", "+1 (415) 555-2671"), &Identifier{"phone", "+14155552671"}, ""},
		{"phone without country code and no region", id("phone", "07700 123456"), nil, RuleInvalid},
		{"phone of letters", id("phone", "call me"), nil, RuleInvalid},
		{"phone too short", id("phone", "+44 12"), nil, RuleInvalid},
		{"blocked null", id("user_id", "null"), nil, RuleBlocked},
		{"blocked NULL any case", id("user_id", "NULL"), nil, RuleBlocked},
		{"blocked undefined", id("anonymous_id", "undefined"), nil, RuleBlocked},
		{"blocked zero", id("user_id", "0"), nil, RuleBlocked},
		{"blocked anonymous", id("anonymous_id", "Anonymous"), nil, RuleBlocked},
		{"blocked empty", id("user_id", ""), nil, RuleBlocked},
		{"blocked blank", id("device_id", "   "), nil, RuleBlocked},
		{"blocked test address", id("email", "QA@shop.example"), nil, RuleBlocked},
		{"blocked test domain", id("email", "bot17@test.example"), nil, RuleBlocked},
		{"blocked phone matched after normalisation", id("phone", "+442079460000"), nil, RuleBlocked},
		{"other test domain not blocked", id("email", "bot@test.example.org"), &Identifier{"email", "bot@test.example.org"}, ""},
		{"user id kept as is but trimmed", id("user_id", " U-17 "), &Identifier{"user_id", "U-17"}, ""},
		{"user id case kept", id("user_id", "AbC"), &Identifier{"user_id", "AbC"}, ""},
		{"custom type", id("loyalty_id", "L1"), &Identifier{"loyalty_id", "L1"}, ""},
		{"unknown type", id("passport", "X1"), nil, RuleUnknownType},
		{"control characters", id("user_id", "a\x1fb"), nil, RuleInvalid},
		{"invalid utf-8", id("user_id", "a\xffb"), nil, RuleInvalid},
		{"too long", id("user_id", strings.Repeat("x", MaxValueBytes+1)), nil, RuleInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kept, rej := Normalize(rules, []Identifier{tc.in})
			if tc.want != nil {
				if len(rej) != 0 || len(kept) != 1 || kept[0] != *tc.want {
					t.Fatalf("Normalize(%q) = %v, rejected %v; want %v", tc.in, kept, rej, *tc.want)
				}
				return
			}
			if len(kept) != 0 || len(rej) != 1 {
				t.Fatalf("Normalize(%q) = %v, rejected %v; want one rejection", tc.in, kept, rej)
			}
			if rej[0].Rule != tc.wantRule || !strings.HasPrefix(rej[0].Reason, tc.wantRule+":") || rej[0].Identifier != tc.in {
				t.Fatalf("Normalize(%q) rejected %+v; want rule %s and the identifier as given", tc.in, rej[0], tc.wantRule)
			}
		})
	}
}

func TestNormalizeKeepsOrderAndDropsRepeats(t *testing.T) {
	kept, rej := Normalize(DefaultRules(), []Identifier{
		{"anonymous_id", "a1"}, {"email", "A@x.io"}, {"email", "a@x.io "}, {"user_id", "null"}, {"user_id", "u1"},
	})
	want := []Identifier{{"anonymous_id", "a1"}, {"email", "a@x.io"}, {"user_id", "u1"}}
	if !reflect.DeepEqual(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
	if len(rej) != 1 || rej[0].Identifier != (Identifier{"user_id", "null"}) {
		t.Fatalf("rejected %v, want the null user_id", rej)
	}
}

func TestNormalizeDefaultRegion(t *testing.T) {
	rules := DefaultRules()
	rules.DefaultRegion = "gb"
	kept, rej := Normalize(rules, []Identifier{{"phone", "07700 123456"}})
	if len(rej) != 0 || len(kept) != 1 || kept[0].Value != "+447700123456" {
		t.Fatalf("kept %v rejected %v; want +447700123456", kept, rej)
	}
}

func TestRulesValidate(t *testing.T) {
	ok := DefaultRules()
	if err := ok.Validate(); err != nil {
		t.Fatalf("DefaultRules: %v", err)
	}
	mod := func(f func(*Rules)) Rules {
		r := DefaultRules()
		f(&r)
		return r
	}
	bad := map[string]Rules{
		"empty priority":      mod(func(r *Rules) { r.Priority = nil }),
		"repeated type":       mod(func(r *Rules) { r.Priority = append(r.Priority, "email") }),
		"one-letter type":     mod(func(r *Rules) { r.Priority = append(r.Priority, "u") }),
		"type with colon":     mod(func(r *Rules) { r.Priority = append(r.Priority, "a:b") }),
		"reserved type":       mod(func(r *Rules) { r.Priority = append(r.Priority, TypeProfileID) }),
		"limit of unknown":    mod(func(r *Rules) { r.Limits = map[string]int{"passport": 1} }),
		"negative limit":      mod(func(r *Rules) { r.Limits = map[string]int{"email": -1} }),
		"short window":        mod(func(r *Rules) { r.DedupWindow = time.Millisecond }),
		"unknown region":      mod(func(r *Rules) { r.DefaultRegion = "XX" }),
		"zero window default": mod(func(r *Rules) { r.DedupWindow = 0 }),
	}
	for name, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, r)
		}
	}
}

func TestDefaultRules(t *testing.T) {
	r := DefaultRules()
	if r.Limits[TypeUserID] != 1 || r.Limits[TypeEmail] != 5 || r.Limits[TypePhone] != 5 ||
		r.Limits[TypeAnonymousID] != 0 || r.Limits[TypeDeviceID] != 0 {
		t.Fatalf("limits %v; want user_id 1, email 5, phone 5, others unlimited", r.Limits)
	}
	if r.Priority[0] != TypeUserID || r.DedupWindow != 24*time.Hour {
		t.Fatalf("priority %v window %v", r.Priority, r.DedupWindow)
	}
}
