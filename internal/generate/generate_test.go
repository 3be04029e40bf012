package generate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// run generates cfg into memory and returns the lines and the truth after a
// round trip through its JSON form, as a consumer of the file sees it.
func run(t testing.TB, cfg Config) ([][]byte, *Truth, []byte) {
	t.Helper()
	var out bytes.Buffer
	s := NewWriterSink(&out)
	tr, err := Generate(context.Background(), cfg, s)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	if err := tr.WriteJSON(&tb); err != nil {
		t.Fatal(err)
	}
	back, err := ReadTruth(bytes.NewReader(tb.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	raw := out.Bytes()
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	if len(raw) == 0 {
		lines = nil
	}
	return lines, back, append(slices.Clone(raw), tb.Bytes()...)
}

func cfgWith(f func(*Config)) Config {
	c := DefaultConfig()
	c.Persons, c.Events, c.Seed = 200, 6000, 7
	f(&c)
	return c
}

// scenarios are the configurations most tests run over.
var scenarios = []struct {
	name string
	cfg  Config
}{
	{"clean", cfgWith(func(c *Config) {})},
	{"noisy", cfgWith(func(c *Config) { c.LateShare, c.DupShare, c.InvalidShare = 0.08, 0.04, 0.03 })},
	{"heavy-noise", cfgWith(func(c *Config) { c.LateShare, c.DupShare, c.InvalidShare = 0.25, 0.2, 0.2 })},
	{"duration", cfgWith(func(c *Config) {
		c.Events, c.Duration, c.Persons = 0, 3*24*time.Hour, 300
		c.LateShare, c.DupShare, c.InvalidShare = 0.05, 0.02, 0.02
	})},
	{"few-persons", cfgWith(func(c *Config) { c.Persons, c.Events, c.DupShare, c.InvalidShare = 3, 2000, 0.05, 0.05 })},
	{"all-skewed", cfgWith(func(c *Config) { c.SkewedDeviceShare, c.InvalidShare, c.LateShare = 1, 0.1, 0.1 })},
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			_, _, a := run(t, sc.cfg)
			_, _, b := run(t, sc.cfg)
			if !bytes.Equal(a, b) {
				t.Fatal("two runs with the same config differ")
			}
			other := sc.cfg
			other.Seed++
			_, _, c := run(t, other)
			if bytes.Equal(a, c) {
				t.Fatal("seeds 7 and 8 give the same output")
			}
		})
	}
}

// Changing a noise share must not change the people or their devices: the
// streams are separate.
func TestNoiseDoesNotChangePopulation(t *testing.T) {
	a := cfgWith(func(c *Config) { c.Events, c.Duration = 0, 24*time.Hour })
	b := a
	b.DupShare, b.InvalidShare, b.LateShare = 0.1, 0.1, 0.1
	_, ta, _ := run(t, a)
	_, tb, _ := run(t, b)
	if ta.Counts.Valid != tb.Counts.Valid || ta.Counts.Orders != tb.Counts.Orders {
		t.Fatalf("valid events %d vs %d, orders %d vs %d: noise changed the traffic",
			ta.Counts.Valid, tb.Counts.Valid, ta.Counts.Orders, tb.Counts.Orders)
	}
	for i := range ta.Persons {
		if !slices.Equal(ta.Persons[i].Identifiers.Keys(), tb.Persons[i].Identifiers.Keys()) {
			t.Fatalf("person %s has different identifiers", ta.Persons[i].PersonID)
		}
	}
}

func TestExactEventCount(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 7, 1000, 12345} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			lines, tr, _ := run(t, cfgWith(func(c *Config) { c.Events, c.DupShare, c.InvalidShare = n, 0.05, 0.05 }))
			if len(lines) != n || tr.Counts.Lines != n {
				t.Fatalf("got %d lines, truth says %d, want %d", len(lines), tr.Counts.Lines, n)
			}
		})
	}
}

// parsed is one output line with what the checks need.
type parsed struct {
	line   int
	raw    []byte
	ev     event
	ids    []string // identifier keys
	at     time.Time
	corr   time.Time // skew-corrected time
	dup    bool
	reason string // from the truth, "" for valid lines
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return ts
}

