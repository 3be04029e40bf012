//go:build race

package eval

// raceEnabled shrinks the real-data test's tuning grid: the race detector
// slows the replay about tenfold.
const raceEnabled = true
