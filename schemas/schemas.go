// Package schemas is StreamCDP's event contract: the Avro schemas every topic
// is written with (embedded from the .avsc files beside this file, which are
// also what producers in other languages use), the Go Event type with its
// Segment-spec JSON form, and the Serde that frames Avro in the Confluent
// wire format through the schema registry.
//
// Free-form values (traits, properties, context.traits, context.extra,
// products[].extra) travel in Avro as map<string,string> whose values are
// JSON texts, so that any Avro library can write them with one rule
// ("JSON-encode the value") and nothing is lost: "Mug" is written as
// "\"Mug\"", 12.5 as "12.5", an object as "{...}". A value that is not valid
// JSON is read as the literal string it holds, so a producer that forgets to
// encode plain strings still gets them through.
package schemas

import (
	_ "embed"
	"strings"
)

// The published Avro schemas, one per record kind StreamCDP reads or writes.
var (
	//go:embed event.avsc
	EventSchema string
	//go:embed resolved_event.avsc
	ResolvedEventSchema string
	//go:embed identity_merge.avsc
	IdentityMergeSchema string
	//go:embed profile_change.avsc
	ProfileChangeSchema string
	//go:embed segment_membership.avsc
	SegmentMembershipSchema string
	//go:embed recommendation.avsc
	RecommendationSchema string
	//go:embed customer_scores.avsc
	CustomerScoresSchema string
)

// Namespace is the Avro namespace of every StreamCDP schema.
const Namespace = "io.streamcdp"

// Subject returns the schema registry subject of a topic's record values
// under the topic-name strategy, the default of every Confluent client, so
// Java, librdkafka and Node producers find the same subject without
// configuration.
func Subject(topic string) string { return topic + "-value" }

// TopicOfSubject is the inverse of Subject; ok is false for key subjects or
// other strategies.
func TopicOfSubject(subject string) (topic string, ok bool) {
	return strings.CutSuffix(subject, "-value")
}
