package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/linkedin/goavro/v2"
)

// ProfileChange is a record of cdp.profiles.changes (profile_change.avsc):
// what one event or merge changed on a profile.
type ProfileChange struct {
	ProfileID        string
	Version          int64
	Time             int64 // Unix ms: the event time the values were evaluated at
	Cause            ChangeCause
	TriggerMessageID string // "" is null
	MergedFrom       string // "" is null
	MergedInto       string // "" is null
	Features         map[string]FeatureChange
	Traits           map[string]TraitChange
}

// ChangeCause is the enum io.streamcdp.ChangeCause.
type ChangeCause int

// The symbols of ChangeCause, in schema order.
const (
	CauseEvent ChangeCause = iota
	CauseMerge
	CauseExpiry
)

var causeNames = []string{"event", "merge", "expiry"}

func (c ChangeCause) String() string {
	if c >= 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", int(c))
}

// FeatureValue is a feature value of a change: null, a number or a string.
type FeatureValue struct {
	Kind FeatureValueKind
	Num  float64
	Str  string
}

// FeatureValueKind is the branch of the union ["null", "double", "string"].
type FeatureValueKind byte

// The branches, in schema order.
const (
	FeatureNull FeatureValueKind = iota
	FeatureNumber
	FeatureString
)

// FeatureChange is a feature's value before and after.
type FeatureChange struct{ Old, New FeatureValue }

// TraitChange is a trait's JSON text before and after; "" is null.
type TraitChange struct{ Old, New string }

// AppendProfileChange appends the Avro binary encoding of c (without the
// Confluent header). Map entries are written sorted by key, so equal changes
// encode to equal bytes. It is hand-written because the features processor
// emits one per changed event; a test keeps it equal to goavro's encoding.
func AppendProfileChange(dst []byte, c *ProfileChange) []byte {
	dst = avroStr(dst, c.ProfileID)
	dst = binary.AppendVarint(dst, c.Version)
	dst = binary.AppendVarint(dst, c.Time)
	dst = binary.AppendVarint(dst, int64(c.Cause))
	dst = avroOptStr(dst, c.TriggerMessageID)
	dst = avroOptStr(dst, c.MergedFrom)
	dst = avroOptStr(dst, c.MergedInto)
	if n := len(c.Features); n > 0 {
		dst = binary.AppendVarint(dst, int64(n))
		for _, k := range sortedKeys(c.Features) {
			fc := c.Features[k]
			dst = avroStr(dst, k)
			dst = avroFeatureValue(dst, fc.Old)
			dst = avroFeatureValue(dst, fc.New)
		}
	}
	dst = binary.AppendVarint(dst, 0)
	if n := len(c.Traits); n > 0 {
		dst = binary.AppendVarint(dst, int64(n))
		for _, k := range sortedKeys(c.Traits) {
			tc := c.Traits[k]
			dst = avroStr(dst, k)
			dst = avroOptStr(dst, tc.Old)
			dst = avroOptStr(dst, tc.New)
		}
	}
	return binary.AppendVarint(dst, 0)
}

func avroStr(dst []byte, s string) []byte {
	dst = binary.AppendVarint(dst, int64(len(s)))
	return append(dst, s...)
}

func avroOptStr(dst []byte, s string) []byte {
	if s == "" {
		return binary.AppendVarint(dst, 0)
	}
	dst = binary.AppendVarint(dst, 1)
	return avroStr(dst, s)
}

func avroFeatureValue(dst []byte, v FeatureValue) []byte {
	dst = binary.AppendVarint(dst, int64(v.Kind))
	switch v.Kind {
	case FeatureNumber:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Num))
	case FeatureString:
		dst = avroStr(dst, v.Str)
	}
	return dst
}

// errChange reports a ProfileChange that does not decode.
var errChange = errors.New("malformed ProfileChange")

type avroReader struct {
	b   []byte
	err error
}

func (r *avroReader) long() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *avroReader) fail() {
	if r.err == nil {
		r.err = errChange
	}
	r.b = nil
}

func (r *avroReader) str() string {
	n := r.long()
	if n < 0 || n > int64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *avroReader) optStr() string {
	switch r.long() {
	case 0:
		return ""
	case 1:
		return r.str()
	}
	r.fail()
	return ""
}

