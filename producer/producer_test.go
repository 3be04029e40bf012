package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamcdp/streamcdp/internal/testkit"
	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
)

// newProducer returns a producer on a fresh 3-partition raw topic.
func newProducer(t testing.TB, mod func(*producer.Config)) (*producer.Producer, *testkit.Env, string) {
	t.Helper()
	env := testkit.New(t)
	topic := env.Topic(t, "events.raw", 3)
	cfg := producer.Config{
		Brokers:     env.Services.KafkaBrokers,
		RegistryURL: env.Services.SchemaRegistryURL,
		TopicPrefix: env.Services.TopicPrefix,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := producer.New(testkit.Context(t), cfg)
	if err != nil {
		t.Fatalf("producer.New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	if p.Topic() != topic {
		t.Fatalf("default topic %q, want %q", p.Topic(), topic)
	}
	return p, env, topic
}

// consume reads exactly n records from the start of topic. It fails when
// the test context ends first, and when more than n records are there.
func consume(t *testing.T, env *testkit.Env, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := env.Kafka(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testkit.Context(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records from %s: %v", len(out), n, topic, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("consumed %d records from %s, want %d", len(out), topic, n)
	}
	// Nothing beyond n: the end offsets add up to n.
	ends, err := env.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(n) {
		t.Fatalf("topic %s holds %d records, want %d", topic, total, n)
	}
	return out
}

func decoder(t *testing.T, env *testkit.Env) *schemas.Serde {
	return schemas.NewSerde(env.Registry(t)) // a separate cache: ids go through the registry
}

func TestProducerDeliversExactlyTheEventsSent(t *testing.T) {
	p, env, topic := newProducer(t, nil)
	ctx := testkit.Context(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	type want struct {
		typ        schemas.CallType
		key, name  string
		userID     string
		anonID     string
		prop, vals string // one property or trait and its JSON value
	}
	wants := map[string]want{}
	const n = 60
	for i := range n {
		id := fmt.Sprintf("m-%03d", i)
		opts := []producer.Option{producer.WithMessageID(id), producer.At(at.Add(time.Duration(i) * time.Second))}
		user := fmt.Sprintf("u-%d", i%7)
		var err error
		switch i % 6 {
		case 0:
			err = p.Track(ctx, producer.User(user), "Video Played", producer.Props{"n": i}, opts...)
			wants[id] = want{schemas.Track, user, "Video Played", user, "", "n", fmt.Sprint(i)}
		case 1:
			err = p.Identify(ctx, producer.Who{UserID: user, AnonymousID: "a-1"}, producer.Props{"email": user + "@example.com"}, opts...)
			wants[id] = want{schemas.Identify, user, "", user, "a-1", "email", `"` + user + `@example.com"`}
		case 2:
			err = p.Page(ctx, producer.Anonymous("a-2"), "Home", producer.Props{"path": "/"}, opts...)
			wants[id] = want{schemas.Page, "a-2", "Home", "", "a-2", "path", `"/"`}
		case 3:
			err = p.Screen(ctx, producer.User(user), "Cart", producer.Props{"items": []int{1, 2}}, opts...)
			wants[id] = want{schemas.Screen, user, "Cart", user, "", "items", `[1,2]`}
		case 4:
			err = p.Group(ctx, producer.User(user), "acme", producer.Props{"plan": "pro"}, opts...)
			wants[id] = want{schemas.Group, user, "acme", user, "", "plan", `"pro"`}
		case 5:
			err = p.Alias(ctx, user, "a-3", opts...)
			wants[id] = want{schemas.Alias, user, "a-3", user, "", "", ""}
		}
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if st := p.Stats(); st != (producer.Stats{Queued: n, Delivered: n}) {
		t.Errorf("stats %+v, want %d queued and delivered", st, n)
	}

	dec := decoder(t, env)
	seen := map[string]bool{}
	for _, r := range consume(t, env, topic, n) {
		ev, err := dec.Decode(ctx, r.Value)
		if err != nil {
			t.Fatalf("decode %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		w, ok := wants[ev.MessageID]
		if !ok || seen[ev.MessageID] {
			t.Fatalf("unexpected or repeated message %q", ev.MessageID)
		}
		seen[ev.MessageID] = true
		if string(r.Key) != w.key || ev.Type != w.typ || ev.UserID != w.userID || ev.AnonymousID != w.anonID {
			t.Errorf("%s: key %q type %s user %q anon %q; want %+v", ev.MessageID, r.Key, ev.Type, ev.UserID, ev.AnonymousID, w)
		}
		var name, val string
		switch ev.Type {
		case schemas.Track:
			name, val = ev.Event, string(ev.Properties[w.prop])
		case schemas.Page, schemas.Screen:
			name, val = ev.Name, string(ev.Properties[w.prop])
		case schemas.Identify:
			val = string(ev.Traits[w.prop])
		case schemas.Group:
			name, val = ev.GroupID, string(ev.Traits[w.prop])
		case schemas.Alias:
			name = ev.PreviousID
		}
		if name != w.name || val != w.vals {
			t.Errorf("%s: name %q value %s, want %q %s", ev.MessageID, name, val, w.name, w.vals)
		}
		var i int
		fmt.Sscanf(ev.MessageID, "m-%d", &i)
		if !ev.OriginalTimestamp.Equal(at.Add(time.Duration(i) * time.Second)) {
			t.Errorf("%s: timestamp %s", ev.MessageID, ev.OriginalTimestamp)
		}
		if ev.SentAt.IsZero() || ev.Context.Library != (schemas.Library{Name: producer.LibraryName, Version: producer.Version}) {
			t.Errorf("%s: sentAt %s library %+v not filled in", ev.MessageID, ev.SentAt, ev.Context.Library)
		}
	}
}

func TestSendSyncFillsDefaultsAndCommerce(t *testing.T) {
	p, env, topic := newProducer(t, nil)
	ctx := testkit.Context(t)
	before := time.Now().Add(-time.Second)
	res, err := p.SendSync(ctx, schemas.Event{
		Type: schemas.Track, Event: "Order Completed", UserID: "u-1",
		Properties: map[string]json.RawMessage{
			"order_id": json.RawMessage(`"o-9"`), "revenue": json.RawMessage(`25.5`), "gift": json.RawMessage(`true`),
			"products": json.RawMessage(`[{"product_id":"mug-1","price":12.75,"quantity":2}]`),
		},
	})
	if err != nil {
		t.Fatalf("SendSync: %v", err)
	}
	if res.Topic != topic || res.MessageID == "" {
		t.Errorf("result %+v", res)
	}
	r := consume(t, env, topic, 1)[0]
	if r.Partition != res.Partition || r.Offset != res.Offset {
		t.Errorf("result says %d@%d, record is at %d@%d", res.Partition, res.Offset, r.Partition, r.Offset)
	}
	ev, err := decoder(t, env).Decode(ctx, r.Value)
	if err != nil {
		t.Fatal(err)
	}
	if ev.MessageID != res.MessageID || len(ev.MessageID) != 36 {
		t.Errorf("messageId %q, result %q: want the same UUID", ev.MessageID, res.MessageID)
	}
	if ev.OriginalTimestamp.Before(before) || ev.SentAt.Before(before) {
		t.Errorf("timestamp %s sentAt %s not filled with now", ev.OriginalTimestamp, ev.SentAt)
	}
	c := ev.Commerce
	if c == nil || c.OrderID != "o-9" || c.Revenue == nil || *c.Revenue != 25.5 || len(c.Products) != 1 ||
		c.Products[0].ProductID != "mug-1" || *c.Products[0].Quantity != 2 {
		t.Fatalf("commerce not typed: %+v", c)
	}
	if string(ev.Properties["gift"]) != "true" || ev.Properties["revenue"] != nil {
		t.Errorf("properties %v: want only the untyped gift", ev.Properties)
	}
}

func TestInvalidEventsAreRefusedBeforeSending(t *testing.T) {
	p, env, topic := newProducer(t, nil)
	ctx := testkit.Context(t)
	for _, tc := range []struct {
		name        string
		send        func() error
		code, field string
	}{
		{"track without event", func() error { return p.Track(ctx, producer.User("u"), "", nil) }, schemas.CodeMissingField, "event"},
		{"no identifier", func() error { return p.Track(ctx, producer.Who{}, "X", nil) }, schemas.CodeMissingIdentifier, ""},
		{"group without id", func() error { return p.Group(ctx, producer.User("u"), "", nil) }, schemas.CodeMissingField, "groupId"},
		{"alias without previous", func() error { return p.Alias(ctx, "u", "") }, schemas.CodeMissingField, "previousId"},
		{"year 1970", func() error {
			return p.Track(ctx, producer.User("u"), "X", nil, producer.At(time.Unix(100, 0)))
		}, schemas.CodeBadTimestamp, "timestamp"},
		{"unknown type", func() error {
			return p.Send(ctx, schemas.Event{Type: "click", UserID: "u"}, nil)
		}, schemas.CodeUnknownType, "type"},
		{"oversize", func() error {
			return p.Track(ctx, producer.User("u"), "X", producer.Props{"blob": strings.Repeat("x", 40<<10)})
		}, schemas.CodeOversize, ""},
		{"property JSON cannot carry", func() error {
			return p.Track(ctx, producer.User("u"), "X", producer.Props{"f": func() {}})
		}, schemas.CodeWrongType, "properties.f"},
		{"typed commerce field of the wrong type", func() error {
			return p.Track(ctx, producer.User("u"), "Order Completed", producer.Props{"revenue": "lots"})
		}, schemas.CodeWrongType, "properties.revenue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.send()
			var fe *schemas.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *schemas.FieldError", err)
			}
			if fe.Code != tc.code || fe.Field != tc.field {
				t.Errorf("code %q field %q, want %q %q (%v)", fe.Code, fe.Field, tc.code, tc.field, err)
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Queued != 0 || st.Invalid != 9 {
		t.Errorf("stats %+v, want nothing queued and 9 invalid", st)
	}
	ends, err := env.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("partition %d has %d records, want none", o.Partition, o.Offset)
		}
	})
}

func TestDeliveryErrorsAreSurfaced(t *testing.T) {
	var mu sync.Mutex
	var onError []producer.Result
	p, _, _ := newProducer(t, func(c *producer.Config) {
		c.OnError = func(r producer.Result) {
			mu.Lock()
			defer mu.Unlock()
			onError = append(onError, r)
		}
	})
	ctx := testkit.Context(t)
	tooBig := make([]byte, 2<<20) // over the 1 MB batch limit: refused by the client
	got := make(chan producer.Result, 1)
	p.SendRaw(ctx, []byte("k"), tooBig, func(r producer.Result) { got <- r })
	p.SendRaw(ctx, []byte("k"), tooBig, nil) // reported through OnError
	if r := <-got; r.Err == nil {
		t.Errorf("callback got no error for a 2 MB record")
	}
	err := p.Flush(ctx)
	var de *producer.DeliveryError
	if !errors.As(err, &de) || de.Failed != 2 {
		t.Fatalf("Flush = %v, want a DeliveryError for 2 events", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Errorf("second Flush = %v, want nil (failures are reported once)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(onError) != 1 || onError[0].Err == nil {
		t.Errorf("OnError calls %+v, want one with an error", onError)
	}
	if st := p.Stats(); st.Failed != 2 || st.Delivered != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestNewRefusesMissingTopic(t *testing.T) {
	env := testkit.New(t)
	_, err := producer.New(testkit.Context(t), producer.Config{
		Brokers: env.Services.KafkaBrokers, RegistryURL: env.Services.SchemaRegistryURL,
		Topic: env.Services.Topic("no.such.topic"),
	})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("New = %v, want an error saying the topic does not exist", err)
	}
}