func parseLines(t *testing.T, lines [][]byte, tr *Truth) []parsed {
	t.Helper()
	invalid := map[int]InvalidEvent{}
	for _, iv := range tr.InvalidEvents {
		invalid[iv.Line] = iv
	}
	seen := map[string][]byte{}
	out := make([]parsed, len(lines))
	for i, l := range lines {
		p := &out[i]
		p.line, p.raw = i+1, l
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p.ev); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		p.ids = idsOf(t, l)
		p.at = mustTime(t, p.ev.Timestamp)
		sent, recv := mustTime(t, p.ev.SentAt), mustTime(t, p.ev.ReceivedAt)
		p.corr = recv.Add(-sent.Sub(p.at))
		if p.ev.MessageID == "" {
			t.Fatalf("line %d has no messageId", i+1)
		}
		if first, ok := seen[p.ev.MessageID]; ok {
			// A duplicate is the same record written again.
			if !bytes.Equal(first, l) {
				t.Fatalf("line %d repeats messageId %s with different content", i+1, p.ev.MessageID)
			}
			p.dup = true
		} else {
			seen[p.ev.MessageID] = l
		}
		if iv, ok := invalid[i+1]; ok {
			if iv.MessageID != p.ev.MessageID {
				t.Fatalf("line %d: truth names invalid message %s, line has %s", i+1, iv.MessageID, p.ev.MessageID)
			}
			p.reason = iv.Reason
		}
	}
	return out
}

// idsOf reads the identifiers of a line the way docs/EVENT_JSON.md lists
// them, independently of the generator's own extraction.
func idsOf(t *testing.T, line []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	str := func(obj any, path ...string) string {
		for _, k := range path {
			mm, ok := obj.(map[string]any)
			if !ok {
				return ""
			}
			obj = mm[k]
		}
		s, _ := obj.(string)
		return s
	}
	var out []string
	add := func(typ, v string) {
		if v != "" {
			out = append(out, typ+":"+v)
		}
	}
	add("user_id", str(m, "userId"))
	add("anonymous_id", str(m, "anonymousId"))
	add("device_id", str(m, "context", "device", "id"))
	digits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '+' || (r >= '0' && r <= '9') {
				return r
			}
			return -1
		}, s)
	}
	for _, base := range [][]string{{"traits"}, {"context", "traits"}} {
		add("email", strings.ToLower(strings.TrimSpace(str(m, append(base, "email")...))))
		add("phone", digits(str(m, append(base, "phone")...)))
	}
	return out
}

// brokenBy is an independent validator: the reason a line is invalid, or ""
// if a validation stage must accept it.
func brokenBy(p *parsed, start time.Time) string {
	switch {
	case len(p.raw) > OversizeBytes:
		return ReasonOversize
	case p.ev.Type == "track" && p.ev.Event == "":
		return ReasonMissingEventName
	case len(p.ids) == 0:
		return ReasonNoIdentifier
	case p.corr.Year() == 1970:
		return ReasonTimestamp1970
	case p.corr.Year() >= 2100:
		return ReasonTimestamp2100
	case p.corr.Before(start.Add(-time.Hour)) || p.corr.After(start.AddDate(1, 0, 0)):
		return "implausible time " + p.corr.String()
	}
	return ""
}