func (r *avroReader) featureValue() FeatureValue {
	switch k := FeatureValueKind(r.long()); k {
	case FeatureNull:
		return FeatureValue{}
	case FeatureNumber:
		if len(r.b) < 8 {
			r.fail()
			return FeatureValue{}
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
		r.b = r.b[8:]
		return FeatureValue{Kind: FeatureNumber, Num: v}
	case FeatureString:
		return FeatureValue{Kind: FeatureString, Str: r.str()}
	}
	r.fail()
	return FeatureValue{}
}

// mapBlocks reads an Avro map's blocks, calling entry per key.
func (r *avroReader) mapBlocks(entry func(key string)) {
	for r.err == nil {
		n := r.long()
		if n == 0 {
			return
		}
		if n < 0 { // a block with its byte size
			n = -n
			r.long()
		}
		if n > int64(len(r.b)) {
			r.fail()
			return
		}
		for range n {
			entry(r.str())
		}
	}
}

// DecodeProfileChange decodes the Avro binary encoding (without the
// Confluent header) written with profile_change.avsc as it is in this
// build. Records written with another version of the schema must be read
// through Serde.DecodeNative instead.
func DecodeProfileChange(b []byte) (ProfileChange, error) {
	r := &avroReader{b: b}
	c := ProfileChange{ProfileID: r.str(), Version: r.long(), Time: r.long(), Cause: ChangeCause(r.long())}
	if c.Cause < 0 || int(c.Cause) >= len(causeNames) {
		r.fail()
	}
	c.TriggerMessageID = r.optStr()
	c.MergedFrom = r.optStr()
	c.MergedInto = r.optStr()
	r.mapBlocks(func(k string) {
		if c.Features == nil {
			c.Features = map[string]FeatureChange{}
		}
		c.Features[k] = FeatureChange{Old: r.featureValue(), New: r.featureValue()}
	})
	r.mapBlocks(func(k string) {
		if c.Traits == nil {
			c.Traits = map[string]TraitChange{}
		}
		c.Traits[k] = TraitChange{Old: r.optStr(), New: r.optStr()}
	})
	if r.err == nil && len(r.b) > 0 {
		r.fail()
	}
	if r.err != nil {
		return ProfileChange{}, r.err
	}
	return c, nil
}

// ProfileChangeNative is c in goavro's native form (for EncodeNative and
// tests).
func ProfileChangeNative(c *ProfileChange) map[string]any {
	opt := func(s string) any {
		if s == "" {
			return nil
		}
		return map[string]any{"string": s}
	}
	fv := func(v FeatureValue) any {
		switch v.Kind {
		case FeatureNumber:
			return map[string]any{"double": v.Num}
		case FeatureString:
			return map[string]any{"string": v.Str}
		}
		return nil
	}
	feats := map[string]any{}
	for k, fc := range c.Features {
		feats[k] = map[string]any{"old": fv(fc.Old), "new": fv(fc.New)}
	}
	traits := map[string]any{}
	for k, tc := range c.Traits {
		traits[k] = map[string]any{"old": opt(tc.Old), "new": opt(tc.New)}
	}
	return map[string]any{
		"profile_id": c.ProfileID, "version": c.Version, "time": time.UnixMilli(c.Time).UTC(), "cause": c.Cause.String(),
		"trigger_message_id": opt(c.TriggerMessageID), "merged_from": opt(c.MergedFrom), "merged_into": opt(c.MergedInto),
		"features": feats, "traits": traits,
	}
}

// AppendProfileChange appends c framed for topic (Confluent header with the
// id of profile_change.avsc, registered on first use).
func (s *Serde) AppendProfileChange(ctx context.Context, dst []byte, topic string, c *ProfileChange) ([]byte, error) {
	dst, _, err := s.appendHeader(ctx, dst, topic, ProfileChangeSchema)
	if err != nil {
		return dst, err
	}
	return AppendProfileChange(dst, c), nil
}

// DecodeProfileChange decodes a framed ProfileChange. A record written with
// another schema than this build's profile_change.avsc is read through the
// registry and resolved to it.
func (s *Serde) DecodeProfileChange(ctx context.Context, b []byte) (ProfileChange, error) {
	id, payload, err := s.splitFrame(b)
	if err != nil {
		return ProfileChange{}, err
	}
	w, err := s.writer(ctx, id)
	if err != nil {
		return ProfileChange{}, err
	}
	if w.currentChange {
		c, err := DecodeProfileChange(payload)
		if err != nil {
			return c, &DecodeError{Code: CodeBadAvro, SchemaID: id, Err: err}
		}
		return c, nil
	}
	native, err := s.DecodeNative(ctx, b, ProfileChangeSchema)
	if err != nil {
		return ProfileChange{}, err
	}
	return profileChangeFromNative(native)
}

var profileChangeCanonical = func() string {
	codec, err := goavro.NewCodec(ProfileChangeSchema)
	if err != nil {
		panic("profile_change.avsc: " + err.Error())
	}
	return codec.CanonicalSchema()
}()

// profileChangeFromNative reads a native value already resolved to
// ProfileChangeSchema.
func profileChangeFromNative(native any) (ProfileChange, error) {
	m, ok := native.(map[string]any)
	if !ok {
		return ProfileChange{}, fmt.Errorf("%w: not a record", errChange)
	}
	str := func(v any) string {
		switch x := v.(type) {
		case string:
			return x
		case map[string]any:
			s, _ := x["string"].(string)
			return s
		}
		return ""
	}
	long := func(v any) int64 {
		switch x := v.(type) {
		case int64:
			return x
		case int32:
			return int64(x)
		case time.Time:
			return x.UnixMilli()
		}
		return 0
	}
	c := ProfileChange{ProfileID: str(m["profile_id"]), Version: long(m["version"]), Time: long(m["time"]),
		TriggerMessageID: str(m["trigger_message_id"]), MergedFrom: str(m["merged_from"]), MergedInto: str(m["merged_into"])}
	for i, n := range causeNames {
		if m["cause"] == n {
			c.Cause = ChangeCause(i)
		}
	}
	fv := func(v any) FeatureValue {
		u, _ := v.(map[string]any)
		if d, ok := u["double"].(float64); ok {
			return FeatureValue{Kind: FeatureNumber, Num: d}
		}
		if s, ok := u["string"].(string); ok {
			return FeatureValue{Kind: FeatureString, Str: s}
		}
		return FeatureValue{}
	}
	if fs, _ := m["features"].(map[string]any); len(fs) > 0 {
		c.Features = map[string]FeatureChange{}
		for k, v := range fs {
			r, _ := v.(map[string]any)
			c.Features[k] = FeatureChange{Old: fv(r["old"]), New: fv(r["new"])}
		}
	}
	if ts, _ := m["traits"].(map[string]any); len(ts) > 0 {
		c.Traits = map[string]TraitChange{}
		for k, v := range ts {
			r, _ := v.(map[string]any)
			c.Traits[k] = TraitChange{Old: str(r["old"]), New: str(r["new"])}
		}
	}
	return c, nil
}
