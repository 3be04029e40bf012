package producer_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/streamcdp/streamcdp/producer"
	"github.com/streamcdp/streamcdp/schemas"
)

// Example_track sends a few events of a shopper who signs in and buys. It
// has no Output comment, so `go test` compiles it but does not run it (it
// needs a broker and a registry: `cdp local up`).
func Example_track() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg, err := producer.ConfigFromEnv() // CDP_KAFKA_BROKERS, CDP_SCHEMA_REGISTRY_URL, CDP_TOPIC_PREFIX
	if err != nil {
		log.Fatal(err)
	}
	cfg.OnError = func(r producer.Result) { log.Printf("event %s lost: %v", r.MessageID, r.Err) }
	p, err := producer.New(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close(ctx)

	visitor := producer.Anonymous("device-7f3a")
	if err := p.Page(ctx, visitor, "Mugs", producer.Props{"path": "/mugs"}); err != nil {
		log.Fatal(err)
	}
	// Signing in: the user id and the device id now name the same person.
	shopper := producer.Who{UserID: "u-42", AnonymousID: "device-7f3a"}
	if err := p.Identify(ctx, shopper, producer.Props{"email": "ada@example.com"}); err != nil {
		log.Fatal(err)
	}
	err = p.Track(ctx, shopper, "Order Completed", producer.Props{
		"order_id": "o-1001", "revenue": 25.0, "currency": "EUR",
		"products": []map[string]any{{"product_id": "mug-1", "price": 12.5, "quantity": 2}},
	}, producer.At(time.Now().Add(-2*time.Second)))
	if err != nil {
		log.Fatal(err)
	}

	// An invalid event is refused at once, naming the field.
	var fe *schemas.FieldError
	if err := p.Track(ctx, shopper, "", nil); errors.As(err, &fe) {
		log.Printf("refused: %s %s", fe.Code, fe.Field) // missing_field event
	}

	// Wait for an acknowledgement when it matters.
	res, err := p.SendSync(ctx, schemas.Event{Type: schemas.Track, Event: "Cart Viewed", UserID: "u-42"})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("stored at %s/%d@%d", res.Topic, res.Partition, res.Offset)

	if err := p.Flush(ctx); err != nil {
		log.Printf("some events were not delivered: %v", err)
	}
}
