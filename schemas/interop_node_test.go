package schemas_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/internal/validate"
	"github.com/streamcdp/streamcdp/schemas"
)

// nodeSummary is what produce.js prints on stdout.
type nodeSummary struct {
	Topic      string   `json:"topic"`
	Subject    string   `json:"subject"`
	SchemaID   int      `json:"schema_id"`
	Count      int      `json:"count"`
	MessageIDs []string `json:"message_ids"`
	Events     []struct {
		MessageID string  `json:"message_id"`
		Type      string  `json:"type"`
		Event     *string `json:"event"`
	} `json:"events"`
}

// nodeExpected is what produce.js sends, written down independently of it:
// the test fails if the Node side or the Go side reads event.avsc
// differently. Message ids and times are set per run and checked apart.
// JSON texts are as JavaScript's JSON.stringify writes them.
type nodeExpected struct {
	key        string        // record key: anonymous id, else user id
	secondsAgo time.Duration // original_timestamp = sent_at - secondsAgo
	ev         schemas.Event
}

func nodeF64(v float64) *float64 { return &v }
func nodeI64(v int64) *int64     { return &v }

func nodeRaw(s string) json.RawMessage { return json.RawMessage(s) }

func nodeExpectedEvents() []nodeExpected {
	lib := schemas.Library{Name: "streamcdp-node-example", Version: "1.0.0"}
	return []nodeExpected{
		{key: "node-anon-1", secondsAgo: 60, ev: schemas.Event{
			Type: schemas.Identify, UserID: "node-user-1", AnonymousID: "node-anon-1",
			Context: schemas.Context{
				IP: "203.0.113.7", Locale: "de-DE",
				Device:  schemas.Device{ID: "node-device-1", Type: "ios"},
				Library: lib,
			},
			Traits: map[string]json.RawMessage{
				"email":   nodeRaw(`"ada@example.com"`),
				"name":    nodeRaw(`"Ada Lovelace"`),
				"plan":    nodeRaw(`"premium"`),
				"logins":  nodeRaw(`42`),
				"address": nodeRaw(`{"city":"Berlin","country":"DE"}`),
			},
		}},
		{key: "node-anon-1", secondsAgo: 50, ev: schemas.Event{
			Type: schemas.Track, Event: "Order Completed", UserID: "node-user-1", AnonymousID: "node-anon-1",
			Context:    schemas.Context{Library: lib},
			Properties: map[string]json.RawMessage{"affiliation": nodeRaw(`"Node Store"`), "gift_wrap": nodeRaw(`true`)},
			Commerce: &schemas.Commerce{
				OrderID: "node-order-1001", CheckoutID: "node-checkout-77",
				Revenue: nodeF64(59.9), Total: nodeF64(64.89), Shipping: nodeF64(4.99), Tax: nodeF64(9.56), Discount: nodeF64(2.5),
				Coupon: "WELCOME5", Currency: "EUR",
				Products: []schemas.Product{
					{ProductID: "sku-mug-01", SKU: "MUG-01", Name: "Mug", Category: "Kitchen", Brand: "Acme",
						Price: nodeF64(12.5), Quantity: nodeI64(2), Extra: map[string]json.RawMessage{"color": nodeRaw(`"blue"`)}},
					{ProductID: "sku-tee-02", SKU: "TEE-02", Name: `T-Shirt "Kafka"`, Category: "Apparel", Variant: "L",
						Price: nodeF64(34.9), Quantity: nodeI64(1)},
				},
			},
		}},
		{key: "node-anon-2", secondsAgo: 40, ev: schemas.Event{
			Type: schemas.Page, AnonymousID: "node-anon-2", Name: "Pricing",
			Context: schemas.Context{
				IP: "198.51.100.23", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) StreamCDP-Node-Example", Locale: "en-US",
				Page: schemas.PageContext{
					URL: "https://shop.example.com/pricing?utm_source=newsletter", Path: "/pricing",
					Referrer: "https://mail.example.org/", Title: "Pricing - Example Shop",
				},
				Campaign: schemas.Campaign{Source: "newsletter", Medium: "email", Name: "spring_sale", Term: "mugs", Content: "hero-banner"},
				Library:  lib,
				Extra:    map[string]json.RawMessage{"timezone": nodeRaw(`"Europe/Berlin"`), "screen": nodeRaw(`{"width":1920,"height":1080}`)},
			},
			Properties: map[string]json.RawMessage{"section": nodeRaw(`"plans"`)},
		}},
		{key: "node-anon-3", secondsAgo: 30, ev: schemas.Event{
			Type: schemas.Screen, AnonymousID: "node-anon-3", Name: "Product Detail",
			Context: schemas.Context{
				Device:  schemas.Device{ID: "node-device-3", Type: "android"},
				App:     schemas.App{Name: "Example Shop", Version: "3.2.1", Build: "321"},
				Library: lib,
			},
			Properties: map[string]json.RawMessage{"product_id": nodeRaw(`"sku-mug-01"`)},
		}},
		{key: "node-user-1", secondsAgo: 20, ev: schemas.Event{
			Type: schemas.Alias, UserID: "node-user-1", PreviousID: "node-anon-2",
			Context: schemas.Context{Library: lib},
		}},
		{key: "node-user-1", secondsAgo: 10, ev: schemas.Event{
			Type: schemas.Group, UserID: "node-user-1", GroupID: "node-company-9",
			Context: schemas.Context{Library: lib},
			Traits: map[string]json.RawMessage{
				"name": nodeRaw(`"Example GmbH"`), "employees": nodeRaw(`120`), "industry": nodeRaw(`"Retail"`),
			},
		}},
	}
}

