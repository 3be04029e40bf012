package identity

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// The built-in identifier types. Any other type is a custom one, named in
// Rules.Priority (the topology takes custom identifiers from traits,
// properties or context paths and names them).
const (
	TypeUserID      = "user_id"
	TypeAnonymousID = "anonymous_id"
	TypeEmail       = "email"
	TypePhone       = "phone"
	TypeDeviceID    = "device_id"
)

// TypeProfileID is accepted by Graph.Lookup only: it resolves a profile id,
// possibly one that was merged away, to the profile that holds it now.
const TypeProfileID = "profile_id"

// BuiltinBlocked are values that identify nobody because broken or careless
// producers send them for every user. They are always blocked, whatever the
// rules add, compared case-insensitively after trimming.
var BuiltinBlocked = []string{"", "null", "undefined", "0", "-1", "anonymous", "none", "nil", "unknown", "n/a", "nan",
	"[object object]", "guest",
	// The advertising id (IDFA, GAID) a device reports when the user
	// limited ad tracking: the same for millions of devices.
	"00000000-0000-0000-0000-000000000000", "00000000000000000000000000000000"}

// Rules decide which identifiers count and how many of each type one
// profile may hold. They come from the topology (YAML) and must be the same
// on every instance of the identity processor of one space, and must not
// change while a batch is being replayed: a replay returns the stored result
// of the first run, which was computed under the old rules.
type Rules struct {
	// Priority lists the identifier types, highest priority first. An
	// identifier of a type not listed is rejected. When an event would merge
	// profiles against a limit, the event goes to the profile of its
	// highest-priority identifier and the lower-priority conflicting ones are
	// not linked (merge protection). The first listed identifier of a new
	// profile also names it (see Graph).
	Priority []string `yaml:"priority"`
	// Limits caps how many identifiers of a type one profile may hold. A
	// type that is missing, or has 0, is unlimited.
	Limits map[string]int `yaml:"limits"`
	// Blocked values are rejected in addition to BuiltinBlocked: typically
	// test addresses used by QA or a shop's own staff. Compared
	// case-insensitively with the value both as written (trimmed) and as
	// normalised; an entry starting with "*" matches any value ending in the
	// rest ("*@example.com").
	Blocked []string `yaml:"blocked"`
	// DedupWindow is how far apart in event time two events with one
	// message_id may be for the second to count as a duplicate. At least 1s.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// DefaultRegion is the ISO 3166 region (such as "GB") assumed for phone
	// numbers written without a country code. Empty means such numbers are
	// rejected: guessing a country links strangers.
	DefaultRegion string `yaml:"default_region"`
	// MaxIdentifiers caps the identifiers of one profile, of all types
	// together (0: no cap). It guards the unlimited types (anonymous and
	// device ids): a broken producer sending a fresh anonymous id with a
	// user id on every event would otherwise grow one profile without
	// bound, and merging it would stall the shard. A new identifier past the
	// cap is refused, and so is a merge that would pass it (Rejection rule
	// profile_size). Counted from when the graph first ran with this rule.
	MaxIdentifiers int `yaml:"max_identifiers"`
	// DedupKeyIDs is how many message ids a dedup key holds on average
	// before the bucket's keys split (default 2,000): a window's ids are
	// spread over keys by linear hashing on their digest, so a key holds
	// about DedupKeyIDs to twice as many ids at any volume, and a quiet
	// space has few keys. Fewer ids per key cost throughput (a script call
	// reads and writes each dedup key its chunk touches); more make each
	// key, and each split (a few milliseconds at the default), larger.
	DedupKeyIDs int `yaml:"dedup_key_ids"`
	// DedupShards is the shard count of the fixed dedup layout that ran
	// before dedup keys split by themselves (stops 17-19; default 256, as
	// theirs). Its keys are still read, for the buckets they hold, until
	// they expire, so an upgrade forgets no message id. 0: never ran it.
	DedupShards int `yaml:"dedup_shards"`
}

// DefaultMaxIdentifiers is the default cap on a profile's identifiers.
const DefaultMaxIdentifiers = 1000

// DefaultDedupKeyIDs is the default average of message ids per dedup key.
const DefaultDedupKeyIDs = 2000

// DefaultDedupShards is the shard count of the fixed dedup layout of
// stops 17-19, which an upgraded graph reads until its keys expire.
const DefaultDedupShards = 256

// DefaultRules are Segment's defaults: one user_id, five emails and five
// phones per profile, priority user_id > email > phone > device_id >
// anonymous_id, a 24 h dedup window; and at most 1,000 identifiers in all
// per profile.
func DefaultRules() Rules {
	return Rules{
		Priority:       []string{TypeUserID, TypeEmail, TypePhone, TypeDeviceID, TypeAnonymousID},
		Limits:         map[string]int{TypeUserID: 1, TypeEmail: 5, TypePhone: 5},
		DedupWindow:    24 * time.Hour,
		MaxIdentifiers: DefaultMaxIdentifiers,
		DedupKeyIDs:    DefaultDedupKeyIDs,
		DedupShards:    DefaultDedupShards,
	}
}

