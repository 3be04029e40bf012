package generate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// TruthVersion changes when the truth file's meaning changes.
const TruthVersion = 1

// Truth is the ground truth of one generated stream: who is who, and what a
// correct pipeline must count. See the package documentation.
type Truth struct {
	Version   int         `json:"version"`
	Generator TruthConfig `json:"generator"`
	// Notes explain the file to a reader who has not read this package.
	Notes  []string     `json:"notes"`
	Counts GlobalCounts `json:"counts"`
	// Persons in person-id order, including persons without events.
	Persons []PersonTruth `json:"persons"`
	// KnowableGroups are the connected components of identifiers under
	// "appear together in one valid event": the profiles a perfect resolver
	// builds when no limit is hit.
	KnowableGroups []Group `json:"knowable_groups"`
	// SharedDevices are devices two persons used (Config.SharedDeviceShare).
	SharedDevices []SharedDevice `json:"shared_devices"`
	// LateMessageIDs are the valid events delivered after a later event of
	// the same device.
	LateMessageIDs []string `json:"late_message_ids"`
	// DuplicateMessageIDs has one entry per repeated line.
	DuplicateMessageIDs []string       `json:"duplicate_message_ids"`
	InvalidEvents       []InvalidEvent `json:"invalid_events"`
}

// TruthConfig records the settings that produced the stream.
type TruthConfig struct {
	Seed              uint64  `json:"seed"`
	Persons           int     `json:"persons"`
	Events            int     `json:"events"`
	Start             string  `json:"start"`
	Duration          string  `json:"duration"`
	LateShare         float64 `json:"late_share"`
	DupShare          float64 `json:"dup_share"`
	InvalidShare      float64 `json:"invalid_share"`
	SharedDeviceShare float64 `json:"shared_device_share"`
	SkewedDeviceShare float64 `json:"skewed_device_share"`
	CatalogProducts   int     `json:"catalog_products"`
}

// GlobalCounts summarise the whole stream.
type GlobalCounts struct {
	// Lines is every line written: valid + duplicates + invalid.
	Lines           int            `json:"lines"`
	Valid           int            `json:"valid"`
	Duplicates      int            `json:"duplicates"`
	Invalid         int            `json:"invalid"`
	InvalidByReason map[string]int `json:"invalid_by_reason"`
	Late            int            `json:"late"`
	// ByType and ByEvent count valid events by call type and track name.
	ByType  map[string]int `json:"by_type"`
	ByEvent map[string]int `json:"by_event"`
	Orders  int            `json:"orders"`
	Revenue float64        `json:"revenue"`
	Refunds int            `json:"refunds"`
	// Refunded is the revenue of refunded orders.
	Refunded      float64 `json:"refunded"`
	Currency      string  `json:"currency"`
	ActivePersons int     `json:"active_persons"`
	// Identifiers counts distinct identifiers in valid events by type.
	Identifiers    map[string]int `json:"identifiers"`
	KnowableGroups int            `json:"knowable_groups"`
	// FirstEvent and LastEvent are the true times of the first and last
	// valid event (device clock skew removed).
	FirstEvent string `json:"first_event,omitempty"`
	LastEvent  string `json:"last_event,omitempty"`
}

// PersonTruth is one simulated person.
type PersonTruth struct {
	PersonID string `json:"person_id"`
	// Identifiers are those that appear in the person's valid events.
	Identifiers Identifiers `json:"identifiers"`
	// KnowableGroups is how many knowable groups hold the person's
	// identifiers: the number of profiles a perfect resolver keeps for them.
	KnowableGroups int          `json:"knowable_groups"`
	Counts         PersonCounts `json:"counts"`
}

// Identifiers lists identifiers by type, each list sorted.
type Identifiers struct {
	UserIDs      []string    `json:"user_ids"`
	AnonymousIDs []string    `json:"anonymous_ids"`
	DeviceIDs    []string    `json:"device_ids"`
	Emails       []WrittenID `json:"emails"`
	Phones       []WrittenID `json:"phones"`
}

