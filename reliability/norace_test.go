//go:build !race

package reliability

// raceEnabled: the tests run without -race.
const raceEnabled = false