func TestTruthMatchesOutput(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			lines, tr, _ := run(t, sc.cfg)
			ps := parseLines(t, lines, tr)
			owners := tr.IdentifierOwners()
			personOf := func(p *parsed) string {
				t.Helper()
				who := ""
				for _, k := range p.ids {
					o := owners[k]
					if len(o) != 1 {
						t.Fatalf("line %d: identifier %s belongs to %v, want exactly one person", p.line, k, o)
					}
					if who != "" && who != o[0] {
						t.Fatalf("line %d: identifiers of %s and %s in one event", p.line, who, o[0])
					}
					who = o[0]
				}
				return who
			}

			want := map[string]*PersonCounts{}
			pc := func(id string) *PersonCounts {
				if want[id] == nil {
					want[id] = &PersonCounts{ByType: map[string]int{}, ByEvent: map[string]int{}}
				}
				return want[id]
			}
			byMsg := map[string]string{} // messageId -> person of the valid line
			var g GlobalCounts
			g.ByType, g.ByEvent, g.InvalidByReason = map[string]int{}, map[string]int{}, map[string]int{}
			var revenue, refunded int64
			var dupIDs []string
			lastTS := map[string]time.Time{}
			var late []string
			for i := range ps {
				p := &ps[i]
				g.Lines++
				switch {
				case p.reason != "":
					if got := brokenBy(p, sc.cfg.Start); got != p.reason {
						t.Fatalf("line %d is marked %s, validator says %q: %s", p.line, p.reason, got, p.raw)
					}
					g.Invalid++
					g.InvalidByReason[p.reason]++
					for _, k := range p.ids { // broken copies carry known identifiers only
						if len(owners[k]) != 1 {
							t.Fatalf("invalid line %d: identifier %s has owners %v", p.line, k, owners[k])
						}
					}
				case p.dup:
					g.Duplicates++
					dupIDs = append(dupIDs, p.ev.MessageID)
					pc(byMsg[p.ev.MessageID]).Duplicates++
				default:
					if got := brokenBy(p, sc.cfg.Start); got != "" {
						t.Fatalf("valid line %d fails validation (%s): %s", p.line, got, p.raw)
					}
					if len(p.ids) == 0 {
						t.Fatalf("valid line %d has no identifier", p.line)
					}
					who := personOf(p)
					byMsg[p.ev.MessageID] = who
					c := pc(who)
					g.Valid++
					c.ValidEvents++
					g.ByType[p.ev.Type]++
					c.ByType[p.ev.Type]++
					if p.ev.Type == "track" {
						g.ByEvent[p.ev.Event]++
						c.ByEvent[p.ev.Event]++
						cents := int64(math.Round(p.ev.Properties.Revenue * 100))
						switch p.ev.Event {
						case "Order Completed":
							g.Orders++
							c.Orders++
							revenue += cents
							c.Revenue += float64(cents)
						case "Order Refunded":
							g.Refunds++
							c.Refunds++
							refunded += cents
							c.Refunded += float64(cents)
						}
					}
					if p.ev.Context != nil && p.ev.Context.Device != nil {
						dev := p.ev.Context.Device.ID
						if last, ok := lastTS[dev]; ok && p.at.Before(last) {
							late = append(late, p.ev.MessageID)
							c.Late++
						}
						lastTS[dev] = p.at
					}
				}
			}
			g.Revenue, g.Refunded, g.Late = pounds(revenue), pounds(refunded), len(late)

			c := tr.Counts
			for _, x := range []struct {
				name      string
				got, want any
			}{
				{"lines", c.Lines, g.Lines}, {"valid", c.Valid, g.Valid},
				{"duplicates", c.Duplicates, g.Duplicates}, {"invalid", c.Invalid, g.Invalid},
				{"late", c.Late, g.Late}, {"orders", c.Orders, g.Orders}, {"revenue", c.Revenue, g.Revenue},
				{"refunds", c.Refunds, g.Refunds}, {"refunded", c.Refunded, g.Refunded},
				{"by_type", c.ByType, g.ByType}, {"by_event", c.ByEvent, g.ByEvent},
				{"invalid_by_reason", c.InvalidByReason, g.InvalidByReason},
				{"duplicate ids", tr.DuplicateMessageIDs, nonNil(dupIDs)},
				{"late ids", tr.LateMessageIDs, nonNil(late)},
			} {
				if got, want := fmt.Sprint(x.got), fmt.Sprint(x.want); got != want {
					t.Errorf("truth %s = %.200s, recomputed %.200s", x.name, got, want)
				}
			}
			if c.Lines != c.Valid+c.Duplicates+c.Invalid {
				t.Errorf("lines %d != valid %d + duplicates %d + invalid %d", c.Lines, c.Valid, c.Duplicates, c.Invalid)
			}
			if c.Valid == 0 || c.ByEvent["Order Completed"] == 0 {
				t.Errorf("implausible traffic: %+v", c)
			}

			invalidBy := map[string]int{}
			for _, iv := range tr.InvalidEvents {
				invalidBy[iv.PersonID]++
			}
			for _, p := range tr.Persons {
				w := pc(p.PersonID)
				w.Invalid = invalidBy[p.PersonID]
				w.Revenue, w.Refunded = w.Revenue/100, w.Refunded/100
				got := p.Counts
				got.OnSharedDevices = 0
				if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", *w) {
					t.Fatalf("person %s: truth counts %+v, recomputed %+v", p.PersonID, got, *w)
				}
			}
		})
	}
}

