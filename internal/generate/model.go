package generate

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

type idType uint8

const (
	idUser idType = iota
	idAnon
	idDevice
	idEmail
	idPhone
	numIDTypes
)

// idTypeNames are the identifier type names used in the truth file; they
// match the identity processor's identifier types.
var idTypeNames = [numIDTypes]string{"user_id", "anonymous_id", "device_id", "email", "phone"}

// ident is one identifier: its type, its normalised value and, for emails and
// phones, the value as written in the event.
type ident struct {
	typ     idType
	val     string
	written string
}

// NormalizeEmail is the email normalisation the truth uses: trimmed and
// lower-cased.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizePhone turns the layouts the generator writes ("+44 7700 123456",
// "+44-7700-123-456") into E.164 ("+447700123456") by keeping the plus sign
// and the digits. The generator only writes numbers with a country code.
func NormalizePhone(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i, c := range s {
		if (c >= '0' && c <= '9') || (c == '+' && i == 0) {
			b.WriteRune(c)
		}
	}
	return b.String()
}

type devKind uint8

const (
	devWeb devKind = iota
	devIOS
	devAndroid
)

var devKindNames = [...]string{"web", "ios", "android"}

type person struct {
	idx         int
	id          string
	userID      string // "" without an account
	first, last string
	emails      []string // lower-case; written per device style
	phone       string   // E.164, "" without one
	locale      string
	devices     []*device
	devWeights  []float64 // preference for each device
}

type device struct {
	idx        int
	id         string
	kind       devKind
	anon       string    // current anonymousId
	anons      []string  // every anonymousId it has had
	owners     []*person // two for a shared device
	signedIn   *person   // whose account the device is signed in to
	lastPerson *person
	busyUntil  time.Time
	skew       time.Duration // wrong clock: added to timestamp and sentAt
	emailStyle int
	phoneStyle int
	userAgent  string
	held       *rec // event held back to be delivered late
}

func (d *device) shared() bool { return len(d.owners) > 1 }

var firstNames = []string{
	"Ann", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Harry", "Isla", "Jack",
	"Kiran", "Laura", "Mohammed", "Nina", "Oliver", "Priya", "Quentin", "Rosa", "Sam", "Tara",
	"Umar", "Vera", "William", "Xia", "Yusuf", "Zoe", "Amelia", "George", "Lucia", "Noah",
}

var lastNames = []string{
	"Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Khan",
	"Wright", "Walker", "Evans", "Thomas", "Roberts", "Green", "Hall", "Wood", "Hughes", "Clarke",
	"Nowak", "Murphy", "Martin", "Schmidt", "Dubois", "Rossi", "Garcia", "Kowalski", "Okafor", "Chen",
}

var locales = []struct {
	tag string
	w   float64
}{{"en-GB", 0.8}, {"en-US", 0.05}, {"de-DE", 0.05}, {"fr-FR", 0.05}, {"nl-NL", 0.05}}

var emailDomains = []string{"example.com", "example.org", "example.net", "mail.example", "post.example"}

var userAgents = [...][]string{
	devWeb: {
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
	},
	devIOS:     {"StreamShop/4.2.0 (iPhone; iOS 18.1; Scale/3.00)", "StreamShop/4.2.0 (iPad; iOS 17.6; Scale/2.00)"},
	devAndroid: {"StreamShop/4.2.0 (Linux; Android 15; Pixel 8)", "StreamShop/4.2.0 (Linux; Android 14; SM-S918B)"},
}

// affine is a bijection on [0, m): it scatters person indexes into id
// numbers that do not reveal the order, without remembering a permutation.
// a must be coprime with m (m is a power of ten here, so a odd and not a
// multiple of 5).
func affine(i, a, b, m uint64) uint64 { return (i*a + b) % m }

// uuid4 draws a random (version 4) UUID from r, so ids are reproducible.
func uuid4(r *rand.Rand) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.Uint64())
	binary.BigEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func (g *gen) newDeviceID(kind devKind) string {
	switch kind {
	case devIOS: // identifierForVendor: an upper-case UUID
		return strings.ToUpper(uuid4(g.ids))
	case devAndroid: // ANDROID_ID: 16 hex digits
		return fmt.Sprintf("%016x", g.ids.Uint64())
	default: // a first-party device cookie
		return fmt.Sprintf("w-%016x%04x", g.ids.Uint64(), g.ids.Uint32()&0xffff)
	}
}

// newAnon gives d a fresh anonymousId, as a reinstall or analytics.reset()
// does.
func (g *gen) newAnon(d *device) {
	d.anon = uuid4(g.ids)
	d.anons = append(d.anons, d.anon)
}

