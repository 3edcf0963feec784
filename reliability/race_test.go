//go:build race

package reliability

// raceEnabled: the tests run with -race, so the server is built with it too.
const raceEnabled = true