func TestShares(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		late, dup, invalid float64
	}{
		{0, 0, 0},
		{0.01, 0.01, 0.01},
		{0.05, 0.02, 0.03},
		{0.1, 0.1, 0},
		{0, 0, 0.2},
		{0.3, 0.3, 0.3},
	} {
		t.Run(fmt.Sprintf("late=%g,dup=%g,invalid=%g", tc.late, tc.dup, tc.invalid), func(t *testing.T) {
			_, tr, _ := run(t, cfgWith(func(c *Config) {
				c.Events, c.Persons = 12000, 400
				c.LateShare, c.DupShare, c.InvalidShare = tc.late, tc.dup, tc.invalid
			}))
			c := tr.Counts
			for _, s := range []struct {
				name       string
				got, total int
				want       float64
				marked     int
			}{
				{"late", c.Late, c.Valid, tc.late, len(tr.LateMessageIDs)},
				{"dup", c.Duplicates, c.Lines, tc.dup, len(tr.DuplicateMessageIDs)},
				{"invalid", c.Invalid, c.Lines, tc.invalid, len(tr.InvalidEvents)},
			} {
				if s.marked != s.got {
					t.Errorf("%s: %d counted but %d marked", s.name, s.got, s.marked)
				}
				share := float64(s.got) / float64(s.total)
				if s.want == 0 && s.got != 0 {
					t.Errorf("%s: %d events, want none", s.name, s.got)
				}
				// The shares are steered, not sampled: they land within a
				// few events of the target.
				if math.Abs(share-s.want) > 0.002+0.02*s.want {
					t.Errorf("%s share %.4f, want %.4f", s.name, share, s.want)
				}
			}
			for _, r := range invalidReasons {
				if tc.invalid >= 0.01 && c.InvalidByReason[r.reason] == 0 {
					t.Errorf("no invalid event of reason %s", r.reason)
				}
			}
		})
	}
}

// keysOf returns a group's or person's identifier keys as a sorted slice.
func keysOf(ids Identifiers) []string {
	k := ids.Keys()
	slices.Sort(k)
	return k
}