// buildPopulation creates the persons and their devices from the population
// stream, then lends a share of devices to a second person.
func (g *gen) buildPopulation() {
	r := g.pop
	n := g.cfg.Persons
	// Offsets of the id bijections depend on the seed so ids differ per seed.
	userB, mailB, phoneB := r.Uint64N(1e7), r.Uint64N(1e7), r.Uint64N(1e8)
	g.persons = make([]*person, n)
	g.personCum = make([]float64, n)
	total := 0.0
	for i := range n {
		p := &person{idx: i, id: fmt.Sprintf("p-%06d", i+1)}
		p.first, p.last = firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
		p.locale = pickLocale(r)
		if r.Float64() < 0.55 {
			p.userID = fmt.Sprintf("u-%07d", affine(uint64(i), 7654321, userB, 1e7))
		}
		num := affine(uint64(i), 3141593, mailB, 1e7)
		first, last := strings.ToLower(p.first), strings.ToLower(p.last)
		p.emails = []string{fmt.Sprintf("%s.%s%d@%s", first, last, num, emailDomains[r.IntN(len(emailDomains))])}
		if r.Float64() < 0.1 {
			p.emails = append(p.emails, fmt.Sprintf("%s.%s%d@%s", last, first, num, emailDomains[r.IntN(len(emailDomains))]))
		}
		if r.Float64() < 0.4 {
			p.phone = fmt.Sprintf("+4477%08d", affine(uint64(i), 27182817, phoneB, 1e8))
		}
		nd := 1 + pickWeighted(r, []float64{0.45, 0.30, 0.17, 0.08})
		for j := range nd {
			d := &device{idx: len(g.devices), owners: []*person{p}}
			d.kind = devKind(pickWeighted(r, []float64{0.5, 0.3, 0.2}))
			d.id = g.newDeviceID(d.kind)
			g.newAnon(d)
			if r.Float64() < g.cfg.SkewedDeviceShare {
				// Minutes to days, either way: a phone set to the wrong zone
				// or date.
				d.skew = time.Duration((r.Float64()*2-1)*float64(48*time.Hour)) + time.Minute
			}
			d.emailStyle = pickWeighted(r, []float64{0.6, 0.3, 0.1})
			d.phoneStyle = r.IntN(3)
			d.userAgent = userAgents[d.kind][r.IntN(len(userAgents[d.kind]))]
			g.devices = append(g.devices, d)
			p.devices = append(p.devices, d)
			p.devWeights = append(p.devWeights, math.Pow(0.5, float64(j))*(0.5+r.Float64()))
		}
		// Activity: log-normal, a few heavy shoppers and a long quiet tail.
		total += math.Exp(r.NormFloat64())
		g.personCum[i] = total
		g.persons[i] = p
	}
	if n < 2 {
		return
	}
	shared := int(math.Round(g.cfg.SharedDeviceShare * float64(len(g.devices))))
	for _, di := range r.Perm(len(g.devices))[:shared] {
		d := g.devices[di]
		other := g.persons[r.IntN(n-1)]
		if other == d.owners[0] {
			other = g.persons[n-1]
		}
		d.owners = append(d.owners, other)
		other.devices = append(other.devices, d)
		other.devWeights = append(other.devWeights, 0.3+r.Float64()*0.5)
	}
}

func pickLocale(r *rand.Rand) string {
	x := r.Float64()
	for _, l := range locales {
		if x < l.w {
			return l.tag
		}
		x -= l.w
	}
	return locales[0].tag
}

// pickWeighted returns an index with probability proportional to its weight.
func pickWeighted(r *rand.Rand, w []float64) int {
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	x := r.Float64() * sum
	for i, v := range w {
		if x < v {
			return i
		}
		x -= v
	}
	return len(w) - 1
}

// writtenEmail is how device d writes email e: as registered, capitalised
// like a name, or in capitals.
func writtenEmail(e string, style int) string {
	switch style {
	case 1:
		local, domain, _ := strings.Cut(e, "@")
		parts := strings.Split(local, ".")
		for i, s := range parts {
			if s != "" {
				parts[i] = strings.ToUpper(s[:1]) + s[1:]
			}
		}
		return strings.Join(parts, ".") + "@" + strings.ToUpper(domain[:1]) + domain[1:]
	case 2:
		return strings.ToUpper(e)
	}
	return e
}

// writtenPhone lays out an E.164 UK mobile number ("+447700123456") the way
// forms do.
func writtenPhone(e164 string, style int) string {
	nat := e164[3:] // after +44
	switch style {
	case 1:
		return "+44 " + nat[:4] + " " + nat[4:]
	case 2:
		return "+44-" + nat[:4] + "-" + nat[4:7] + "-" + nat[7:]
	}
	return e164
}