// WrittenID is an email (normalised: trimmed, lower-case) or phone
// (normalised: E.164) with every spelling that appeared in valid events.
type WrittenID struct {
	Normalized string   `json:"normalized"`
	Written    []string `json:"written"`
}

// Keys returns the identifiers as "type:value" strings (normalised values),
// the form used to compare groupings.
func (ids Identifiers) Keys() []string {
	var out []string
	add := func(typ idType, vals ...string) {
		for _, v := range vals {
			out = append(out, idTypeNames[typ]+":"+v)
		}
	}
	add(idUser, ids.UserIDs...)
	add(idAnon, ids.AnonymousIDs...)
	add(idDevice, ids.DeviceIDs...)
	for _, e := range ids.Emails {
		add(idEmail, e.Normalized)
	}
	for _, p := range ids.Phones {
		add(idPhone, p.Normalized)
	}
	return out
}

// PersonCounts are what a correct pipeline counts for the person: valid
// events only, each message once, unless named otherwise.
type PersonCounts struct {
	ValidEvents int            `json:"valid_events"`
	ByType      map[string]int `json:"by_type"`
	ByEvent     map[string]int `json:"by_event"`
	Orders      int            `json:"orders"`
	Revenue     float64        `json:"revenue"`
	Refunds     int            `json:"refunds"`
	Refunded    float64        `json:"refunded"`
	Late        int            `json:"late"`
	// Duplicates and Invalid count the extra and the broken lines derived
	// from the person's events.
	Duplicates int `json:"duplicates"`
	Invalid    int `json:"invalid"`
	// OnSharedDevices counts valid events from a device another person
	// also used; no resolver can attribute those that carry no userId.
	OnSharedDevices int `json:"on_shared_devices"`
}

// Group is one knowable group.
type Group struct {
	// Persons whose identifiers the group holds: one, unless a shared
	// device joins two.
	Persons     []string    `json:"persons"`
	Identifiers Identifiers `json:"identifiers"`
}

// SharedDevice is a device used by more than one person.
type SharedDevice struct {
	DeviceID     string   `json:"device_id"`
	AnonymousIDs []string `json:"anonymous_ids"`
	Persons      []string `json:"persons"`
}

// InvalidEvent marks one deliberately invalid line.
type InvalidEvent struct {
	Line      int    `json:"line"`
	MessageID string `json:"message_id"`
	Reason    string `json:"reason"`
	PersonID  string `json:"person_id"`
}

// WriteJSON writes t as indented JSON.
func (t *Truth) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(t)
}

// ReadTruth reads a truth file written by WriteJSON.
func ReadTruth(r io.Reader) (*Truth, error) {
	var t Truth
	if err := json.NewDecoder(r).Decode(&t); err != nil {
		return nil, fmt.Errorf("reading truth: %w", err)
	}
	if t.Version != TruthVersion {
		return nil, fmt.Errorf("truth version %d, this build reads %d", t.Version, TruthVersion)
	}
	return &t, nil
}

// IdentifierOwners maps every identifier key (see Identifiers.Keys) to the
// ids of the persons it belongs to: one, or more for a shared device.
func (t *Truth) IdentifierOwners() map[string][]string {
	m := map[string][]string{}
	for _, p := range t.Persons {
		for _, k := range p.Identifiers.Keys() {
			m[k] = append(m[k], p.PersonID)
		}
	}
	return m
}

