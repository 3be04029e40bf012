package schemas

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/linkedin/goavro/v2"
)

// eventCanonical is the Parsing Canonical Form of event.avsc, which is also
// the Event record inside resolved_event.avsc (a test keeps them equal).
var eventCanonical = sync.OnceValue(func() string {
	c, err := goavro.NewCodec(EventSchema)
	if err != nil {
		panic(fmt.Sprintf("schemas: event.avsc does not compile: %v", err))
	}
	return c.CanonicalSchema()
})

// spliceable reports whether records written with w can be copied into a
// resolved event byte for byte.
func (w *writerSchema) spliceable() bool {
	w.spliceOnce.Do(func() { w.splice = w.codec != nil && w.codec.CanonicalSchema() == eventCanonical() })
	return w.splice
}

// EncodeResolvedFrom frames the resolved event for an input record raw
// (Confluent framed) that decoded to r.Event. When raw was written with the
// current event schema, the Avro encoding of the resolved record is
// profile_id, timestamp and then the event's own bytes, so those bytes are
// copied untouched: no decode-encode round trip on the hot path, and the
// event is passed on exactly as the producer wrote it. Otherwise (an older
// or newer writer schema) it encodes r like EncodeResolved.
func (s *Serde) EncodeResolvedFrom(ctx context.Context, dst []byte, topic string, raw []byte, r *ResolvedEvent) ([]byte, error) {
	id, body, err := s.splitFrame(raw)
	if err != nil {
		return dst, err
	}
	w, err := s.writer(ctx, id)
	if err != nil {
		return dst, err
	}
	if !w.spliceable() {
		out, err := s.EncodeResolved(ctx, topic, r)
		return append(dst, out...), err
	}
	dst, _, err = s.appendHeader(ctx, dst, topic, ResolvedEventSchema)
	if err != nil {
		return dst, err
	}
	// Avro strings and longs are zig-zag varints, as encoding/binary writes them.
	dst = binary.AppendVarint(dst, int64(len(r.ProfileID)))
	dst = append(dst, r.ProfileID...)
	dst = binary.AppendVarint(dst, r.Timestamp.UnixMilli())
	return append(dst, body...), nil
}
