package recommend

import (
	"slices"

	"github.com/streamcdp/streamcdp/schemas"
)

// What an event means to the processor.
type kind uint8

const (
	ignored kind = iota
	viewed       // the profile looked at products: session context
	ordered      // the profile bought: a basket
)

// viewEvents name the e-commerce events whose product joins the session's
// views: looking at a product, clicking it, putting it in the cart.
var viewEvents = map[string]bool{"Product Viewed": true, "Product Clicked": true, "Product Added": true}

// action is what one event does to its profile.
type action struct {
	kind    kind
	items   []string // distinct product ids, in the event's order
	revenue float64
	orderID string
}

// classify reads a resolved event's commerce properties. An order is an
// Order Completed with its products (an order without products still counts
// for the scores); a view one of viewEvents with a product id. Everything
// else, refunds included (a history keeps purchases, not their returns), is
// ignored.
func classify(ev *schemas.Event) action {
	if ev.Type != schemas.Track || ev.Commerce == nil {
		return action{}
	}
	c := ev.Commerce
	switch {
	case ev.Event == "Order Completed":
		a := action{kind: ordered, orderID: c.OrderID}
		var sum float64
		for _, p := range c.Products {
			id := productID(p.ProductID, p.SKU)
			if id != "" && !slices.Contains(a.items, id) {
				a.items = append(a.items, id)
			}
			if p.Price != nil {
				q := int64(1)
				if p.Quantity != nil {
					q = *p.Quantity
				}
				sum += *p.Price * float64(q)
			}
		}
		// The spec's revenue excludes shipping and tax, the value the
		// lifetime-value models are about; total and the lines' sum are
		// the fallbacks producers most often have.
		switch {
		case c.Revenue != nil:
			a.revenue = *c.Revenue
		case c.Total != nil:
			a.revenue = *c.Total
		default:
			a.revenue = sum
		}
		return a
	case viewEvents[ev.Event]:
		if id := productID(c.ProductID, c.SKU); id != "" {
			return action{kind: viewed, items: []string{id}}
		}
	}
	return action{}
}

func productID(id, sku string) string {
	if id != "" {
		return id
	}
	return sku
}
