package e2e

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"testing"
)

// chatSendBurst is plugins.chat.config.send_burst in the chat tests (with
// sends_per_second 1), small enough for the rate-limit test.
const chatSendBurst = 8

// chatArgs are the chat settings of the chat tests.
func chatArgs() []string {
	return []string{
		"--set", "plugins.chat.config.send_burst=" + strconv.Itoa(chatSendBurst),
		"--set", "plugins.chat.config.sends_per_second=1",
		"--set", "plugins.chat.config.notify_delay=200ms",
	}
}

// uuid4 returns a random version-4 UUID.
func uuid4(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// TestChat runs the chat plugin in both modes: the plugin contract differs
// (a subprocess talks gRPC to the host, in-process calls the host directly).
func TestChat(t *testing.T) {
	t.Parallel()
	requireNode(t)
	for _, mode := range []string{"subprocess", "inprocess"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			secret := "event-" + randHex(t, 8)
			s := launch(t, serverOpts{
				args: append([]string{"--set", "directory.conferences=demo", "--set", "plugins.chat.mode=" + mode}, chatArgs()...),
				env:  map[string]string{"EVENT_SECRET": secret},
			})
			runNode(t, "chat.test.mjs", map[string]string{
				"SERVER_URL":       s.URL,
				"E2E_EVENT_SECRET": secret,
				"SEND_BURST":       strconv.Itoa(chatSendBurst),
			})
		})
	}
}

// TestChatTwoInstances runs two servers on a private Redis and a fresh
// RabbitMQ vhost: chat messages cross instances exactly once.
func TestChatTwoInstances(t *testing.T) {
	t.Parallel()
	requireNode(t)
	amqpURL := rabbitVhost(t)
	redisURL, _ := startRedis(t)
	env := map[string]string{"REDIS_URL": redisURL, "CLOUDAMQP_URL": amqpURL}
	args := append([]string{"--set", "directory.conferences=demo"}, chatArgs()...)
	a := launch(t, serverOpts{args: args, env: env})
	b := launch(t, serverOpts{args: args, env: env})
	runNode(t, "chat-two.test.mjs", map[string]string{"SERVER_URL": a.URL, "SERVER_URL_A": a.URL, "SERVER_URL_B": b.URL})
}

// TestChatForbidden uses the Hasura directory backed by a fake Hasura, so
// that some users may use a chat and others may not: the static directory
// lets every member of a conference read and write every chat, and a server
// without conferences would refuse everybody, so the test could not show
// that a refused subscriber misses messages others get.
func TestChatForbidden(t *testing.T) {
	t.Parallel()
	requireNode(t)
	alice, bob, eve := uuid4(t), uuid4(t), uuid4(t)
	private, public := uuid4(t), uuid4(t)
	fake := &fakeHasura{
		members: map[string]bool{alice: true, bob: true},
		private: map[string][]string{private: {alice}},
	}
	addr := startFakeHasura(t, fake)
	s := launch(t, serverOpts{args: append([]string{
		"--set", "directory.backend=hasura",
		"--set", "directory.graphql_domain=" + addr,
		"--set", "directory.graphql_secure=false",
		"--set", "directory.admin_secret=fake-admin-secret",
	}, chatArgs()...)})
	runNode(t, "chat-forbidden.test.mjs", map[string]string{
		"SERVER_URL": s.URL, "ALICE": alice, "BOB": bob, "EVE": eve,
		"PRIVATE_CHAT": private, "PUBLIC_CHAT": public,
	})
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for _, op := range []string{"GetUserConferenceSlugs", "UserPermissions", "ChatInfo"} {
		if fake.calls[op] == 0 {
			t.Errorf("the server never asked the fake Hasura %s; calls %v", op, fake.calls)
		}
	}
}