var truthNotes = []string{
	"lines = valid + duplicates + invalid; every count except lines, duplicates and invalid counts valid events once per messageId",
	"a duplicate is a byte-identical repeat of an earlier line (same messageId)",
	"an invalid event is a broken copy of a real event with its own messageId; reasons: " +
		"missing_event_name (track without event), no_identifier, timestamp_1970 and timestamp_2100 " +
		"(timestamp absurd while sentAt and receivedAt are right, so skew correction keeps it absurd), oversize (over 64 KiB of JSON, so over the 32 KiB limit in Avro too)",
	"a late event is a valid event whose timestamp is earlier than that of the previous valid event of the same context.device.id in output order",
	"some devices have a wrong clock: timestamp and sentAt are off by the same amount; timestamp = receivedAt - (sentAt - timestamp) gives the true time",
	"identifier types: user_id (userId), anonymous_id (anonymousId), device_id (context.device.id), " +
		"email (traits.email, context.traits.email; normalised trimmed lower-case), phone (traits.phone, context.traits.phone; normalised E.164)",
	"a person's identifiers are those appearing in the person's valid events",
	"knowable_groups are the connected components of identifiers under 'appear together in one valid event': " +
		"two identifiers of a person can only be linked if a chain of such events connects them, so these groups, not the persons, " +
		"are what a perfect identity resolver reconstructs; with no shared devices every group lies within one person, " +
		"holds at most one user_id and at most two emails",
	"shared_devices are used by two persons; a group holding one may span both persons",
}

type identKey struct {
	typ idType
	val string
}

type idEntry struct {
	typ     idType
	val     string
	owners  []int32  // person indexes, sorted
	written []string // spellings, sorted (emails and phones)
}

type personAcc struct {
	valid, late, dups, invalid, onShared int
	byType, byEvent                      map[string]int
	orders, refunds                      int
	revenue, refunded                    int64
}

// truthBuilder accumulates the truth as lines are written, so the truth
// describes exactly the output, however the run ended.
type truthBuilder struct {
	g                           *gen
	lines, valid, dups, invalid int
	late                        int
	invalidBy, byType, byEvent  map[string]int
	orders, refunds             int
	revenue, refunded           int64
	persons                     []personAcc
	index                       map[identKey]int32
	entries                     []idEntry
	parent                      []int32
	lateIDs, dupIDs             []string
	invalids                    []InvalidEvent
	first, last                 time.Time
}

func newTruthBuilder(g *gen) *truthBuilder {
	return &truthBuilder{
		g:         g,
		invalidBy: map[string]int{},
		byType:    map[string]int{},
		byEvent:   map[string]int{},
		persons:   make([]personAcc, len(g.persons)),
		index:     map[identKey]int32{},
	}
}

func (t *truthBuilder) addLine(o outLine) {
	t.lines++
	pa := &t.persons[o.r.p.idx]
	switch o.kind {
	case lineDup:
		t.dups++
		pa.dups++
		t.dupIDs = append(t.dupIDs, o.msgID)
	case lineInvalid:
		t.invalid++
		pa.invalid++
		t.invalidBy[o.reason]++
		t.invalids = append(t.invalids, InvalidEvent{Line: t.lines, MessageID: o.msgID, Reason: o.reason, PersonID: o.r.p.id})
	case lineValid:
		t.addValid(o.r, o.late, pa)
	}
}

func (t *truthBuilder) addValid(r *rec, late bool, pa *personAcc) {
	e := r.ev
	t.valid++
	pa.valid++
	if pa.byType == nil {
		pa.byType, pa.byEvent = map[string]int{}, map[string]int{}
	}
	t.byType[e.Type]++
	pa.byType[e.Type]++
	if e.Type == "track" {
		t.byEvent[e.Event]++
		pa.byEvent[e.Event]++
		if e.Properties != nil {
			cents := int64(math.Round(e.Properties.Revenue * 100))
			switch e.Event {
			case "Order Completed":
				t.orders++
				pa.orders++
				t.revenue += cents
				pa.revenue += cents
			case "Order Refunded":
				t.refunds++
				pa.refunds++
				t.refunded += cents
				pa.refunded += cents
			}
		}
	}
	if late {
		t.late++
		pa.late++
		t.lateIDs = append(t.lateIDs, e.MessageID)
	}
	if r.d != nil && r.d.shared() {
		pa.onShared++
	}
	if t.first.IsZero() || r.at.Before(t.first) {
		t.first = r.at
	}
	if r.at.After(t.last) {
		t.last = r.at
	}
	ids := e.identifiers(t.g.scratchIDs)
	t.g.scratchIDs = ids
	root := int32(-1)
	for _, id := range ids {
		i := t.intern(id, int32(r.p.idx))
		if root < 0 {
			root = t.find(i)
		} else {
			root = t.union(root, i)
		}
	}
}

