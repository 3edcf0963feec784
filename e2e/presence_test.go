package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/testserver"
)

// Short presence timings for the tests that wait for expiry or refresh; the
// plugin requires window > 2*refresh_interval.
const (
	presenceWindow  = 3 * time.Second
	presenceRefresh = 1 * time.Second
	presenceSweep   = 500 * time.Millisecond
	// presenceSlack covers scheduling and -race slowness on top of
	// window + sweep_interval.
	presenceSlack = 4 * time.Second
)

// shortPresenceArgs sets the short presence timings.
func shortPresenceArgs() []string {
	return testserver.PresenceArgs(presenceWindow, presenceRefresh, presenceSweep)
}

func TestPresence(t *testing.T) {
	t.Parallel()
	requireNode(t)
	base := startServer(t, "--set", "directory.conferences=demo")
	runNode(t, "presence.test.mjs", map[string]string{"SERVER_URL": base})
}

// TestPresenceTwoInstances runs two servers on one private Redis: presence
// deltas cross instances, and after instance B is SIGKILLed its users are
// reported left by A within window + sweep_interval (+ slack).
func TestPresenceTwoInstances(t *testing.T) {
	t.Parallel()
	requireNode(t)
	redisURL, _ := startRedis(t)
	args := append([]string{"--set", "directory.conferences=demo"}, shortPresenceArgs()...)
	env := map[string]string{"REDIS_URL": redisURL}
	a := launch(t, serverOpts{args: args, env: env})
	b := launch(t, serverOpts{args: args, env: env})
	b.killExpected.Store(true) // the node test SIGKILLs it
	within := presenceWindow + presenceSweep + presenceSlack
	runNode(t, "presence-two.test.mjs", map[string]string{
		"SERVER_URL":     a.URL,
		"SERVER_URL_A":   a.URL,
		"SERVER_URL_B":   b.URL,
		"SERVER_PID_B":   strconv.Itoa(b.cmd.Process.Pid),
		"LEFT_WITHIN_MS": strconv.FormatInt(within.Milliseconds(), 10),
	})
	if !b.waitExit(5 * time.Second) {
		t.Fatalf("instance B still runs after the node test SIGKILLed it")
	}
	if !testserver.KilledBySIGKILL(b.cmd) {
		t.Fatalf("instance B exited with %v, want killed by SIGKILL", b.err)
	}
	// Its plugin processes must notice that their host is gone and exit on
	// their own (stop checks the process group). Give them their poll period.
	if leftovers := testserver.WaitProcessGroupGone(b.cmd, 5*time.Second); leftovers {
		t.Errorf("plugin processes of the SIGKILLed instance still run 5s later")
	}
}
