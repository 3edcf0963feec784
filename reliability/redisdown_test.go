package reliability

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"
)

// redisOutage is how long Redis stays down.
const redisOutage = 10 * time.Second

// TestRedisDown kills the instance's Redis for 10 s under presence and chat
// load, then starts it again (empty: nothing was persisted), and checks:
// the host stays up and every socket stays connected; failures are visible
// (/readyz 503 naming the store, chat sends nacked, presence errors logged);
// no event sent with an ack id goes unanswered; and everything recovers by
// itself once Redis is back (/readyz 200, sends acked and delivered,
// presence lists rebuilt by the refresher, new connections accepted).
func TestRedisDown(t *testing.T) {
	t.Parallel()
	redis := testserver.StartRedis(t)
	s := launch(t, serverOpts{name: "redis-down", plugins: []string{"presence", "chat"},
		env: map[string]string{"REDIS_URL": redis.URL()},
		args: append(presenceArgs(), "--set", "redis.timeout=1s",
			"--set", "plugins.chat.config.sends_per_second=1000", "--set", "plugins.chat.config.send_burst=1000")})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const (
		users = 10
		page  = "/conference/demo/room/redis-down"
	)
	chatID := newUUID()

	obs, obsRec := dial(ctx, t, s.URL, "observer")
	defer obs.Close()
	subRec, subRcpt := chatSubscriber(ctx, t, s.URL, chatID)
	ledger := newChatLedger()
	members, ids := enterUsers(ctx, t, s.URL, page, users, ledger)
	if got, err := snapshot(ctx, obs, obsRec, page); err != nil {
		t.Fatal(err)
	} else if ok, diff := sameSet(got, ids); !ok {
		t.Fatalf("before the outage: %s", diff)
	}

	// Load: every member alternates enterPage and chat sends, with ack ids.
	var stats ackStats
	loadCtx, stopLoad := context.WithCancel(ctx)
	wg := mixedLoad(loadCtx, members, 100*time.Millisecond, page, chatID, ledger, &stats)
	time.Sleep(time.Second)

	nackedBefore := ledger.counts().nacked
	presenceErrsBefore := s.log.CountLines("plugin=presence", "level=ERROR") + s.log.CountLines("plugin=presence", "level=WARN")
	redis.Kill(time.Minute) // bounded wait; a SIGKILLed redis-server exits at once
	downAt := time.Now()
	var readyz503, readyzStore, healthFail int
	var lastReadyz string
	for time.Since(downAt) < redisOutage {
		if s.exited() {
			t.Fatalf("the host exited while Redis was down: %v", s.err)
		}
		if code, _ := httpGet(s.URL + "/healthz"); code != 200 {
			healthFail++
		}
		code, body := s.readyz()
		if code == 503 {
			readyz503++
			if strings.Contains(body, `"store"`) {
				readyzStore++
			}
		}
		lastReadyz = body
		time.Sleep(250 * time.Millisecond)
	}
	// A connection attempt while Redis is down: it must be answered (not
	// hang); its outcome is logged for RELIABILITY.md.
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	late, _, lateErr := tryDial(dctx, s.URL, token(t, "late-during-outage"))
	dcancel()
	if late != nil {
		late.Close()
	}
	// socket.io-client gives up after a CONNECT_ERROR but retries with
	// backoff after a transport close: the host must close.
	var ce *sioclient.ConnectError
	switch {
	case lateErr == nil:
		t.Logf("a connect during the outage succeeded")
	case errors.As(lateErr, &ce):
		t.Errorf("a connect during the outage got CONNECT_ERROR %q (socket.io-client would not retry); want a transport close", ce.Message)
	case errors.Is(lateErr, context.DeadlineExceeded):
		t.Errorf("a connect during the outage hung for 10s")
	default:
		t.Logf("a connect during the outage was closed (the client retries): %v", lateErr)
	}
	nackedDuring := ledger.counts().nacked - nackedBefore
	presenceErrs := s.log.CountLines("plugin=presence", "level=ERROR") + s.log.CountLines("plugin=presence", "level=WARN") - presenceErrsBefore

	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	var readyAfter time.Duration
	if !within(60*time.Second, func() bool { c, _ := s.readyz(); return c == 200 }) {
		code, body := s.readyz()
		t.Errorf("/readyz not 200 within 60s of Redis coming back: %d %s", code, body)
	} else {
		readyAfter = time.Since(upAt)
	}
	time.Sleep(2 * time.Second) // load after the recovery
	stopLoad()
	wg.Wait()

	t.Logf("during the outage: /healthz failures %d, /readyz 503 %d times (%d naming the store; last %.200s), chat nacks %d, presence error/warn log lines %d",
		healthFail, readyz503, readyzStore, lastReadyz, nackedDuring, presenceErrs)
	t.Logf("after Redis came back: /readyz 200 after %v; events with ack ids: %s; chat: %s",
		readyAfter.Round(time.Millisecond), &stats, ledger.counts())
	if healthFail > 0 {
		t.Errorf("/healthz failed %d times while Redis was down", healthFail)
	}
	if readyzStore == 0 {
		t.Errorf("/readyz never reported the store down during the outage")
	}
	if nackedDuring == 0 {
		t.Errorf("no chat send was nacked while Redis was down")
	}
	if presenceErrs == 0 {
		t.Errorf("no presence error was logged while Redis was down")
	}
	if stats.lost.Load() > 0 {
		t.Errorf("%d events sent with an ack id were never answered", stats.lost.Load())
	}
	if c := ledger.counts(); c.unanswered > 0 || c.both > 0 {
		t.Errorf("chat sends: %s", c)
	}
	for _, m := range members {
		if d := m.rec.disconnects(); len(d) > 0 || !m.c.Connected() {
			t.Errorf("client %s was disconnected: %v", m.id, d)
		}
	}
	if d := append(obsRec.disconnects(), subRec.disconnects()...); len(d) > 0 {
		t.Errorf("observer or subscriber disconnected: %v", d)
	}

	// Recovery: a send is acked and delivered; presence is rebuilt; a new
	// client connects.
	m := members[0]
	sID := newUUID()
	ledger.markSent(sID)
	if _, err := m.c.EmitWithAck(ctx, "chat.messages.send", chatMessage(sID, chatID, m.id, "after")); err != nil {
		t.Fatal(err)
	}
	if !within(10*time.Second, func() bool { return subRcpt.has([]string{sID}) }) {
		t.Errorf("a message sent after the recovery did not reach the subscriber (acked: %v)", ledger.acked[sID])
	}
	acked := ledger.ackedIDs()
	within(10*time.Second, func() bool { return subRcpt.has(acked) })
	if missing, dup := subRcpt.check(acked); len(missing)+len(dup) > 0 {
		t.Errorf("acked messages: %d missing at the subscriber (%s), %d duplicated (%s)", len(missing), head(missing), len(dup), head(dup))
	}
	var diff string
	if !within(30*time.Second, func() bool {
		got, err := snapshot(ctx, obs, obsRec, page)
		var ok bool
		ok, diff = sameSet(got, ids)
		return err == nil && ok
	}) {
		t.Errorf("presence not rebuilt within 30s of Redis coming back: %s", diff)
	}
	c, _ := dial(ctx, t, s.URL, "late-after-outage")
	c.Close()
}
