package rules

import (
	"slices"
	"strings"
	"testing"

	fdef "github.com/streamcdp/streamcdp/processors/features/definition"
)

func testFeatures(t *testing.T) *fdef.Set {
	t.Helper()
	set, err := fdef.Compile(fdef.Spec{Definitions: []fdef.FeatureSpec{
		{Name: "orders", Agg: "count"},
		{Name: "last_order_at", Agg: "last_seen"},
		{Name: "fav", Agg: "top", Field: "properties.category"},
		{Name: "first_cat", Agg: "first", Field: "properties.category"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestCompileErrors(t *testing.T) {
	fs := testFeatures(t)
	for _, tc := range []struct {
		name string
		spec Spec
		path string
		want string
	}{
		{"unknown feature", Spec{Definitions: []SegmentSpec{{Name: "a", Condition: "ordrs > 1"}}}, "definitions[0].condition", "unknown name ordrs"},
		{"not a boolean", Spec{Definitions: []SegmentSpec{{Name: "a", Condition: "orders + 1"}}}, "definitions[0].condition", "bool"},
		{"empty", Spec{Definitions: []SegmentSpec{{Name: "a"}}}, "definitions[0].condition", "no condition"},
		{"bad name", Spec{Definitions: []SegmentSpec{{Name: "A b", Condition: "true"}}}, "definitions[0].name", "lower-case"},
		{"twice", Spec{Definitions: []SegmentSpec{{Name: "a", Condition: "true"}, {Name: "a", Condition: "false"}}}, "definitions[1].name", "twice"},
		{"nullable compared to a string", Spec{Definitions: []SegmentSpec{{Name: "a", Condition: `last_order_at == "x"`}}}, "definitions[0].condition", "mismatched"},
		{"bad rate", Spec{BackfillRate: -1}, "backfill_rate", "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.spec, fs)
			errs, ok := err.(Errors)
			if !ok || len(errs) == 0 {
				t.Fatalf("err = %v, want Errors", err)
			}
			if errs[0].Path != tc.path || !strings.Contains(errs[0].Msg, tc.want) {
				t.Errorf("got %s: %s; want %s: ...%s...", errs[0].Path, errs[0].Msg, tc.path, tc.want)
			}
		})
	}
}

func TestEvalAndReferences(t *testing.T) {
	fs := testFeatures(t)
	set, err := Compile(Spec{Params: map[string]float64{"min": 2}, Definitions: []SegmentSpec{
		{Name: "buyers", Condition: "orders >= params.min && (last_order_at == nil || last_order_at > 1000)", Activation: []string{"email"}},
		{Name: "pro", Condition: `traits.plan == "pro" && fav == "Toys"`},
		{Name: "firsts", Condition: `first_cat == "Toys"`},
	}}, fs)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Segment("buyers").Features; !slices.Equal(got, []string{"last_order_at", "orders"}) {
		t.Errorf("buyers reads %v", got)
	}
	if got := set.Segment("pro").Traits; !slices.Equal(got, []string{"plan"}) {
		t.Errorf("pro reads traits %v", got)
	}
	if !slices.Equal(set.Traits, []string{"email", "plan"}) {
		t.Errorf("traits needed %v", set.Traits)
	}
	env := func(orders float64, last fdef.Value, plan any, fav fdef.Value) map[string]any {
		return map[string]any{
			"orders": Value(fdef.Count, fdef.Num(orders)), "last_order_at": Value(fdef.LastSeen, last),
			"fav": Value(fdef.Top, fav), "first_cat": Value(fdef.First, fav),
			"traits": map[string]any{"plan": plan}, "params": set.Params,
		}
	}
	for _, tc := range []struct {
		seg  string
		env  map[string]any
		want bool
	}{
		{"buyers", env(2, fdef.Value{}, nil, fdef.Value{}), true},
		{"buyers", env(2, fdef.Num(500), nil, fdef.Value{}), false},
		{"buyers", env(2, fdef.Num(5000), nil, fdef.Value{}), true},
		{"buyers", env(1, fdef.Num(5000), nil, fdef.Value{}), false},
		{"pro", env(0, fdef.Value{}, "pro", fdef.Str("Toys")), true},
		{"pro", env(0, fdef.Value{}, "free", fdef.Str("Toys")), false},
		{"pro", env(0, fdef.Value{}, "pro", fdef.Value{}), false},
		{"firsts", env(0, fdef.Value{}, nil, fdef.Str("Toys")), true},
		{"firsts", env(0, fdef.Value{}, nil, fdef.Value{}), false},
	} {
		got, err := set.Segment(tc.seg).Eval(tc.env)
		if err != nil || got != tc.want {
			t.Errorf("%s with %v = %v (%v), want %v", tc.seg, tc.env, got, err, tc.want)
		}
	}
	// A changed param changes the fingerprint of the segments that use it.
	other, err := Compile(Spec{Params: map[string]float64{"min": 3}, Definitions: []SegmentSpec{
		{Name: "buyers", Condition: "orders >= params.min && (last_order_at == nil || last_order_at > 1000)"},
		{Name: "pro", Condition: `traits.plan == "pro" && fav == "Toys"`},
		{Name: "firsts", Condition: `first_cat == "Toys"`},
	}}, fs)
	if err != nil {
		t.Fatal(err)
	}
	if other.Segment("buyers").ID == set.Segment("buyers").ID || other.Segment("pro").ID != set.Segment("pro").ID || other.ID == set.ID {
		t.Errorf("fingerprints: buyers %d/%d pro %d/%d", set.Segment("buyers").ID, other.Segment("buyers").ID, set.Segment("pro").ID, other.Segment("pro").ID)
	}
}
