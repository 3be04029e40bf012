package generate

import (
	"errors"
	"fmt"
	"time"
)

// DefaultStart is the default first event time: a fixed Monday, so output is
// reproducible and the weekly rhythm starts at the beginning of a week.
var DefaultStart = time.Date(2026, time.November, 2, 0, 0, 0, 0, time.UTC)

// Defaults used when neither Config.Events nor Config.Duration is set, or
// only Events is.
const (
	DefaultEvents   = 10000
	DefaultDuration = 7 * 24 * time.Hour
	// DefaultSkewedDeviceShare is the share of devices with a wrong clock.
	DefaultSkewedDeviceShare = 0.03
	// sessionsPerPersonDay sets the traffic volume when only a Duration is
	// given: the mean number of sessions a person starts per day.
	sessionsPerPersonDay = 0.4
	// maxPersons bounds the identifier spaces (user ids, phone numbers).
	maxPersons = 10_000_000
)

// Config is everything that determines the output. The same Config gives
// byte-identical output and truth.
type Config struct {
	// Seed selects the random streams.
	Seed uint64
	// Persons is the number of simulated people.
	Persons int
	// Events is the exact number of lines to write (including duplicates and
	// invalid events). 0 means: as many as the sessions in Duration produce.
	Events int
	// Duration is the event-time span. With Events set it is the span the
	// traffic is spread over (the generator runs past it if the persons
	// cannot produce Events lines in it); alone it bounds session starts.
	Duration time.Duration
	// Start is the event time of the beginning of the span.
	Start time.Time
	// LateShare is the fraction of valid events delivered out of order.
	LateShare float64
	// DupShare is the fraction of output lines that repeat an earlier line.
	DupShare float64
	// InvalidShare is the fraction of output lines that are invalid.
	InvalidShare float64
	// SharedDeviceShare is the fraction of devices also used by a second
	// person (a family tablet). 0 keeps persons' identifiers disjoint.
	SharedDeviceShare float64
	// SkewedDeviceShare is the fraction of devices whose clock is wrong.
	SkewedDeviceShare float64
	// Catalog is the product catalogue, most popular first. Nil means
	// DefaultCatalog().
	Catalog []Product
}

// DefaultConfig returns the settings `cdp generate` uses without flags.
func DefaultConfig() Config {
	return Config{
		Seed:              1,
		Persons:           1000,
		Start:             DefaultStart,
		SkewedDeviceShare: DefaultSkewedDeviceShare,
	}
}

// normalize fills defaults and reports settings that cannot work, naming the
// flag a user would change.
func (c Config) normalize() (Config, error) {
	var errs []error
	if c.Persons < 1 || c.Persons > maxPersons {
		errs = append(errs, fmt.Errorf("persons=%d: want 1..%d", c.Persons, maxPersons))
	}
	if c.Events < 0 {
		errs = append(errs, fmt.Errorf("events=%d: want >= 0", c.Events))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration=%s: want >= 0", c.Duration))
	}
	for _, s := range []struct {
		name string
		v    float64
		max  float64
	}{
		{"late-share", c.LateShare, 0.3},
		{"dup-share", c.DupShare, 0.5},
		{"invalid-share", c.InvalidShare, 0.5},
		{"shared-device-share", c.SharedDeviceShare, 0.5},
		{"skewed-device-share", c.SkewedDeviceShare, 1},
	} {
		if !(s.v >= 0 && s.v <= s.max) { // also rejects NaN
			errs = append(errs, fmt.Errorf("%s=%g: want a fraction in [0, %g]", s.name, s.v, s.max))
		}
	}
	if c.DupShare+c.InvalidShare > 0.6 {
		errs = append(errs, fmt.Errorf("dup-share + invalid-share = %g: want at most 0.6", c.DupShare+c.InvalidShare))
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	if c.Events == 0 && c.Duration == 0 {
		c.Events = DefaultEvents
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	c.Start = c.Start.UTC().Truncate(time.Millisecond)
	if c.Catalog == nil {
		c.Catalog = DefaultCatalog()
	}
	if len(c.Catalog) == 0 {
		return c, errors.New("catalog is empty")
	}
	return c, nil
}
