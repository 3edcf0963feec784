package handraise

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// The plugin's Redis commands behave on a real Redis as on the embedded one.
func TestRealRedis(t *testing.T) {
	rdb := sdktest.RealRedis(t, 12)
	ctx := context.Background()
	base := sdktest.NewHost()
	defer base.Close()
	base.Dir.CanAccessEventFunc = func(context.Context, sdk.Socket, string) (bool, error) { return true, nil }
	base.Dir.IsEventChairFunc = func(_ context.Context, s sdk.Socket, _ string) (bool, error) { return s.UserID == "chair", nil }
	h := sdktest.RealRedisHost{Host: base, RealStore: sdktest.GoRedisStore{RDB: rdb}}
	c := &clock{ms: 1000}
	p := New()
	p.now = c.now
	sdktest.Start(t, ctx, p, h, map[string]any{"event_secret": "s3cret"})
	defer func() { _ = p.Stop(ctx) }()

	for _, st := range []step{
		{s: sdktest.Socket("s1", "u3"), name: EventRaise, args: []any{ev1}, ms: 3000},
		{s: sdktest.Socket("s2", "u1"), name: EventRaise, args: []any{ev1}, ms: 1000},
		{s: sdktest.Socket("s3", "u2"), name: EventRaise, args: []any{ev1}, ms: 2000},
		{s: sdktest.Socket("s2", "u1"), name: EventRaise, args: []any{ev1}, ms: 4000}, // keeps 1000
		{s: sdktest.Socket("s3", "u2"), name: EventLower, args: []any{ev1}},
		{s: bob, name: EventAccept, args: []any{ev1, "u3"}}, // not a chair: refused
		{s: chair, name: EventFetch, args: []any{ev1}},
	} {
		if st.ms != 0 {
			c.ms = st.ms
		}
		if _, err := sdktest.Event(t, ctx, p, st.s, st.name, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	got, err := rdb.ZRange(ctx, HandsKey(ev1), 0, -1).Result()
	if err != nil || !slices.Equal(got, []string{"u1", "u3"}) {
		t.Fatalf("hands = %v, %v", got, err)
	}
	if ttl := rdb.PTTL(ctx, HandsKey(ev1)).Val(); ttl <= 0 || ttl > DefaultHandTTL {
		t.Errorf("ttl = %v", ttl)
	}
	emits := base.Emits()
	last := emits[len(emits)-1]
	if last.Event != EmitListing || argsJSON(last) != `[{"eventId":"`+ev1+`","userIds":["u1","u3"]}]` || last.To != sdk.SocketTarget("sC") {
		t.Errorf("listing = %+v %s", last, argsJSON(last))
	}
	if _, err := sdktest.Event(t, ctx, p, chair, EventReject, ev1, "u1"); err != nil {
		t.Fatal(err)
	}
	if got := rdb.ZRange(ctx, HandsKey(ev1), 0, -1).Val(); !slices.Equal(got, []string{"u3"}) {
		t.Errorf("after reject: hands = %v", got)
	}

	hdr := http.Header{"X-Hasura-Event-Secret": {"s3cret"}}
	res, err := p.OnHTTP(ctx, sdk.HTTPRequest{Method: http.MethodPost, Path: RouteEventEnded, Header: hdr,
		Body: []byte(`{"action":{"name":"notifyEventEnded"},"input":{"eventId":"` + ev1 + `"}}`)})
	if err != nil || res.Status != 200 || string(res.Body) != `{"ok":true}` {
		t.Fatalf("/event/ended = %d %s %v", res.Status, res.Body, err)
	}
	if n := rdb.Exists(ctx, HandsKey(ev1)).Val(); n != 0 {
		t.Errorf("hands key still exists after /event/ended")
	}
}
