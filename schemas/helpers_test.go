package schemas_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/streamcdp/streamcdp/schemas"
)

// fakeRegistry starts an in-process srfake registry for unit tests (the
// integration tests use the stack's registry through testkit).
func fakeRegistry(t testing.TB) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatalf("registry client: %v", err)
	}
	return reg, cl
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }

var baseTime = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// orderCompleted is a realistic e-commerce event with most fields set.
func orderCompleted() schemas.Event {
	return schemas.Event{
		MessageID:         "6f1c2a7e-5b7e-4a52-9c1e-3f7d2b9a0e11",
		Type:              schemas.Track,
		Event:             "Order Completed",
		UserID:            "u-000042",
		AnonymousID:       "a-7d9e3c1b-2f4a",
		OriginalTimestamp: baseTime.Add(123 * time.Millisecond),
		SentAt:            baseTime.Add(time.Second),
		ReceivedAt:        baseTime.Add(1200 * time.Millisecond),
		Context: schemas.Context{
			IP:        "203.0.113.9",
			UserAgent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15",
			Locale:    "en-GB",
			Page:      schemas.PageContext{URL: "https://shop.example/checkout/complete", Path: "/checkout/complete", Title: "Thank you"},
			Campaign:  schemas.Campaign{Source: "newsletter", Medium: "email", Name: "xmas-2026"},
			Device:    schemas.Device{ID: "d-ios-1", Type: "ios"},
			App:       schemas.App{Name: "shop", Version: "1.2.0", Build: "120"},
			Library:   schemas.Library{Name: "streamcdp-go", Version: "0.1.0"},
			Traits:    map[string]json.RawMessage{"email": json.RawMessage(`"ann@example.com"`)},
		},
		Traits:     map[string]json.RawMessage{"plan": json.RawMessage(`"pro"`)},
		Properties: map[string]json.RawMessage{"payment_method": json.RawMessage(`"card"`), "step": json.RawMessage(`4`)},
		Commerce: &schemas.Commerce{
			OrderID:  "o-2026-000009",
			Revenue:  f64(38.25),
			Shipping: f64(3.5),
			Tax:      f64(6.38),
			Currency: "GBP",
			Coupon:   "XMAS",
			Products: []schemas.Product{
				{ProductID: "p-1", SKU: "85123A", Category: "home", Name: "White Hanging Heart Mug", Price: f64(12.75), Quantity: i64(2)},
				{ProductID: "p-2", SKU: "71053", Category: "home", Name: "White Metal Lantern", Price: f64(6.25), Quantity: i64(1)},
				{ProductID: "p-3", SKU: "84406B", Category: "kitchen", Name: "Cream Cupid Hearts Coat Hanger", Price: f64(6.5), Quantity: i64(1), Extra: map[string]json.RawMessage{"position": json.RawMessage(`3`)}},
			},
		},
	}
}

// readJSONL reads a fixture file's lines.
func readJSONL(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening fixture: %v", err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	return lines
}

// sameEvent compares events, treating NaN as equal to NaN (Avro carries it,
// so a fuzzed input may hold one).
func sameEvent(a, b schemas.Event) bool {
	na, nb := nanFree(a), nanFree(b)
	return reflect.DeepEqual(na, nb)
}

func nanFree(e schemas.Event) schemas.Event {
	if e.Commerce == nil {
		return e
	}
	c := *e.Commerce
	fix := func(p **float64) {
		if *p != nil && math.IsNaN(**p) {
			v := math.Inf(1) - 1e300 // a value no decoder produces from NaN
			*p = &v
		}
	}
	for _, p := range []**float64{&c.Price, &c.Revenue, &c.Total, &c.Shipping, &c.Tax, &c.Discount} {
		fix(p)
	}
	c.Products = append([]schemas.Product(nil), c.Products...)
	for i := range c.Products {
		fix(&c.Products[i].Price)
	}
	e.Commerce = &c
	return e
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
