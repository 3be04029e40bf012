package generate

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

const (
	shopURL  = "https://shop.example"
	shopName = "StreamShop"
	currency = "GBP"
)

var campaigns = []evCampaign{
	{Source: "newsletter", Medium: "email", Name: "weekly-picks"},
	{Source: "google", Medium: "cpc", Name: "brand", Term: "gift shop"},
	{Source: "facebook", Medium: "social", Name: "xmas", Content: "carousel"},
	{Source: "instagram", Medium: "social", Name: "new-in"},
	{Source: "partner", Medium: "affiliate", Name: "vouchers"},
}

type cartItem struct {
	p   *Product
	qty int
}

// session builds the events of one visit in event-time order. It mutates the
// device's sign-in state as it goes, so the next session on the device sees
// it; sessions on one device never overlap.
type session struct {
	g        *gen
	p        *person
	d        *device
	cur      time.Time
	ip       string
	campaign *evCampaign
	page     *evPage // current page, web only
	cart     []cartItem
	recs     []*rec
}

func (g *gen) pickPerson() *person {
	x := g.traffic.Float64() * g.personCum[len(g.personCum)-1]
	return g.persons[sort.SearchFloat64s(g.personCum, x)]
}

// pickDevice chooses one of p's devices by preference among those not in a
// session at t, or nil if all are busy.
func (g *gen) pickDevice(p *person, t time.Time) *device {
	w := g.scratchW[:0]
	for i, d := range p.devices {
		if d.busyUntil.After(t) {
			w = append(w, 0)
		} else {
			w = append(w, p.devWeights[i])
		}
	}
	g.scratchW = w
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	if sum == 0 {
		return nil
	}
	return p.devices[pickWeighted(g.traffic, w)]
}

// startSession simulates a visit beginning at t and queues its events.
func (g *gen) startSession(t time.Time) {
	r := g.traffic
	p := g.pickPerson()
	d := g.pickDevice(p, t)
	if d == nil {
		g.busySkips++
		return
	}
	s := &session{g: g, p: p, d: d, cur: t}
	s.ip = fmt.Sprintf("%s.%d", []string{"192.0.2", "198.51.100", "203.0.113"}[r.IntN(3)], 1+r.IntN(254))
	if d.kind != devWeb && r.Float64() < 0.01 {
		g.newAnon(d) // app reinstalled: new anonymousId, same device id
		d.signedIn = nil
	}
	if d.lastPerson != p && d.signedIn != nil && d.signedIn != p {
		d.signedIn = nil // someone else's turn on a shared device
	}
	d.lastPerson = p

	// Landing.
	if r.Float64() < 0.2 {
		c := campaigns[r.IntN(len(campaigns))]
		s.campaign = &c
	}
	if s.campaign != nil && r.Float64() < 0.5 {
		s.viewProduct(g.product(), 0)
	} else {
		s.view("Home", "/", shopName, 0)
	}
	if p.userID != "" && d.signedIn != p && r.Float64() < 0.3 {
		s.signIn()
	}

	// Browsing.
	views := 1
	for views < 25 && r.Float64() < 0.75 {
		views++
	}
	for range views {
		if r.Float64() < 0.25 {
			c := g.product().Category
			s.view("Category", "/c/"+slug(c), titleCase(c)+" | "+shopName, s.think())
		}
		prod := g.product()
		s.viewProduct(prod, s.think())
		if r.Float64() < 0.22 {
			s.addToCart(prod, 1+r.IntN(3))
		}
		if len(s.cart) > 0 && r.Float64() < 0.04 {
			s.removeFromCart(r.IntN(len(s.cart)))
		}
	}
	if len(s.cart) > 0 && r.Float64() < 0.55 {
		s.view("Cart", "/cart", "Your basket | "+shopName, s.think())
		s.track("Cart Viewed", &properties{Products: s.cartProducts()}, nil, s.quick())
	}
	if len(s.cart) > 0 && r.Float64() < 0.45 {
		s.checkout()
	}
	if d.signedIn != p && r.Float64() < 0.02 {
		// Newsletter sign-up: an anonymous identify with the email.
		s.identify(false, s.think())
	}

	s.finish()
	if d.kind == devWeb && d.signedIn == p && r.Float64() < 0.04 {
		// Signing out calls analytics.reset(): a new anonymousId.
		d.signedIn = nil
		g.newAnon(d)
	}
}

// think is the time a person spends on a page before the next one.
func (s *session) think() time.Duration {
	sec := math.Exp(2.5 + s.g.traffic.NormFloat64()*0.8) // median about 12 s
	return time.Duration(min(sec, 600)*1000) * time.Millisecond
}