func TestKnowableGroups(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			lines, tr, _ := run(t, sc.cfg)
			ps := parseLines(t, lines, tr)

			// Recompute the components from the valid lines.
			parent := map[string]string{}
			var find func(string) string
			find = func(x string) string {
				if parent[x] == x {
					return x
				}
				r := find(parent[x])
				parent[x] = r
				return r
			}
			for _, p := range ps {
				if p.reason != "" || p.dup {
					continue
				}
				for _, k := range p.ids {
					if _, ok := parent[k]; !ok {
						parent[k] = k
					}
				}
				for _, k := range p.ids[1:] {
					a, b := find(p.ids[0]), find(k)
					if a != b {
						parent[b] = a
					}
				}
			}
			comp := map[string][]string{}
			for k := range parent {
				r := find(k)
				comp[r] = append(comp[r], k)
			}
			var wantGroups []string
			for _, ks := range comp {
				slices.Sort(ks)
				wantGroups = append(wantGroups, strings.Join(ks, " "))
			}
			sort.Strings(wantGroups)

			var gotGroups []string
			personKeys := map[string][]string{}
			groupsOf := map[string]int{}
			for _, g := range tr.KnowableGroups {
				ks := keysOf(g.Identifiers)
				gotGroups = append(gotGroups, strings.Join(ks, " "))
				if len(g.Persons) != 1 {
					t.Fatalf("group %v spans persons %v with no shared devices", ks, g.Persons)
				}
				if n := len(g.Identifiers.UserIDs); n > 1 {
					t.Errorf("group of %s holds %d user ids", g.Persons[0], n)
				}
				if n := len(g.Identifiers.Emails); n > 2 {
					t.Errorf("group of %s holds %d emails", g.Persons[0], n)
				}
				personKeys[g.Persons[0]] = append(personKeys[g.Persons[0]], ks...)
				groupsOf[g.Persons[0]]++
			}
			sort.Strings(gotGroups)
			if !slices.Equal(gotGroups, wantGroups) {
				t.Fatalf("truth has %d groups, recomputed %d differ", len(gotGroups), len(wantGroups))
			}
			if tr.Counts.KnowableGroups != len(gotGroups) {
				t.Errorf("counts.knowable_groups %d, list has %d", tr.Counts.KnowableGroups, len(gotGroups))
			}
			// The groups partition each person's identifiers.
			split := 0
			for _, p := range tr.Persons {
				ks := personKeys[p.PersonID]
				slices.Sort(ks)
				if !slices.Equal(ks, keysOf(p.Identifiers)) {
					t.Fatalf("person %s: groups hold %v, person has %v", p.PersonID, ks, keysOf(p.Identifiers))
				}
				if p.KnowableGroups != groupsOf[p.PersonID] {
					t.Errorf("person %s: knowable_groups %d, list has %d", p.PersonID, p.KnowableGroups, groupsOf[p.PersonID])
				}
				if p.KnowableGroups > 1 {
					split++
				}
			}
			// Unlinkable devices must exist, or the test of a resolver would
			// be too easy; and most persons must still be one group.
			if sc.cfg.Persons >= 100 && (split == 0 || split > len(tr.Persons)/2) {
				t.Errorf("%d of %d persons have more than one knowable group", split, len(tr.Persons))
			}
		})
	}
}

func TestIdentifiersAreRealistic(t *testing.T) {
	t.Parallel()
	lines, tr, _ := run(t, scenarios[1].cfg)
	ps := parseLines(t, lines, tr)
	written := map[string]bool{}
	var multiDevice, multiAnonDevice, caseVariants int
	for _, p := range tr.Persons {
		for _, e := range append(p.Identifiers.Emails, p.Identifiers.Phones...) {
			for _, w := range e.Written {
				written[w] = true
			}
			if len(e.Written) > 1 {
				caseVariants++
			}
		}
		if len(p.Identifiers.DeviceIDs) > 1 {
			multiDevice++
		}
		if len(p.Identifiers.AnonymousIDs) > len(p.Identifiers.DeviceIDs) {
			multiAnonDevice++
		}
		for _, e := range p.Identifiers.Emails {
			if e.Normalized != strings.ToLower(e.Normalized) {
				t.Errorf("email %q not normalised", e.Normalized)
			}
		}
		for _, ph := range p.Identifiers.Phones {
			if !strings.HasPrefix(ph.Normalized, "+44") || len(ph.Normalized) != 13 {
				t.Errorf("phone %q not E.164", ph.Normalized)
			}
		}
	}
	for _, p := range ps {
		for _, tt := range []*evTraits{p.ev.Traits, p.ev.contextTraits()} {
			if tt == nil {
				continue
			}
			for _, w := range []string{tt.Email, tt.Phone} {
				if w != "" && p.reason == "" && !written[w] {
					t.Fatalf("line %d: %q is not among the truth's written forms", p.line, w)
				}
			}
		}
	}
	if multiDevice == 0 || multiAnonDevice == 0 || caseVariants == 0 {
		t.Errorf("persons on several devices %d, devices with several anonymousIds %d, identifiers written several ways %d: want each > 0",
			multiDevice, multiAnonDevice, caseVariants)
	}
}

