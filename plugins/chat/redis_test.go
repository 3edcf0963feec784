package chat

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// realRedisClient connects to the machine's Redis (REDIS_URL; skipped, or
// failed under CI, when there is none), closed when the test ends. Tests
// on it use keys of their own, so they never disturb each other.
func realRedisClient(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.Protocol = 2
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// The Redis commands the plugin issues behave on a real Redis as on the
// embedded one: subscribe, send (record, window), follow-up, disconnect.
func TestRealRedis(t *testing.T) {
	rdb := realRedisClient(t)
	ctx := context.Background()
	chat, sID, sock := randomUUID(), randomUUID(), "rt-chat-test-"+randomUUID()
	s := sdktest.Socket(sock, "alice", "conf1")
	keys := []string{listenersKey(chat), socketChatsKey(sock), recentMessagesKey(chat), pinsKey(chat), readUpToKey(chat, "alice"), recordKey(kindMessage, sID)}
	defer rdb.Del(ctx, keys...)

	base := sdktest.NewHost()
	defer base.Close()
	base.Dir.CanSelectChatFunc = func(context.Context, sdk.Socket, string) (bool, error) { return true, nil }
	base.Dir.CanWriteChatFunc = func(context.Context, sdk.Socket, string, string) (bool, error) { return true, nil }
	base.Dir.RegistrantFunc = func(_ context.Context, id string) (sdk.Registrant, bool, error) {
		r, ok := registrants[id]
		return r, ok, nil
	}
	h := sdktest.RealRedisHost{Host: base, RealStore: sdktest.GoRedisStore{RDB: rdb}}
	p := New()
	sdktest.Start(t, ctx, p, h, map[string]any{"notify_delay": "0s"})
	defer func() { _ = p.Stop(ctx) }()

	if err := rdb.SAdd(ctx, pinsKey(chat), regAlice).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := sdktest.Event(t, ctx, p, s, EventSubscribe, chat); err != nil {
		t.Fatal(err)
	}
	d := message(sID, regAlice)
	d["chatId"] = chat
	for i := 0; i < 2; i++ { // the second INSERT hits the existing record
		if _, err := sdktest.Event(t, ctx, p, s, EventMessagesSend, act("INSERT", d)); err != nil {
			t.Fatal(err)
		}
	}
	p.waitTasks()
	if n := len(emitsNamed(base, "chat.messages.send.ack")); n != 2 {
		t.Errorf("acks = %d, want 2 (emits %+v)", n, base.Emits())
	}
	if n, _ := rdb.ZCard(ctx, recentMessagesKey(chat)).Result(); n != 1 {
		t.Errorf("window size = %d", n)
	}
	ups := emitsNamed(base, "chat.unreadCount.update")
	if len(ups) == 0 || argsJSON(ups[len(ups)-1]) != fmt.Sprintf(`[%q,""]`, chat) {
		t.Errorf("unread updates = %+v", ups)
	}
	users, err := p.listeningUsers(ctx, chat)
	if err != nil || !users["alice"] {
		t.Errorf("listening users = %v, %v", users, err)
	}
	if err := p.OnDisconnect(ctx, s, "transport close"); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, socketChatsKey(sock), listenersKey(chat)).Result(); n != 0 {
		t.Errorf("%d socket keys left after disconnect", n)
	}
}