// quick is the gap between calls fired by one page load.
func (s *session) quick() time.Duration {
	return time.Duration(20+s.g.traffic.IntN(400)) * time.Millisecond
}

func (g *gen) product() *Product { return &g.cfg.Catalog[g.zipf.Uint64()] }

func slug(s string) string { return strings.ReplaceAll(strings.ToLower(s), " ", "-") }

// base returns an event of type typ from this session's device at the next
// event time (gap after the previous one), with the identifiers and context
// the device's library attaches to every call.
func (s *session) base(typ string, gap time.Duration) (*event, *rec) {
	s.cur = s.cur.Add(gap)
	d := s.d
	e := &event{Type: typ, MessageID: uuid4(s.g.ids), AnonymousID: d.anon}
	if d.signedIn == s.p {
		e.UserID = s.p.userID
	}
	ctx := &evContext{IP: s.ip, UserAgent: d.userAgent, Locale: s.p.locale,
		Device: &evDevice{ID: d.id, Type: devKindNames[d.kind]}}
	if d.kind == devWeb {
		ctx.Library = &evLibrary{Name: "analytics.js", Version: "5.2.0"}
		if s.page != nil {
			pg := *s.page
			ctx.Page = &pg
		}
	} else {
		ctx.App = &evApp{Name: shopName, Version: "4.2.0", Build: "420"}
		ctx.Library = &evLibrary{Name: "analytics-" + devKindNames[d.kind], Version: "1.6.0"}
	}
	if s.campaign != nil && len(s.recs) == 0 {
		ctx.Campaign = s.campaign
	}
	e.Context = ctx
	r := &rec{ev: e, at: s.cur, p: s.p, d: d}
	// Web libraries send at once; mobile ones flush a queue every 30 s.
	lat := time.Duration(10+s.g.traffic.IntN(290)) * time.Millisecond
	if d.kind != devWeb {
		lat = time.Duration(100+s.g.traffic.IntN(30_000)) * time.Millisecond
	}
	r.sent = s.cur.Add(lat)
	r.recv = r.sent.Add(time.Duration(30+s.g.traffic.IntN(220)) * time.Millisecond)
	s.recs = append(s.recs, r)
	return e, r
}

// view records a page view (web) or screen view (apps).
func (s *session) view(name, path, title string, gap time.Duration) {
	if s.d.kind == devWeb {
		ref := ""
		if s.page != nil {
			ref = s.page.URL
		} else if s.campaign != nil {
			ref = "https://" + s.campaign.Source + ".example/"
		}
		s.page = &evPage{URL: shopURL + path, Path: path, Referrer: ref, Title: title}
		e, _ := s.base("page", gap)
		e.Name = name
		return
	}
	e, _ := s.base("screen", gap)
	e.Name = name
}

func (s *session) viewProduct(p *Product, gap time.Duration) {
	s.view("Product", "/products/"+strings.ToLower(p.ID), p.Name+" | "+shopName, gap)
	s.track("Product Viewed", productProps(p, 0), nil, s.quick())
}

func productProps(p *Product, qty int) *properties {
	return &properties{ProductID: p.ID, SKU: p.SKU, Category: p.Category, Name: p.Name,
		Price: pounds(p.PriceCents), Quantity: qty, Currency: currency}
}

func (s *session) track(name string, props *properties, ctxTraits *evTraits, gap time.Duration) *rec {
	e, r := s.base("track", gap)
	e.Event = name
	e.Properties = props
	if ctxTraits != nil {
		t := *ctxTraits
		e.Context.Traits = &t
	}
	return r
}

func (s *session) addToCart(p *Product, qty int) {
	for i := range s.cart {
		if s.cart[i].p == p {
			s.cart[i].qty += qty
			s.track("Product Added", productProps(p, qty), nil, s.think()/4)
			return
		}
	}
	s.cart = append(s.cart, cartItem{p, qty})
	s.track("Product Added", productProps(p, qty), nil, s.think()/4)
}

func (s *session) removeFromCart(i int) {
	it := s.cart[i]
	s.cart = append(s.cart[:i], s.cart[i+1:]...)
	s.track("Product Removed", productProps(it.p, it.qty), nil, s.think()/4)
}

func (s *session) cartProducts() []evProduct {
	out := make([]evProduct, len(s.cart))
	for i, it := range s.cart {
		out[i] = evProduct{ProductID: it.p.ID, SKU: it.p.SKU, Category: it.p.Category,
			Name: it.p.Name, Price: pounds(it.p.PriceCents), Quantity: it.qty}
	}
	return out
}

