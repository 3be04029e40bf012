package schemas_test

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/streamcdp/streamcdp/schemas"
)

func randomChange(r *rand.Rand) schemas.ProfileChange {
	c := schemas.ProfileChange{ProfileID: "p" + strconv.Itoa(r.IntN(1000)), Version: r.Int64N(1 << 40),
		Time: r.Int64N(1 << 42), Cause: schemas.ChangeCause(r.IntN(3))}
	if r.IntN(2) == 0 {
		c.TriggerMessageID = "m" + strconv.Itoa(r.IntN(100))
	}
	if c.Cause == schemas.CauseMerge {
		if r.IntN(2) == 0 {
			c.MergedFrom = "p" + strconv.Itoa(r.IntN(1000))
		} else {
			c.MergedInto = "p" + strconv.Itoa(r.IntN(1000))
		}
	}
	value := func() schemas.FeatureValue {
		switch r.IntN(3) {
		case 1:
			return schemas.FeatureValue{Kind: schemas.FeatureNumber, Num: r.NormFloat64() * 1e6}
		case 2:
			return schemas.FeatureValue{Kind: schemas.FeatureString, Str: "v" + strconv.Itoa(r.IntN(9))}
		}
		return schemas.FeatureValue{}
	}
	for range r.IntN(6) {
		if c.Features == nil {
			c.Features = map[string]schemas.FeatureChange{}
		}
		c.Features["f"+strconv.Itoa(r.IntN(30))] = schemas.FeatureChange{Old: value(), New: value()}
	}
	for range r.IntN(4) {
		if c.Traits == nil {
			c.Traits = map[string]schemas.TraitChange{}
		}
		opt := func() string {
			if r.IntN(3) == 0 {
				return ""
			}
			return strconv.Quote("t" + strconv.Itoa(r.IntN(9)))
		}
		c.Traits["t"+strconv.Itoa(r.IntN(10))] = schemas.TraitChange{Old: opt(), New: opt()}
	}
	return c
}

// The hand-written ProfileChange codec agrees with goavro both ways.
func TestProfileChangeCodecMatchesGoavro(t *testing.T) {
	codec, err := goavro.NewCodec(schemas.ProfileChangeSchema)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		c := randomChange(r)
		mine := schemas.AppendProfileChange(nil, &c)
		native, rest, err := codec.NativeFromBinary(mine)
		if err != nil || len(rest) > 0 {
			t.Fatalf("%d: goavro cannot read our encoding: %v (%d bytes left)", i, err, len(rest))
		}
		theirs, err := codec.BinaryFromNative(nil, schemas.ProfileChangeNative(&c))
		if err != nil {
			t.Fatal(err)
		}
		got, err := schemas.DecodeProfileChange(theirs)
		if err != nil {
			t.Fatalf("%d: decoding goavro's encoding: %v", i, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%d: decoded %+v\nwant %+v", i, got, c)
		}
		again, err := codec.BinaryFromNative(nil, native)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Features) <= 1 && len(c.Traits) <= 1 && !bytes.Equal(again, mine) {
			t.Fatalf("%d: encodings differ", i)
		}
	}
}

func FuzzDecodeProfileChange(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 5 {
		c := randomChange(r)
		f.Add(schemas.AppendProfileChange(nil, &c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := schemas.DecodeProfileChange(b)
		if err != nil {
			return
		}
		again, err := schemas.DecodeProfileChange(schemas.AppendProfileChange(nil, &c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, c, again)
		}
	})
}