// runNodeProducer runs produce.js against the stack and returns its summary.
func runNodeProducer(t *testing.T, dir, brokers, registry, topic, schemaPath string) nodeSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "produce.js",
		"--brokers", brokers, "--registry", registry, "--topic", topic, "--schema", schemaPath)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node produce.js: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.Bytes(), stdout.Bytes())
	}
	var sum nodeSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("produce.js summary is not JSON: %v\n%s\nstderr:\n%s", err, stdout.Bytes(), stderr.Bytes())
	}
	return sum
}

// An independent Node client (kafkajs + @kafkajs/confluent-schema-registry,
// i.e. avsc) that only knows the published event.avsc produces events; the
// Go decoder reads every one of them with the values Node sent, and
// validation accepts them.
func TestNodeProducerInterop(t *testing.T) {
	env := testkit.New(t)
	dir := testkit.NodeClient(t)
	topic := env.Topic(t, "events.raw", 1)
	schemaPath, err := filepath.Abs("event.avsc")
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	sum := runNodeProducer(t, dir, strings.Join(env.Services.KafkaBrokers, ","), env.Services.SchemaRegistryURL, topic, schemaPath)
	after := time.Now()

	want := nodeExpectedEvents()
	if sum.Topic != topic || sum.Subject != topic+"-value" {
		t.Fatalf("summary topic %q subject %q, want %q and %q", sum.Topic, sum.Subject, topic, topic+"-value")
	}
	if sum.Count != len(want) || len(sum.MessageIDs) != len(want) || len(sum.Events) != len(want) {
		t.Fatalf("Node reports %d events (%d ids, %d entries), the test expects %d", sum.Count, len(sum.MessageIDs), len(sum.Events), len(want))
	}
	seen := map[string]bool{}
	for i, e := range sum.Events {
		if e.MessageID == "" || seen[e.MessageID] || e.MessageID != sum.MessageIDs[i] {
			t.Fatalf("summary event %d has message id %q (ids %v): want unique, non-empty ids in send order", i, e.MessageID, sum.MessageIDs)
		}
		seen[e.MessageID] = true
		if e.Type != string(want[i].ev.Type) {
			t.Fatalf("Node sent event %d as %q, the test expects %q", i, e.Type, want[i].ev.Type)
		}
	}

	c := testkit.Context(t)
	reg := env.Registry(t)

	// The subject follows the topic-name strategy, holds the id Node used,
	// and is BACKWARD, as StreamCDP requires.
	latest, err := reg.SchemaByVersion(c, topic+"-value", -1)
	if err != nil {
		t.Fatalf("subject %s-value: %v", topic, err)
	}
	if latest.ID != sum.SchemaID {
		t.Fatalf("subject %s-value latest id %d, Node reports schema id %d", topic, latest.ID, sum.SchemaID)
	}
	if lvl := reg.Compatibility(c, topic+"-value")[0]; lvl.Err != nil || lvl.Level != sr.CompatBackward {
		t.Fatalf("subject compatibility = %v (%v), want BACKWARD", lvl.Level, lvl.Err)
	}
	// A Go producer with the embedded schema finds Node's registration
	// instead of adding a version: both write the same published contract.
	if id, err := schemas.NewSerde(reg).Register(c, topic, schemas.EventSchema); err != nil || id != sum.SchemaID {
		t.Fatalf("Go registration of event.avsc under the same subject: id %d, %v; want Node's id %d", id, err, sum.SchemaID)
	}
	if versions, err := reg.SubjectVersions(c, topic+"-value"); err != nil || len(versions) != 1 {
		t.Fatalf("subject versions = %v, %v; want exactly 1", versions, err)
	}

	// Exactly Count records are on the topic.
	ends, err := env.Admin(t).ListEndOffsets(c, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	if end, ok := ends.Lookup(topic, 0); !ok || end.Err != nil || end.Offset != int64(sum.Count) {
		t.Fatalf("end offset of %s/0 = %+v (found %v), want %d records", topic, end, ok, sum.Count)
	}

	recs := nodeConsumeAll(t, env, topic, sum.Count)

	// A consumer that knows nothing of Node: fresh registry cache.
	serde := schemas.NewSerde(env.Registry(t))
	for i, r := range recs {
		w := want[i]
		if len(r.Value) < 5 || r.Value[0] != 0 || int(binary.BigEndian.Uint32(r.Value[1:5])) != sum.SchemaID {
			t.Fatalf("record %d: value does not start with magic 0 and schema id %d: % x", i, sum.SchemaID, r.Value[:min(len(r.Value), 5)])
		}
		if string(r.Key) != w.key {
			t.Errorf("record %d: key %q, want %q", i, r.Key, w.key)
		}
		got, err := serde.Decode(c, r.Value)
		if err != nil {
			t.Fatalf("record %d (%s): decode: %v", i, w.ev.Type, err)
		}
		if err := validate.Event(&got, len(r.Value), r.Timestamp); err != nil {
			t.Errorf("record %d (%s %s): validation refused it: %v", i, got.Type, got.MessageID, err)
		}

		// The values the spec cares most about, named one by one.
		if got.Type != w.ev.Type || got.MessageID != sum.MessageIDs[i] {
			t.Errorf("record %d: type %q message id %q, want %q %q", i, got.Type, got.MessageID, w.ev.Type, sum.MessageIDs[i])
		}
		if got.UserID != w.ev.UserID || got.AnonymousID != w.ev.AnonymousID {
			t.Errorf("record %d: user id %q anonymous id %q, want %q %q", i, got.UserID, got.AnonymousID, w.ev.UserID, w.ev.AnonymousID)
		}
		if wantEmail, ok := w.ev.Trait("email"); ok {
			if email, ok := got.Trait("email"); !ok || email != wantEmail {
				t.Errorf("record %d: traits.email = %q (%v), want %q", i, email, ok, wantEmail)
			}
		}
		if wc := w.ev.Commerce; wc != nil {
			gc := got.Commerce
			switch {
			case gc == nil:
				t.Errorf("record %d: no commerce fields, want order %s", i, wc.OrderID)
			case gc.OrderID != wc.OrderID || gc.Revenue == nil || *gc.Revenue != *wc.Revenue:
				t.Errorf("record %d: order_id %q revenue %v, want %q %v", i, gc.OrderID, nodeFloat(gc.Revenue), wc.OrderID, *wc.Revenue)
			case !reflect.DeepEqual(gc.Products, wc.Products):
				t.Errorf("record %d: products %s\nwant %s", i, nodeJSON(gc.Products), nodeJSON(wc.Products))
			}
		}
		if got.Context.Page.URL != w.ev.Context.Page.URL || got.Context.Campaign != w.ev.Context.Campaign {
			t.Errorf("record %d: page url %q campaign %+v, want %q %+v", i, got.Context.Page.URL, got.Context.Campaign, w.ev.Context.Page.URL, w.ev.Context.Campaign)
		}

		// Times come from Node's clock: sent during the run, the action
		// the fixed number of seconds before, no server receipt time.
		if got.SentAt.Before(before.Truncate(time.Millisecond)) || got.SentAt.After(after) {
			t.Errorf("record %d: sent_at %v outside the Node run [%v, %v]", i, got.SentAt, before, after)
		}
		if d := got.SentAt.Sub(got.OriginalTimestamp); d != w.secondsAgo*time.Second {
			t.Errorf("record %d: sent_at - original_timestamp = %v, want %v", i, d, w.secondsAgo*time.Second)
		}
		if !got.ReceivedAt.IsZero() {
			t.Errorf("record %d: received_at %v, Node sent none", i, got.ReceivedAt)
		}

		// And everything else, field by field.
		exp := w.ev
		exp.MessageID = sum.MessageIDs[i]
		exp.OriginalTimestamp, exp.SentAt = got.OriginalTimestamp, got.SentAt
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("record %d (%s): decoded event differs from what Node sent\n got %s\nwant %s", i, w.ev.Type, nodeJSON(got), nodeJSON(exp))
		}
	}
}

// nodeConsumeAll reads the first n records of topic, failing if they do not
// arrive within the test context.
func nodeConsumeAll(t *testing.T, env *testkit.Env, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := env.Kafka(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	c := testkit.Context(t)
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(c)
		if err := c.Err(); err != nil {
			t.Fatalf("consumed %d of %d records from %s: %v", len(recs), n, topic, err)
		}
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("fetching %s/%d: %v", tp, p, err)
			}
		})
		recs = append(recs, fs.Records()...)
	}
	if len(recs) != n {
		t.Fatalf("consumed %d records from %s, want %d", len(recs), topic, n)
	}
	return recs
}

func nodeFloat(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func nodeJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