func (s *session) cartCents() int64 {
	var c int64
	for _, it := range s.cart {
		c += it.p.PriceCents * int64(it.qty)
	}
	return c
}

func (s *session) email() string {
	return s.p.emails[s.d.idx%len(s.p.emails)]
}

// identify sends an identify call: with the userId when signing in, or
// anonymous (guest checkout, newsletter) with the email as traits.
func (s *session) identify(signIn bool, gap time.Duration) {
	if signIn {
		s.d.signedIn = s.p // the library sets the userId before the call
	}
	e, _ := s.base("identify", gap)
	e.Traits = &evTraits{Email: writtenEmail(s.email(), s.d.emailStyle)}
	if signIn {
		e.Traits.FirstName, e.Traits.LastName = s.p.first, s.p.last
	}
	if s.p.phone != "" && s.g.traffic.Float64() < 0.4 {
		e.Traits.Phone = writtenPhone(s.p.phone, s.d.phoneStyle)
	}
}

func (s *session) signIn() {
	s.view("Sign in", "/account/login", "Sign in | "+shopName, s.think())
	s.identify(true, s.think())
}

func (s *session) checkout() {
	r := s.g.traffic
	p, d := s.p, s.d
	if p.userID != "" && d.signedIn != p && r.Float64() < 0.7 {
		s.signIn()
	}
	var ctxTraits *evTraits
	if d.signedIn != p { // guest checkout: the email is given either way
		if r.Float64() < 0.5 {
			s.identify(false, s.think())
		} else {
			ctxTraits = &evTraits{Email: writtenEmail(s.email(), d.emailStyle)}
		}
	}
	if p.phone != "" && r.Float64() < 0.3 {
		if ctxTraits == nil {
			ctxTraits = &evTraits{}
		}
		ctxTraits.Phone = writtenPhone(p.phone, d.phoneStyle)
	}
	s.g.orderSeq++
	orderID := fmt.Sprintf("o-%07d", s.g.orderSeq)
	cents := s.cartCents()
	props := func() *properties {
		return &properties{OrderID: orderID, Revenue: pounds(cents), Currency: currency, Products: s.cartProducts()}
	}
	s.view("Checkout", "/checkout", "Checkout | "+shopName, s.think())
	s.track("Checkout Started", props(), ctxTraits, s.quick())
	if r.Float64() >= 0.75 {
		return // abandoned at payment
	}
	s.view("Order Confirmation", "/checkout/confirmation", "Thank you | "+shopName, s.think()*2)
	s.track("Order Completed", props(), ctxTraits, s.quick())
	if r.Float64() < 0.06 {
		s.g.scheduleRefund(s, orderID, cents, s.cur.Add(time.Duration(1+r.IntN(10*24))*time.Hour))
	}
}

// finish marks the last event, keeps the device busy until the session is
// over, and queues the events.
func (s *session) finish() {
	if len(s.recs) == 0 {
		return
	}
	s.recs[len(s.recs)-1].lastInSession = true
	s.d.busyUntil = s.cur.Add(time.Second)
	for _, r := range s.recs {
		s.g.push(r)
	}
}

// scheduleRefund queues an Order Refunded sent by the order system at t: a
// server-side call identified by the userId if the order was placed signed
// in, or else by the device's anonymousId and the email it gave.
func (g *gen) scheduleRefund(s *session, orderID string, cents int64, t time.Time) {
	if g.durationOnly && !t.Before(g.end) {
		return
	}
	e := &event{Type: "track", Event: "Order Refunded", MessageID: uuid4(g.ids),
		Context:    &evContext{Library: &evLibrary{Name: "streamcdp-go", Version: "0.1.0"}},
		Properties: &properties{OrderID: orderID, Revenue: pounds(cents), Currency: currency, Products: s.cartProducts()}}
	if s.d.signedIn == s.p {
		e.UserID = s.p.userID
	} else {
		e.AnonymousID = s.d.anon
		e.Context.Traits = &evTraits{Email: NormalizeEmail(s.email())}
	}
	r := &rec{ev: e, at: t, p: s.p, lastInSession: true}
	r.sent = t.Add(time.Duration(5+g.traffic.IntN(50)) * time.Millisecond)
	r.recv = r.sent.Add(time.Duration(5+g.traffic.IntN(50)) * time.Millisecond)
	g.push(r)
}