func (t *truthBuilder) intern(id ident, person int32) int32 {
	k := identKey{id.typ, id.val}
	i, ok := t.index[k]
	if !ok {
		i = int32(len(t.entries))
		t.index[k] = i
		t.entries = append(t.entries, idEntry{typ: id.typ, val: id.val})
		t.parent = append(t.parent, i)
	}
	en := &t.entries[i]
	if j, found := slices.BinarySearch(en.owners, person); !found {
		en.owners = slices.Insert(en.owners, j, person)
	}
	if id.written != "" {
		if j, found := slices.BinarySearch(en.written, id.written); !found {
			en.written = slices.Insert(en.written, j, id.written)
		}
	}
	return i
}

func (t *truthBuilder) find(i int32) int32 {
	for t.parent[i] != i {
		t.parent[i] = t.parent[t.parent[i]]
		i = t.parent[i]
	}
	return i
}

// union joins the sets of a root and i and returns the new root, the smaller
// index, so the result does not depend on the order of unions.
func (t *truthBuilder) union(root, i int32) int32 {
	r2 := t.find(i)
	if r2 == root {
		return root
	}
	lo, hi := min(root, r2), max(root, r2)
	t.parent[hi] = lo
	return lo
}

func (t *truthBuilder) finish() *Truth {
	g := t.g
	cfg := g.cfg
	tr := &Truth{
		Version: TruthVersion,
		Generator: TruthConfig{
			Seed: cfg.Seed, Persons: cfg.Persons, Events: cfg.Events,
			Start: formatTS(cfg.Start), Duration: cfg.Duration.String(),
			LateShare: cfg.LateShare, DupShare: cfg.DupShare, InvalidShare: cfg.InvalidShare,
			SharedDeviceShare: cfg.SharedDeviceShare, SkewedDeviceShare: cfg.SkewedDeviceShare,
			CatalogProducts: len(cfg.Catalog),
		},
		Notes: truthNotes,
		Counts: GlobalCounts{
			Lines: t.lines, Valid: t.valid, Duplicates: t.dups, Invalid: t.invalid,
			InvalidByReason: t.invalidBy, Late: t.late, ByType: t.byType, ByEvent: t.byEvent,
			Orders: t.orders, Revenue: pounds(t.revenue), Refunds: t.refunds, Refunded: pounds(t.refunded),
			Currency: currency, Identifiers: map[string]int{},
		},
		LateMessageIDs:      nonNil(t.lateIDs),
		DuplicateMessageIDs: nonNil(t.dupIDs),
		InvalidEvents:       nonNil(t.invalids),
		SharedDevices:       []SharedDevice{},
	}
	if !t.first.IsZero() {
		tr.Counts.FirstEvent, tr.Counts.LastEvent = formatTS(t.first), formatTS(t.last)
	}

	// Visit identifiers sorted by (type, value): every list comes out sorted,
	// and groups are created in the order of their smallest identifier.
	order := make([]int32, len(t.entries))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		ea, eb := &t.entries[a], &t.entries[b]
		return cmp.Or(cmp.Compare(ea.typ, eb.typ), cmp.Compare(ea.val, eb.val))
	})

	personIDs := make([]Identifiers, len(g.persons))
	groupOf := map[int32]int{} // root -> index in groups
	var groups []Group
	var groupPersons []map[int32]bool
	for _, i := range order {
		en := &t.entries[i]
		tr.Counts.Identifiers[idTypeNames[en.typ]]++
		for _, p := range en.owners {
			addIdent(&personIDs[p], en)
		}
		root := t.find(i)
		gi, ok := groupOf[root]
		if !ok {
			gi = len(groups)
			groupOf[root] = gi
			groups = append(groups, Group{})
			groupPersons = append(groupPersons, map[int32]bool{})
		}
		addIdent(&groups[gi].Identifiers, en)
		for _, p := range en.owners {
			groupPersons[gi][p] = true
		}
	}
	perPersonGroups := make([]int, len(g.persons))
	for gi := range groups {
		ps := make([]int32, 0, len(groupPersons[gi]))
		for p := range groupPersons[gi] {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		for _, p := range ps {
			groups[gi].Persons = append(groups[gi].Persons, g.persons[p].id)
			perPersonGroups[p]++
		}
		groups[gi].Identifiers.normalizeEmpty()
	}
	slices.SortStableFunc(groups, func(a, b Group) int { return cmp.Compare(a.Persons[0], b.Persons[0]) })
	tr.KnowableGroups = groups
	tr.Counts.KnowableGroups = len(groups)

	tr.Persons = make([]PersonTruth, len(g.persons))
	for i, p := range g.persons {
		pa := &t.persons[i]
		if pa.valid > 0 {
			tr.Counts.ActivePersons++
		}
		personIDs[i].normalizeEmpty()
		tr.Persons[i] = PersonTruth{
			PersonID: p.id, Identifiers: personIDs[i], KnowableGroups: perPersonGroups[i],
			Counts: PersonCounts{
				ValidEvents: pa.valid, ByType: nonNilMap(pa.byType), ByEvent: nonNilMap(pa.byEvent),
				Orders: pa.orders, Revenue: pounds(pa.revenue), Refunds: pa.refunds, Refunded: pounds(pa.refunded),
				Late: pa.late, Duplicates: pa.dups, Invalid: pa.invalid, OnSharedDevices: pa.onShared,
			},
		}
	}

	for _, d := range g.devices {
		if !d.shared() {
			continue
		}
		if _, seen := t.index[identKey{idDevice, d.id}]; !seen {
			continue
		}
		sd := SharedDevice{DeviceID: d.id, AnonymousIDs: []string{}}
		for _, a := range d.anons {
			if _, seen := t.index[identKey{idAnon, a}]; seen {
				sd.AnonymousIDs = append(sd.AnonymousIDs, a)
			}
		}
		slices.Sort(sd.AnonymousIDs)
		for _, p := range d.owners {
			sd.Persons = append(sd.Persons, p.id)
		}
		slices.Sort(sd.Persons)
		tr.SharedDevices = append(tr.SharedDevices, sd)
	}
	slices.SortFunc(tr.SharedDevices, func(a, b SharedDevice) int { return cmp.Compare(a.DeviceID, b.DeviceID) })
	return tr
}

// addIdent appends an entry; entries arrive sorted by type and value, so
// the lists stay sorted.
func addIdent(ids *Identifiers, en *idEntry) {
	switch en.typ {
	case idUser:
		ids.UserIDs = append(ids.UserIDs, en.val)
	case idAnon:
		ids.AnonymousIDs = append(ids.AnonymousIDs, en.val)
	case idDevice:
		ids.DeviceIDs = append(ids.DeviceIDs, en.val)
	case idEmail:
		ids.Emails = append(ids.Emails, WrittenID{Normalized: en.val, Written: en.written})
	case idPhone:
		ids.Phones = append(ids.Phones, WrittenID{Normalized: en.val, Written: en.written})
	}
}

// normalizeEmpty turns nil lists into empty ones so the JSON always has
// every key.
func (ids *Identifiers) normalizeEmpty() {
	ids.UserIDs = nonNil(ids.UserIDs)
	ids.AnonymousIDs = nonNil(ids.AnonymousIDs)
	ids.DeviceIDs = nonNil(ids.DeviceIDs)
	ids.Emails = nonNil(ids.Emails)
	ids.Phones = nonNil(ids.Phones)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nonNilMap(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}
