package segments

import (
	"reflect"
	"testing"

	"github.com/streamcdp/streamcdp/schemas"
)

func sampleState() *State {
	s := newState()
	s.FVersion, s.Clock, s.MVersion, s.Defs = 7, 1_700_000_000_000, 3, 42
	s.Values["orders"] = schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: 2}
	s.Values["fav"] = schemas.FeatureValue{Kind: schemas.FeatureString, Str: "Toys"}
	s.Values["last"] = schemas.FeatureValue{}
	s.Traits["email"] = `"a@example.org"`
	s.Members["buyers"] = Member{Since: 1_600_000_000_000, Def: 9}
	s.hold(schemas.ProfileChange{ProfileID: "p", Version: 9, Time: 5, Features: map[string]schemas.FeatureChange{
		"orders": {Old: schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: 2}, New: schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: 3}}}})
	s.hold(schemas.ProfileChange{ProfileID: "p", Version: 8, Time: 4})
	return s
}

func TestStateRoundTrip(t *testing.T) {
	for _, s := range []*State{sampleState(), newState(), {MergedInto: "q", MVersion: 4, Members: map[string]Member{}}} {
		got, err := decodeState(s.encode(nil))
		if err != nil {
			t.Fatal(err)
		}
		if s.MergedInto != "" {
			if got.MergedInto != s.MergedInto || got.MVersion != s.MVersion {
				t.Fatalf("tombstone %+v, want %+v", got, s)
			}
			continue
		}
		if len(got.Held) == 0 {
			got.Held = s.Held
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, s)
		}
	}
	if s := sampleState(); s.Held[0].Version != 8 || s.Held[1].Version != 9 {
		t.Errorf("held changes are not in version order: %v %v", s.Held[0].Version, s.Held[1].Version)
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(sampleState().encode(nil))
	f.Add(newState().encode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		if _, err := decodeState(s.encode(nil)); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}
