package identity

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// MaxValueBytes bounds an identifier value. Longer values are almost
// always a producer bug (a whole JSON document in user_id) and would cost
// memory on every profile that holds them.
const MaxValueBytes = 512

// Rejection rules, the stable first word of Rejection.Rule.
const (
	RuleBlocked         = "blocked"
	RuleInvalid         = "invalid"
	RuleUnknownType     = "unknown_type"
	RuleLimit           = "limit"
	RuleMergeProtection = "merge_protection"
	// RuleProfileSize: the profile holds Rules.MaxIdentifiers identifiers
	// already (a new one is refused), or a merge would take it past them.
	RuleProfileSize = "profile_size"
)

// Normalize returns the identifiers of one event that may enter the graph,
// in their original order with repeats removed, and a rejection for each
// one that may not. Emails are trimmed and lower-cased, phones become
// E.164, every other value is trimmed. Blocked values, malformed emails and
// phones, values with control characters or invalid UTF-8, and types the
// rules do not name are rejected; Rejection.Identifier is then the
// identifier as given. It checks the rules on every call; Graph keeps them
// prepared and normalises the same way.
func Normalize(rules Rules, ids []Identifier) (kept []Identifier, rejected []Rejection) {
	c, err := compile(rules)
	if err != nil {
		for _, id := range ids {
			rejected = append(rejected, Rejection{Identifier: id, Rule: RuleInvalid, Reason: err.Error()})
		}
		return nil, rejected
	}
	return c.normalize(ids, nil, nil)
}

// normalize appends to kept and rejected; see Normalize.
func (c *compiled) normalize(ids []Identifier, kept []Identifier, rejected []Rejection) ([]Identifier, []Rejection) {
	start := len(kept)
	for _, id := range ids {
		n, rule, reason := c.normalizeOne(id)
		if rule != "" {
			rejected = append(rejected, Rejection{Identifier: id, Rule: rule, Reason: reason})
			continue
		}
		dup := false
		for _, k := range kept[start:] {
			if k == n {
				dup = true
				break
			}
		}
		if !dup {
			kept = append(kept, n)
		}
	}
	return kept, rejected
}

// normalizeOne returns the normalised identifier, or a rejection rule and
// reason.
func (c *compiled) normalizeOne(id Identifier) (Identifier, string, string) {
	typ := strings.TrimSpace(id.Type)
	if _, ok := c.rank[typ]; !ok {
		return id, RuleUnknownType, fmt.Sprintf("unknown_type: identifier type %q is not in the identity rules' priority list", id.Type)
	}
	raw := strings.TrimSpace(id.Value)
	if c.isBlocked(raw) {
		return id, RuleBlocked, fmt.Sprintf("blocked: %s value %q is blocked", typ, raw)
	}
	if len(raw) > MaxValueBytes {
		return id, RuleInvalid, fmt.Sprintf("invalid: %s value is %d bytes, more than %d", typ, len(raw), MaxValueBytes)
	}
	if !utf8.ValidString(raw) {
		return id, RuleInvalid, fmt.Sprintf("invalid: %s value is not valid UTF-8", typ)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return id, RuleInvalid, fmt.Sprintf("invalid: %s value %q contains control characters", typ, raw)
	}
	v := raw
	switch typ {
	case TypeEmail:
		v = strings.ToLower(raw)
		at := strings.LastIndexByte(v, '@')
		if at <= 0 || at == len(v)-1 || strings.ContainsAny(v, " \t") {
			return id, RuleInvalid, fmt.Sprintf("invalid: email %q is not local@domain", raw)
		}
	case TypePhone:
		// Possible, not valid: validity depends on number ranges that
		// regulators keep allocating, and rejecting a real customer's new
		// number would split their profile, while a possible number that
		// is consistently written still links the right events.
		num, err := phonenumbers.Parse(raw, c.region)
		if err != nil {
			why := err.Error()
			if c.region == "" && !strings.HasPrefix(raw, "+") {
				why = "no country code and the rules set no default_region"
			}
			return id, RuleInvalid, fmt.Sprintf("invalid: phone %q: %s", raw, why)
		}
		if !phonenumbers.IsPossibleNumber(num) {
			return id, RuleInvalid, fmt.Sprintf("invalid: phone %q is not a possible number (wrong length for its country)", raw)
		}
		v = phonenumbers.Format(num, phonenumbers.E164)
	}
	if v != raw && c.isBlocked(v) {
		return id, RuleBlocked, fmt.Sprintf("blocked: %s value %q is blocked", typ, v)
	}
	return Identifier{Type: typ, Value: v}, "", ""
}