func TestSharedDevices(t *testing.T) {
	t.Parallel()
	lines, tr, _ := run(t, cfgWith(func(c *Config) { c.SharedDeviceShare, c.Events = 0.1, 20000 }))
	if len(tr.SharedDevices) == 0 {
		t.Fatal("no shared devices marked")
	}
	sharedIDs := map[string]bool{}
	for _, sd := range tr.SharedDevices {
		if len(sd.Persons) != 2 {
			t.Errorf("shared device %s has persons %v", sd.DeviceID, sd.Persons)
		}
		sharedIDs["device_id:"+sd.DeviceID] = true
		for _, a := range sd.AnonymousIDs {
			sharedIDs["anonymous_id:"+a] = true
		}
	}
	owners := tr.IdentifierOwners()
	multi := 0
	for k, o := range owners {
		if len(o) > 1 {
			multi++
			if !sharedIDs[k] {
				t.Errorf("identifier %s of persons %v is not on a marked shared device", k, o)
			}
		}
	}
	if multi == 0 {
		t.Error("no identifier is used by two persons")
	}
	spanning := 0
	for _, g := range tr.KnowableGroups {
		if len(g.Persons) < 2 {
			continue
		}
		spanning++
		found := false
		for _, k := range g.Identifiers.Keys() {
			found = found || sharedIDs[k]
		}
		if !found {
			t.Errorf("group spanning %v holds no shared device", g.Persons)
		}
	}
	if spanning == 0 {
		t.Error("no knowable group spans two persons although devices are shared")
	}
	// Every other identifier still has exactly one owner.
	ps := parseLines(t, lines, tr)
	for _, p := range ps {
		for _, k := range p.ids {
			if len(owners[k]) == 0 {
				t.Fatalf("line %d: identifier %s belongs to no person", p.line, k)
			}
		}
	}
}

func TestRhythm(t *testing.T) {
	t.Parallel()
	cfg := cfgWith(func(c *Config) { c.Events, c.Duration, c.Persons = 0, 7*24*time.Hour, 1500 })
	lines, tr, _ := run(t, cfg)
	ps := parseLines(t, lines, tr)
	var byHour [24]int
	var byDay [7]int
	end := cfg.Start.Add(cfg.Duration)
	for _, p := range ps {
		if p.corr.Before(cfg.Start) || p.corr.After(end.Add(24*time.Hour)) {
			t.Fatalf("line %d at %s, outside the span", p.line, p.corr)
		}
		byHour[p.corr.Hour()]++
		byDay[p.corr.Weekday()]++
	}
	evening := byHour[19] + byHour[20] + byHour[21]
	night := byHour[2] + byHour[3] + byHour[4]
	if evening < 5*night {
		t.Errorf("evening 19-22h %d events, night 2-5h %d: want a clear evening peak", evening, night)
	}
	weekend := float64(byDay[time.Saturday]+byDay[time.Sunday]) / 2
	weekday := float64(byDay[time.Monday]+byDay[time.Tuesday]+byDay[time.Wednesday]) / 3
	if weekend < 1.15*weekday {
		t.Errorf("weekend %.0f events/day, Mon-Wed %.0f: want busier weekends", weekend, weekday)
	}
	// About persons × 0.4 sessions a day, some ten events each.
	if n := len(lines); n < 20000 || n > 100000 {
		t.Errorf("%d events for 1500 persons over 7 days", n)
	}
}