// typeName is the syntax of a custom type name. Two characters at least, so
// a custom type never collides with the one-letter codes of the built-in
// types in Redis; no ':' since stored members are "code:value".
var typeName = regexp.MustCompile(`^[a-z][a-z0-9_]{1,31}$`)

// builtinCode maps built-in types to the one-letter codes stored in Redis,
// to keep every stored identifier a few bytes shorter.
var builtinCode = map[string]string{
	TypeUserID:      "u",
	TypeAnonymousID: "a",
	TypeEmail:       "e",
	TypePhone:       "p",
	TypeDeviceID:    "d",
}

// codeOf returns the code stored in Redis for a type.
func codeOf(typ string) string {
	if c, ok := builtinCode[typ]; ok {
		return c
	}
	return typ
}

// typeOfCode reverses codeOf.
func typeOfCode(code string) string {
	for t, c := range builtinCode {
		if c == code {
			return t
		}
	}
	return code
}

// Validate reports rules that cannot work, naming the field.
func (r Rules) Validate() error {
	if len(r.Priority) == 0 {
		return fmt.Errorf("identity rules: priority is empty: list the identifier types, highest priority first")
	}
	seen := map[string]bool{}
	for _, t := range r.Priority {
		if !typeName.MatchString(t) {
			return fmt.Errorf("identity rules: priority: type %q: want lower-case letters, digits and '_', 2 to 32 characters, starting with a letter", t)
		}
		if t == TypeProfileID {
			return fmt.Errorf("identity rules: priority: %q is reserved", t)
		}
		if seen[t] {
			return fmt.Errorf("identity rules: priority: type %q listed twice", t)
		}
		seen[t] = true
	}
	for t, n := range r.Limits {
		if !seen[t] {
			return fmt.Errorf("identity rules: limits: type %q is not in priority", t)
		}
		if n < 0 {
			return fmt.Errorf("identity rules: limits: %s: %d is negative (0 means unlimited)", t, n)
		}
	}
	if r.DedupKeyIDs < 1 || r.DedupKeyIDs > 100_000 {
		return fmt.Errorf("identity rules: dedup_key_ids %d: want 1 to 100000", r.DedupKeyIDs)
	}
	if r.DedupShards < 0 || r.DedupShards > 1<<24 {
		return fmt.Errorf("identity rules: dedup_shards %d: want 0 (no legacy layout) to %d", r.DedupShards, 1<<24)
	}
	if r.MaxIdentifiers < 0 {
		return fmt.Errorf("identity rules: max_identifiers %d is negative (0 means no cap)", r.MaxIdentifiers)
	}
	if r.DedupWindow < time.Second {
		return fmt.Errorf("identity rules: dedup_window %v: want at least 1s", r.DedupWindow)
	}
	if r.DefaultRegion != "" && !phonenumbers.GetSupportedRegions()[strings.ToUpper(r.DefaultRegion)] {
		return fmt.Errorf("identity rules: default_region %q is not a region phone numbers know (want e.g. GB, US, DE)", r.DefaultRegion)
	}
	return nil
}

// compiled is Rules prepared for fast use on every event.
type compiled struct {
	Rules
	rank    map[string]int    // type -> index in Priority
	limit   map[string]int    // code -> limit (> 0 only)
	blocked map[string]bool   // lower-cased exact values
	suffix  []string          // lower-cased "*" patterns without the "*"
	types   map[string]string // code -> type
	region  string
}

func compile(r Rules) (*compiled, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	c := &compiled{
		Rules:   r,
		rank:    map[string]int{},
		limit:   map[string]int{},
		blocked: map[string]bool{},
		types:   map[string]string{},
		region:  strings.ToUpper(r.DefaultRegion),
	}
	for i, t := range r.Priority {
		c.rank[t] = i
		c.types[codeOf(t)] = t
	}
	for t, n := range r.Limits {
		if n > 0 {
			c.limit[codeOf(t)] = n
		}
	}
	if r.MaxIdentifiers > 0 {
		c.limit["*"] = r.MaxIdentifiers // resolve.lua: all identifiers
	}
	for _, b := range slices.Concat(BuiltinBlocked, r.Blocked) {
		b = strings.ToLower(strings.TrimSpace(b))
		if strings.HasPrefix(b, "*") {
			c.suffix = append(c.suffix, b[1:])
			continue
		}
		c.blocked[b] = true
		// A blocked phone matches however it is written.
		if num, err := phonenumbers.Parse(b, c.region); err == nil && strings.ContainsAny(b, "0123456789") && phonenumbers.IsPossibleNumber(num) {
			c.blocked[phonenumbers.Format(num, phonenumbers.E164)] = true
		}
	}
	return c, nil
}

// typeName returns the type stored under code, also for types no longer in
// the rules.
func (c *compiled) typeName(code string) string {
	if t, ok := c.types[code]; ok {
		return t
	}
	return typeOfCode(code)
}

func (c *compiled) isBlocked(v string) bool {
	v = strings.ToLower(v)
	if c.blocked[v] {
		return true
	}
	for _, s := range c.suffix {
		if strings.HasSuffix(v, s) {
			return true
		}
	}
	return false
}
