package warehouse

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/streamcdp/streamcdp/internal/dlq"
	"github.com/streamcdp/streamcdp/schemas"
)

// The tables the warehouse inserts into and how an input record becomes
// their rows. Column order here is the INSERT's; names and types must match
// deploy/clickhouse/migrations (TestBuffersMatchTheSchema checks it).

// OrderCompleted is the e-commerce spec's event whose properties become an
// order and its lines.
const OrderCompleted = "Order Completed"

// epoch stands for an absent time: DateTime64 cannot hold Go's zero time.
var epoch = time.Unix(0, 0).UTC()

func orEpoch(t time.Time) time.Time {
	if t.IsZero() {
		return epoch
	}
	return t
}

// emptyMap is shared by every row without a map value; it is never written.
var emptyMap = map[string]string{}

// textMap converts a map of JSON texts to ClickHouse's Map(String, String).
func textMap(m map[string]json.RawMessage) map[string]string {
	if len(m) == 0 {
		return emptyMap
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func f64(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

type eventsBuffer struct {
	buffer
	time, originalTimestamp, sentAt, receivedAt, kafkaTime                *col[time.Time]
	profileID, messageID, typ, event, name, userID, anonymousID           *col[string]
	groupID, previousID, ip, userAgent, locale                            *col[string]
	pageURL, pagePath, pageReferrer, pageTitle, utmSource, utmMedium      *col[string]
	utmCampaign, deviceID, deviceType, appName, appVersion, libName, libV *col[string]
	email, productID, category, orderID, currency                         *col[string]
	revenue                                                               *col[float64]
	traits, properties, contextTraits, contextExtra                       *col[map[string]string]
}

func newEventsBuffer() *eventsBuffer {
	b := &eventsBuffer{buffer: buffer{table: "events"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.profileID = newCol[string](bb, "profile_id")
	b.messageID = newCol[string](bb, "message_id")
	b.typ = newCol[string](bb, "type")
	b.event = newCol[string](bb, "event")
	b.name = newCol[string](bb, "name")
	b.userID = newCol[string](bb, "user_id")
	b.anonymousID = newCol[string](bb, "anonymous_id")
	b.groupID = newCol[string](bb, "group_id")
	b.previousID = newCol[string](bb, "previous_id")
	b.originalTimestamp = newCol[time.Time](bb, "original_timestamp")
	b.sentAt = newCol[time.Time](bb, "sent_at")
	b.receivedAt = newCol[time.Time](bb, "received_at")
	b.ip = newCol[string](bb, "ip")
	b.userAgent = newCol[string](bb, "user_agent")
	b.locale = newCol[string](bb, "locale")
	b.pageURL = newCol[string](bb, "page_url")
	b.pagePath = newCol[string](bb, "page_path")
	b.pageReferrer = newCol[string](bb, "page_referrer")
	b.pageTitle = newCol[string](bb, "page_title")
	b.utmSource = newCol[string](bb, "utm_source")
	b.utmMedium = newCol[string](bb, "utm_medium")
	b.utmCampaign = newCol[string](bb, "utm_campaign")
	b.deviceID = newCol[string](bb, "device_id")
	b.deviceType = newCol[string](bb, "device_type")
	b.appName = newCol[string](bb, "app_name")
	b.appVersion = newCol[string](bb, "app_version")
	b.libName = newCol[string](bb, "library_name")
	b.libV = newCol[string](bb, "library_version")
	b.email = newCol[string](bb, "email")
	b.productID = newCol[string](bb, "product_id")
	b.category = newCol[string](bb, "category")
	b.orderID = newCol[string](bb, "order_id")
	b.currency = newCol[string](bb, "currency")
	b.revenue = newCol[float64](bb, "revenue")
	b.traits = newCol[map[string]string](bb, "traits")
	b.properties = newCol[map[string]string](bb, "properties")
	b.contextTraits = newCol[map[string]string](bb, "context_traits")
	b.contextExtra = newCol[map[string]string](bb, "context_extra")
	b.kafkaTime = newCol[time.Time](bb, "kafka_time")
	bb.finish()
	return b
}

// email is the event's email as written: traits first, then context.traits.
func email(ev *schemas.Event) string {
	if v, ok := schemas.StringValue(ev.Traits["email"]); ok {
		return v
	}
	v, _ := schemas.StringValue(ev.Context.Traits["email"])
	return v
}

// orderRevenue is an order's revenue: properties.revenue, else total.
func orderRevenue(c *schemas.Commerce) float64 {
	if c.Revenue != nil {
		return *c.Revenue
	}
	return f64(c.Total)
}

func (b *eventsBuffer) add(r *schemas.ResolvedEvent, kafkaTime time.Time, pos position) {
	ev := &r.Event
	c := &ev.Context
	b.time.add(r.Timestamp)
	b.profileID.add(r.ProfileID)
	b.messageID.add(ev.MessageID)
	b.typ.add(string(ev.Type))
	b.event.add(ev.Event)
	b.name.add(ev.Name)
	b.userID.add(ev.UserID)
	b.anonymousID.add(ev.AnonymousID)
	b.groupID.add(ev.GroupID)
	b.previousID.add(ev.PreviousID)
	b.originalTimestamp.add(orEpoch(ev.OriginalTimestamp))
	b.sentAt.add(orEpoch(ev.SentAt))
	b.receivedAt.add(orEpoch(ev.ReceivedAt))
	b.ip.add(c.IP)
	b.userAgent.add(c.UserAgent)
	b.locale.add(c.Locale)
	b.pageURL.add(c.Page.URL)
	b.pagePath.add(c.Page.Path)
	b.pageReferrer.add(c.Page.Referrer)
	b.pageTitle.add(c.Page.Title)
	b.utmSource.add(c.Campaign.Source)
	b.utmMedium.add(c.Campaign.Medium)
	b.utmCampaign.add(c.Campaign.Name)
	b.deviceID.add(c.Device.ID)
	b.deviceType.add(c.Device.Type)
	b.appName.add(c.App.Name)
	b.appVersion.add(c.App.Version)
	b.libName.add(c.Library.Name)
	b.libV.add(c.Library.Version)
	b.email.add(email(ev))
	if cm := ev.Commerce; cm != nil {
		b.productID.add(cm.ProductID)
		b.category.add(cm.Category)
		b.orderID.add(cm.OrderID)
		b.currency.add(cm.Currency)
		b.revenue.add(orderRevenue(cm))
	} else {
		b.productID.add("")
		b.category.add("")
		b.orderID.add("")
		b.currency.add("")
		b.revenue.add(0)
	}
	b.traits.add(textMap(ev.Traits))
	b.properties.add(textMap(ev.Properties))
	b.contextTraits.add(textMap(c.Traits))
	b.contextExtra.add(textMap(c.Extra))
	b.kafkaTime.add(kafkaTime)
	b.position(pos.topic, pos.partition, pos.offset)
}

// position is where a row's input record sits in Kafka.
type position struct {
	topic     string
	partition int32
	offset    int64
}

type ordersBuffer struct {
	buffer
	time                                            *col[time.Time]
	orderID, profileID, messageID, currency, coupon *col[string]
	revenue, total, shipping, tax, discount         *col[float64]
	lines                                           *col[uint16]
	quantity                                        *col[uint32]
}

func newOrdersBuffer() *ordersBuffer {
	b := &ordersBuffer{buffer: buffer{table: "orders"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.orderID = newCol[string](bb, "order_id")
	b.profileID = newCol[string](bb, "profile_id")
	b.messageID = newCol[string](bb, "message_id")
	b.currency = newCol[string](bb, "currency")
	b.revenue = newCol[float64](bb, "revenue")
	b.total = newCol[float64](bb, "total")
	b.shipping = newCol[float64](bb, "shipping")
	b.tax = newCol[float64](bb, "tax")
	b.discount = newCol[float64](bb, "discount")
	b.coupon = newCol[string](bb, "coupon")
	b.lines = newCol[uint16](bb, "lines")
	b.quantity = newCol[uint32](bb, "quantity")
	bb.finish()
	return b
}

type linesBuffer struct {
	buffer
	time                                                               *col[time.Time]
	orderID, profileID, productID, sku, name, category, brand, variant *col[string]
	currency                                                           *col[string]
	line                                                               *col[uint16]
	price, amount                                                      *col[float64]
	quantity                                                           *col[uint32]
}

func newLinesBuffer() *linesBuffer {
	b := &linesBuffer{buffer: buffer{table: "order_lines"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.orderID = newCol[string](bb, "order_id")
	b.profileID = newCol[string](bb, "profile_id")
	b.line = newCol[uint16](bb, "line")
	b.productID = newCol[string](bb, "product_id")
	b.sku = newCol[string](bb, "sku")
	b.name = newCol[string](bb, "name")
	b.category = newCol[string](bb, "category")
	b.brand = newCol[string](bb, "brand")
	b.variant = newCol[string](bb, "variant")
	b.price = newCol[float64](bb, "price")
	b.quantity = newCol[uint32](bb, "quantity")
	b.amount = newCol[float64](bb, "amount")
	b.currency = newCol[string](bb, "currency")
	bb.finish()
	return b
}

// quantity is a line's quantity; the spec's default is 1.
func quantity(p *int64) uint32 {
	if p == nil || *p < 0 {
		return 1
	}
	return uint32(min(*p, 1<<32-1))
}

// addOrder adds an Order Completed event's order and lines; other events
// add nothing.
func addOrder(o *ordersBuffer, l *linesBuffer, r *schemas.ResolvedEvent, pos position, skipOrder, skipLines bool) {
	ev := &r.Event
	cm := ev.Commerce
	if ev.Type != schemas.Track || ev.Event != OrderCompleted || cm == nil {
		return
	}
	var qty uint32
	for i := range cm.Products {
		p := &cm.Products[i]
		q := quantity(p.Quantity)
		qty += q
		if skipLines {
			continue
		}
		l.time.add(r.Timestamp)
		l.orderID.add(cm.OrderID)
		l.profileID.add(r.ProfileID)
		l.line.add(uint16(min(i, 1<<16-1)))
		l.productID.add(p.ProductID)
		l.sku.add(p.SKU)
		l.name.add(p.Name)
		l.category.add(p.Category)
		l.brand.add(p.Brand)
		l.variant.add(p.Variant)
		l.price.add(f64(p.Price))
		l.quantity.add(q)
		l.amount.add(f64(p.Price) * float64(q))
		l.currency.add(cm.Currency)
		l.position(pos.topic, pos.partition, pos.offset)
	}
	if skipOrder {
		return
	}
	o.time.add(r.Timestamp)
	o.orderID.add(cm.OrderID)
	o.profileID.add(r.ProfileID)
	o.messageID.add(ev.MessageID)
	o.currency.add(cm.Currency)
	o.revenue.add(orderRevenue(cm))
	o.total.add(f64(cm.Total))
	o.shipping.add(f64(cm.Shipping))
	o.tax.add(f64(cm.Tax))
	o.discount.add(f64(cm.Discount))
	o.coupon.add(cm.Coupon)
	o.lines.add(uint16(min(len(cm.Products), 1<<16-1)))
	o.quantity.add(qty)
	o.position(pos.topic, pos.partition, pos.offset)
}

// Records of the other topics are decoded into goavro's native form with
// the schema this build knows as the reader schema, so fields a newer
// writer adds are dropped rather than breaking the warehouse (and a new
// column is one migration and one line here).

type native map[string]any

// get returns the field, with an Avro union ({"type": value}) unwrapped.
func (n native) get(k string) any {
	v := n[k]
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, inner := range m {
			switch inner.(type) {
			case string, float64, float32, int64, int32, bool, time.Time:
				return inner
			}
		}
	}
	return v
}

func (n native) str(k string) string {
	s, _ := n.get(k).(string)
	return s
}

func (n native) time(k string) (time.Time, error) {
	t, ok := n.get(k).(time.Time)
	if !ok {
		return time.Time{}, fmt.Errorf("field %s is %T, want a timestamp", k, n.get(k))
	}
	return t.UTC(), nil
}

func (n native) int64(k string) int64 {
	switch v := n.get(k).(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	}
	return 0
}

func asNative(v any) (native, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decoded record is %T, want a record", v)
	}
	return m, nil
}

type mergesBuffer struct {
	buffer
	time                                                      *col[time.Time]
	mergeID, fromProfile, intoProfile, triggerMessageID, rule *col[string]
	idTypes, idValues                                         *col[[]string]
}

func newMergesBuffer() *mergesBuffer {
	b := &mergesBuffer{buffer: buffer{table: "merges"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.mergeID = newCol[string](bb, "merge_id")
	b.fromProfile = newCol[string](bb, "from_profile")
	b.intoProfile = newCol[string](bb, "into_profile")
	b.idTypes = newCol[[]string](bb, "identifier_types")
	b.idValues = newCol[[]string](bb, "identifier_values")
	b.triggerMessageID = newCol[string](bb, "trigger_message_id")
	b.rule = newCol[string](bb, "rule")
	bb.finish()
	return b
}

func (b *mergesBuffer) add(n native, pos position) error {
	t, err := n.time("time")
	if err != nil {
		return err
	}
	ids, _ := n["identifiers"].([]any)
	types, values := make([]string, 0, len(ids)), make([]string, 0, len(ids))
	for _, it := range ids {
		id, _ := it.(map[string]any)
		types = append(types, native(id).str("type"))
		values = append(values, native(id).str("value"))
	}
	b.time.add(t)
	b.mergeID.add(n.str("merge_id"))
	b.fromProfile.add(n.str("from_profile"))
	b.intoProfile.add(n.str("into_profile"))
	b.idTypes.add(types)
	b.idValues.add(values)
	b.triggerMessageID.add(n.str("trigger_message_id"))
	b.rule.add(n.str("rule"))
	b.position(pos.topic, pos.partition, pos.offset)
	return nil
}

type membershipBuffer struct {
	buffer
	time                                                 *col[time.Time]
	profileID, segment, status, reason, triggerMessageID *col[string]
}

func newMembershipBuffer() *membershipBuffer {
	b := &membershipBuffer{buffer: buffer{table: "segment_membership_changes"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.profileID = newCol[string](bb, "profile_id")
	b.segment = newCol[string](bb, "segment")
	b.status = newCol[string](bb, "status")
	b.reason = newCol[string](bb, "reason")
	b.triggerMessageID = newCol[string](bb, "trigger_message_id")
	bb.finish()
	return b
}

func (b *membershipBuffer) add(n native, pos position) error {
	t, err := n.time("time")
	if err != nil {
		return err
	}
	b.time.add(t)
	b.profileID.add(n.str("profile_id"))
	b.segment.add(n.str("segment"))
	b.status.add(n.str("status"))
	b.reason.add(n.str("reason"))
	b.triggerMessageID.add(n.str("trigger_message_id"))
	b.position(pos.topic, pos.partition, pos.offset)
	return nil
}

type changesBuffer struct {
	buffer
	time                                           *col[time.Time]
	profileID, cause, triggerMessageID, mergedFrom *col[string]
	version                                        *col[uint64]
	features                                       *col[map[string]float64]
	featureLabels, traits                          *col[map[string]string]
	featuresCleared, traitsCleared                 *col[[]string]
}

func newChangesBuffer() *changesBuffer {
	b := &changesBuffer{buffer: buffer{table: "profile_changes"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.profileID = newCol[string](bb, "profile_id")
	b.version = newCol[uint64](bb, "version")
	b.cause = newCol[string](bb, "cause")
	b.triggerMessageID = newCol[string](bb, "trigger_message_id")
	b.mergedFrom = newCol[string](bb, "merged_from")
	b.features = newCol[map[string]float64](bb, "features")
	b.featureLabels = newCol[map[string]string](bb, "feature_labels")
	b.featuresCleared = newCol[[]string](bb, "features_cleared")
	b.traits = newCol[map[string]string](bb, "traits")
	b.traitsCleared = newCol[[]string](bb, "traits_cleared")
	bb.finish()
	return b
}

// newValue is the "new" side of a feature or trait change.
func newValue(change any) any {
	m, _ := change.(map[string]any)
	return native(m).get("new")
}

func (b *changesBuffer) add(n native, pos position) error {
	t, err := n.time("time")
	if err != nil {
		return err
	}
	nums, labels := map[string]float64{}, map[string]string{}
	var cleared, traitsCleared []string
	fs, _ := n["features"].(map[string]any)
	for name, ch := range fs {
		switch v := newValue(ch).(type) {
		case float64:
			nums[name] = v
		case string:
			labels[name] = v
		default:
			cleared = append(cleared, name)
		}
	}
	traits := map[string]string{}
	ts, _ := n["traits"].(map[string]any)
	for name, ch := range ts {
		if v, ok := newValue(ch).(string); ok {
			traits[name] = v
		} else {
			traitsCleared = append(traitsCleared, name)
		}
	}
	b.time.add(t)
	b.profileID.add(n.str("profile_id"))
	b.version.add(uint64(max(0, n.int64("version"))))
	b.cause.add(n.str("cause"))
	b.triggerMessageID.add(n.str("trigger_message_id"))
	b.mergedFrom.add(n.str("merged_from"))
	b.features.add(nums)
	b.featureLabels.add(labels)
	b.featuresCleared.add(nonNil(cleared))
	b.traits.add(traits)
	b.traitsCleared.add(nonNil(traitsCleared))
	b.position(pos.topic, pos.partition, pos.offset)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type deadLettersBuffer struct {
	buffer
	time                             *col[time.Time]
	code, stage, reason, sourceTopic *col[string]
	sourcePartition                  *col[int32]
	sourceOffset                     *col[int64]
}

func newDeadLettersBuffer() *deadLettersBuffer {
	b := &deadLettersBuffer{buffer: buffer{table: "dead_letters"}}
	bb := &b.buffer
	b.time = newCol[time.Time](bb, "time")
	b.code = newCol[string](bb, "code")
	b.stage = newCol[string](bb, "stage")
	b.reason = newCol[string](bb, "reason")
	b.sourceTopic = newCol[string](bb, "source_topic")
	b.sourcePartition = newCol[int32](bb, "source_partition")
	b.sourceOffset = newCol[int64](bb, "source_offset")
	bb.finish()
	return b
}

func (b *deadLettersBuffer) add(e *dlq.Entry, pos position) {
	b.time.add(orEpoch(e.Time))
	b.code.add(e.Code)
	b.stage.add(e.Stage)
	b.reason.add(e.Reason)
	b.sourceTopic.add(e.SourceTopic)
	b.sourcePartition.add(e.SourcePartition)
	b.sourceOffset.add(e.SourceOffset)
	b.position(pos.topic, pos.partition, pos.offset)
}