func TestPopularitySkew(t *testing.T) {
	t.Parallel()
	lines, tr, _ := run(t, cfgWith(func(c *Config) { c.Events = 20000 }))
	ps := parseLines(t, lines, tr)
	views := map[string]int{}
	total := 0
	for _, p := range ps {
		if p.ev.Event == "Product Viewed" && !p.dup {
			views[p.ev.Properties.ProductID]++
			total++
		}
	}
	counts := slices.Sorted(maps.Values(views))
	slices.Reverse(counts)
	top := 0
	for _, c := range counts[:min(10, len(counts))] {
		top += c
	}
	// Ten of 600 products get a big share of the views, yet the tail is seen.
	if share := float64(top) / float64(total); share < 0.15 || len(views) < 200 {
		t.Errorf("top 10 products have %.2f of %d views, %d products seen", share, total, len(views))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no persons", func(c *Config) { c.Persons = 0 }, "persons=0"},
		{"negative events", func(c *Config) { c.Events = -1 }, "events=-1"},
		{"late too high", func(c *Config) { c.LateShare = 0.5 }, "late-share"},
		{"dup negative", func(c *Config) { c.DupShare = -0.1 }, "dup-share"},
		{"invalid NaN", func(c *Config) { c.InvalidShare = math.NaN() }, "invalid-share"},
		{"shares sum", func(c *Config) { c.DupShare, c.InvalidShare = 0.4, 0.4 }, "at most 0.6"},
		{"shared", func(c *Config) { c.SharedDeviceShare = 2 }, "shared-device-share"},
		{"empty catalog", func(c *Config) { c.Catalog = []Product{} }, "catalog is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mod(&cfg)
			_, err := Generate(context.Background(), cfg, SinkFunc(func(context.Context, []byte) error { return nil }))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestSinkErrorAndCancel(t *testing.T) {
	boom := errors.New("disk full")
	n := 0
	_, err := Generate(context.Background(), DefaultConfig(), SinkFunc(func(context.Context, []byte) error {
		n++
		if n == 100 {
			return boom
		}
		return nil
	}))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "event 100") {
		t.Fatalf("err = %v, want the sink's error at event 100", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	_, err = Generate(ctx, cfgWith(func(c *Config) { c.Events = 100000 }), SinkFunc(func(context.Context, []byte) error {
		n++
		if n == 5000 {
			cancel()
		}
		return nil
	}))
	if !errors.Is(err, context.Canceled) || n > 5000+1024 {
		t.Fatalf("err = %v after %d lines, want context.Canceled soon after line 5000", err, n)
	}
}

func TestPacedSinkPassesLinesThrough(t *testing.T) {
	var got []string
	s := Paced(SinkFunc(func(_ context.Context, l []byte) error {
		got = append(got, string(l))
		return nil
	}), 1e6)
	for i := range 5 {
		if err := s.Write(context.Background(), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(got, ",") != "0,1,2,3,4" {
		t.Fatalf("got %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := Paced(SinkFunc(func(context.Context, []byte) error { return nil }), 0.001)
	_ = slow.Write(ctx, nil) // the first line is due at once
	if err := slow.Write(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		fn       func(string) string
		in, want string
	}{
		{NormalizeEmail, " Ann.Smith1@Example.COM ", "ann.smith1@example.com"},
		{NormalizeEmail, "ann@example.com", "ann@example.com"},
		{NormalizePhone, "+44 7700 123456", "+447700123456"},
		{NormalizePhone, "+44-7700-123-456", "+447700123456"},
		{NormalizePhone, "+447700123456", "+447700123456"},
	} {
		if got := tc.fn(tc.in); got != tc.want {
			t.Errorf("normalise(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for style := range 3 {
		if got := NormalizePhone(writtenPhone("+447712345678", style)); got != "+447712345678" {
			t.Errorf("style %d: %q", style, got)
		}
		if got := NormalizeEmail(writtenEmail("ann.smith1@mail.example", style)); got != "ann.smith1@mail.example" {
			t.Errorf("style %d: %q", style, got)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	cfg := cfgWith(func(c *Config) {
		c.Persons, c.Events = 10000, 200000
		c.LateShare, c.DupShare, c.InvalidShare = 0.05, 0.01, 0.01
	})
	sink := SinkFunc(func(context.Context, []byte) error { return nil })
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := Generate(context.Background(), cfg, sink); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cfg.Events)*float64(b.N)/time.Since(start).Seconds(), "events/s")
}

func TestUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 1000 {
		u := uuid4(r)
		if !re.MatchString(u) || seen[u] {
			t.Fatalf("bad or repeated UUID %q", u)
		}
		seen[u] = true
	}
}
