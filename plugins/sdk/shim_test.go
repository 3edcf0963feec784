package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// Interface guards of the exported adapters.
var (
	_ plugin.GRPCPlugin = (*sdk.GRPCPlugin)(nil)
	_ sdk.Host          = sdk.NewHost(nil)
)

// modes returns a Client for p for each way the host can drive a plugin:
// the gRPC shims over a real connection (with and without broker
// multiplexing, packages.md §1.9) and the in-process client.
var modes = map[string]func(t *testing.T, p sdk.Plugin) sdk.Client{
	"grpc":           func(t *testing.T, p sdk.Plugin) sdk.Client { return grpcClient(t, p, false) },
	"grpc-multiplex": func(t *testing.T, p sdk.Plugin) sdk.Client { return grpcClient(t, p, true) },
	"inprocess": func(t *testing.T, p sdk.Plugin) sdk.Client {
		c := sdk.NewLocalClient(p)
		t.Cleanup(func() { _ = c.Close() })
		return c
	},
}

func grpcClient(t *testing.T, p sdk.Plugin, multiplex bool) sdk.Client {
	t.Helper()
	gc, _ := plugin.TestPluginGRPCConn(t, multiplex, plugin.PluginSet{sdk.PluginKey: &sdk.GRPCPlugin{Impl: p}})
	raw, err := gc.Dispense(sdk.PluginKey)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(sdk.Client)
	if !ok {
		t.Fatalf("dispensed %T, not an sdk.Client", raw)
	}
	t.Cleanup(func() {
		_ = c.Close()
		// Close shuts the server down through go-plugin's controller; calling
		// the server's Stop as well races inside go-plugin.
		_ = gc.Close()
	})
	return c
}

// started returns a started client for p with a fresh recording host.
func started(t *testing.T, mode string, p sdk.Plugin, config string) (sdk.Client, *sdktest.Host) {
	t.Helper()
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	c := modes[mode](t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx, h.Services(), json.RawMessage(config)); err != nil {
		t.Fatalf("start: %v", err)
	}
	return c, h
}

type eventResult struct {
	ack []json.RawMessage
	err error
}

func event(t *testing.T, c sdk.Client, e sdk.Event) eventResult {
	t.Helper()
	ch := make(chan eventResult, 1)
	if err := c.Event(e, func(ack []json.RawMessage, err error) { ch <- eventResult{ack, err} }); err != nil {
		t.Fatalf("queue event: %v", err)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to event")
	}
	return eventResult{}
}

func errOf(t *testing.T, queue func(func(error)) error) error {
	t.Helper()
	ch := make(chan error, 1)
	if err := queue(func(err error) { ch <- err }); err != nil {
		t.Fatalf("queue: %v", err)
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	return nil
}

func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	for _, mode := range []string{"grpc", "grpc-multiplex", "inprocess"} {
		t.Run(mode, func(t *testing.T) { f(t, mode) })
	}
}

func TestDescribe(t *testing.T) {
	want := sdk.Descriptor{
		Name: "full", Version: "1.2.3", Events: []string{"a", "b"},
		Routes:    []sdk.Route{{Method: "POST", Path: "/summary"}, {Path: "/any/"}},
		Exchanges: []sdk.Exchange{{Name: "chat.messages", Kind: "topic", Durable: true}},
		Queues: []sdk.Queue{{Name: "q.{instance}", Exchange: "chat.messages", Bindings: []string{"#", "a.*"},
			Durable: true, AutoDelete: true, Exclusive: true, Prefetch: 10}},
		SkipConnect: true, SkipDisconnect: true, // SkipReplay stays false: each flag travels on its own
	}
	forEachMode(t, func(t *testing.T, mode string) {
		c := modes[mode](t, &sdktest.Plugin{Desc: want})
		got, err := c.Describe(context.Background())
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Describe = %+v, %v; want %+v", got, err, want)
		}
	})
}

func TestStart(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		var gotCfg string
		var gotID string
		p := &sdktest.Plugin{StartFunc: func(_ context.Context, h sdk.Host, cfg json.RawMessage) error {
			gotCfg, gotID = string(cfg), h.InstanceID()
			if h.Logger() == nil {
				return errors.New("nil logger")
			}
			return nil
		}}
		started(t, mode, p, `{"k":1}`)
		if gotCfg != `{"k":1}` || gotID != "test-instance" {
			t.Errorf("Start got config %q instance %q", gotCfg, gotID)
		}

		failing := &sdktest.Plugin{StartFunc: func(context.Context, sdk.Host, json.RawMessage) error { return errors.New("bad config: x") }}
		c := modes[mode](t, failing)
		h := sdktest.NewHost()
		defer h.Close()
		err := c.Start(context.Background(), h.Services(), nil)
		if err == nil || !containsStr(err.Error(), "bad config: x") {
			t.Errorf("failing Start = %v, want the plugin's message", err)
		}
	})
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestCalls(t *testing.T) {
	sock := sdktest.Socket("s1", "u1", "c1", "c2")
	forEachMode(t, func(t *testing.T, mode string) {
		var mu sync.Mutex
		var seen []string
		record := func(s string) { mu.Lock(); seen = append(seen, s); mu.Unlock() }
		p := &sdktest.Plugin{
			OnConnectFunc: func(_ context.Context, s sdk.Socket) error {
				record("connect " + s.ID + " " + s.UserID + fmt.Sprint(s.ConferenceSlugs))
				if s.UserID == "bad" {
					return errors.New("refused")
				}
				return nil
			},
			OnEventFunc: func(_ context.Context, e sdk.Event) ([]any, error) {
				switch e.Name {
				case "ack":
					return []any{"ok", 1, map[string]bool{"x": true}, json.RawMessage(`[1,2]`)}, nil
				case "args":
					out := make([]any, len(e.Args))
					for i, a := range e.Args {
						out[i] = a
					}
					return out, nil
				case "fail":
					return nil, errors.New("nope")
				case "panic":
					panic("boom")
				case "badack":
					return []any{func() {}}, nil
				}
				return nil, nil
			},
			OnDisconnectFunc: func(_ context.Context, s sdk.Socket, reason string) error {
				record("disconnect " + s.ID + " " + reason)
				return nil
			},
			OnDeliveryFunc: func(_ context.Context, d sdk.Delivery) error {
				record(fmt.Sprintf("delivery %s %s %s %s %v", d.Queue, d.Exchange, d.RoutingKey, d.Body, d.Redelivered))
				switch string(d.Body) {
				case "drop":
					return fmt.Errorf("bad message: %w", sdk.ErrDrop)
				case "retry":
					return errors.New("try later")
				}
				return nil
			},
		}
		c, _ := started(t, mode, p, `{}`)

		if err := errOf(t, func(d func(error)) error { return c.Connect(sock, d) }); err != nil {
			t.Errorf("connect: %v", err)
		}
		if err := errOf(t, func(d func(error)) error { return c.Connect(sdktest.Socket("s2", "bad"), d) }); err == nil || err.Error() != "refused" {
			t.Errorf("refused connect = %v", err)
		}

		events := []struct {
			name    string
			args    []json.RawMessage
			wantAck string
			wantErr string
		}{
			{name: "ack", wantAck: `["ok",1,{"x":true},[1,2]]`},
			{name: "args", args: []json.RawMessage{json.RawMessage(`"a"`), json.RawMessage(`{"b":[null]}`)}, wantAck: `["a",{"b":[null]}]`},
			{name: "none", wantAck: `null`},
			{name: "fail", wantErr: "nope"},
			{name: "panic", wantErr: "panic: boom"},
			{name: "badack", wantErr: "ack"},
		}
		for _, ev := range events {
			r := event(t, c, sdk.Event{Socket: sock, Name: ev.name, Args: ev.args})
			if ev.wantErr != "" {
				if r.err == nil || !containsStr(r.err.Error(), ev.wantErr) {
					t.Errorf("event %s: err = %v, want %q", ev.name, r.err, ev.wantErr)
				}
				continue
			}
			if r.err != nil {
				t.Errorf("event %s: %v", ev.name, r.err)
				continue
			}
			got := "null"
			if r.ack != nil {
				b, _ := json.Marshal(r.ack)
				got = string(b)
			}
			if got != ev.wantAck {
				t.Errorf("event %s: ack = %s, want %s", ev.name, got, ev.wantAck)
			}
		}

		deliveries := []struct {
			body     string
			wantErr  bool
			wantDrop bool
		}{{"fine", false, false}, {"drop", true, true}, {"retry", true, false}}
		for _, d := range deliveries {
			err := errOf(t, func(done func(error)) error {
				return c.Deliver(sdk.Delivery{Queue: "q", Exchange: "ex", RoutingKey: "rk", Body: []byte(d.body), Redelivered: true}, done)
			})
			if (err != nil) != d.wantErr || errors.Is(err, sdk.ErrDrop) != d.wantDrop {
				t.Errorf("delivery %s: err = %v, want err %v drop %v", d.body, err, d.wantErr, d.wantDrop)
			}
		}

		if err := errOf(t, func(d func(error)) error { return c.Disconnect(sock, "transport close", d) }); err != nil {
			t.Errorf("disconnect: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []string{
			"connect s1 u1[c1 c2]", "connect s2 bad[]",
			"delivery q ex rk fine true", "delivery q ex rk drop true", "delivery q ex rk retry true",
			"disconnect s1 transport close",
		}
		if !reflect.DeepEqual(seen, want) {
			t.Errorf("plugin saw %q, want %q", seen, want)
		}
	})
}

func TestHTTP(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		p := &sdktest.Plugin{OnHTTPFunc: func(_ context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
			if r.Path == "/err" {
				return sdk.HTTPResponse{}, errors.New("exploded")
			}
			body, _ := json.Marshal(map[string]any{
				"method": r.Method, "path": r.Path, "q": r.Query.Get("a"), "h": r.Header.Get("X-Secret"),
				"body": string(r.Body), "remote": r.RemoteAddr,
			})
			return sdk.HTTPResponse{Status: 201, Header: http.Header{"X-Out": {"1", "2"}}, Body: body}, nil
		}}
		c, _ := started(t, mode, p, `{}`)
		resp, err := c.HTTP(context.Background(), sdk.HTTPRequest{
			Method: "POST", Path: "/summary", Query: url.Values{"a": {"b c"}},
			Header: http.Header{"X-Secret": {"s3"}}, Body: []byte("payload"), RemoteAddr: "1.2.3.4:5",
		})
		if err != nil {
			t.Fatalf("HTTP: %v", err)
		}
		want := `{"body":"payload","h":"s3","method":"POST","path":"/summary","q":"b c","remote":"1.2.3.4:5"}`
		if resp.Status != 201 || string(resp.Body) != want || !reflect.DeepEqual(resp.Header["X-Out"], []string{"1", "2"}) {
			t.Errorf("HTTP = %d %s %v", resp.Status, resp.Body, resp.Header)
		}
		if _, err := c.HTTP(context.Background(), sdk.HTTPRequest{Method: "GET", Path: "/err"}); err == nil || !containsStr(err.Error(), "exploded") {
			t.Errorf("HTTP error = %v", err)
		}
	})
}

func TestStop(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		stopped := make(chan struct{}, 1)
		p := &sdktest.Plugin{StopFunc: func(context.Context) error { stopped <- struct{}{}; return nil }}
		c, _ := started(t, mode, p, `{}`)
		if err := c.Stop(context.Background()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		select {
		case <-stopped:
		default:
			t.Error("Plugin.Stop not called")
		}
	})
}

// TestEmitOrder checks that emits keep their order, also interleaved with
// the answers of the events that made them, and that one socket's events are
// handled in order.
func TestEmitOrder(t *testing.T) {
	const n = 500
	forEachMode(t, func(t *testing.T, mode string) {
		var mu sync.Mutex
		var handled []int
		var p *sdktest.Plugin
		p = &sdktest.Plugin{OnEventFunc: func(ctx context.Context, e sdk.Event) ([]any, error) {
			var i int
			_ = json.Unmarshal(e.Args[0], &i)
			mu.Lock()
			handled = append(handled, i)
			mu.Unlock()
			_ = p.Host().Emit(ctx, sdk.SocketTarget(e.Socket.ID), "n", i)
			_ = p.Host().Emit(ctx, sdk.RoomTarget("r"), "m", i)
			return nil, nil
		}}
		c, h := started(t, mode, p, `{}`)
		sock := sdktest.Socket("s", "u")
		var wg sync.WaitGroup
		wg.Add(n)
		for i := range n {
			if err := c.Event(sdk.Event{Socket: sock, Name: "x", Args: []json.RawMessage{json.RawMessage(strconv.Itoa(i))}}, func([]json.RawMessage, error) { wg.Done() }); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
		}
		wg.Wait()
		emits := h.Emits()
		if len(emits) != 2*n {
			t.Fatalf("got %d emits, want %d", len(emits), 2*n)
		}
		for i := range n {
			var a, b int
			_ = emits[2*i].Arg(0, &a)
			_ = emits[2*i+1].Arg(0, &b)
			if a != i || b != i || emits[2*i].Event != "n" || emits[2*i+1].To != sdk.RoomTarget("r") {
				t.Fatalf("emit %d = %+v %+v", i, emits[2*i], emits[2*i+1])
			}
		}
		for i, v := range handled {
			if v != i {
				t.Fatalf("handled[%d] = %d: events of one socket out of order", i, v)
			}
		}
	})
}

// TestHostServices exercises every Host method from the plugin's side.
func TestHostServices(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		p := &sdktest.Plugin{}
		_, h := started(t, mode, p, `{}`)
		host := p.Host()
		ctx := context.Background()
		sock := sdktest.Socket("s1", "u1", "c1")

		if err := host.Join(ctx, "s1", "room"); err != nil || !h.InRoom("s1", "room") {
			t.Errorf("Join: %v (in room %v)", err, h.InRoom("s1", "room"))
		}
		if err := host.Leave(ctx, "s1", "room"); err != nil || h.InRoom("s1", "room") {
			t.Errorf("Leave: %v", err)
		}
		if err := host.Disconnect(ctx, "s9"); err != nil || !reflect.DeepEqual(h.Disconnects(), []string{"s9"}) {
			t.Errorf("Disconnect: %v %v", err, h.Disconnects())
		}
		if err := host.Publish(ctx, "ex", "rk", []byte("body")); err != nil || len(h.Publishes()) != 1 || string(h.Publishes()[0].Body) != "body" {
			t.Errorf("Publish: %v %+v", err, h.Publishes())
		}
		h.PublishFunc = func(context.Context, string, string, []byte) error { return errors.New("broker said no") }
		if err := host.Publish(ctx, "ex", "rk", nil); err == nil || !containsStr(err.Error(), "broker said no") {
			t.Errorf("failing Publish = %v", err)
		}

		st := host.Store()
		storeCases := []struct {
			args    []any
			want    any
			wantErr error
			errText string
		}{
			{args: []any{"SET", "k", 42}, want: "OK"},
			{args: []any{"GET", "k"}, want: "42"},
			{args: []any{"INCRBY", "k", int64(8)}, want: int64(50)},
			{args: []any{"GET", "missing"}, wantErr: sdk.ErrNil},
			{args: []any{"SADD", "set", "a", "b"}, want: int64(2)},
			{args: []any{"LPUSH", "list", 1.5, true}, want: int64(2)},
			{args: []any{"LRANGE", "list", 0, -1}, want: []any{"1", "1.5"}},
			{args: []any{"HGET", "set", "x"}, errText: "WRONGTYPE"},
		}
		for _, sc := range storeCases {
			got, err := st.Do(ctx, sc.args...)
			switch {
			case sc.wantErr != nil:
				if !errors.Is(err, sc.wantErr) {
					t.Errorf("Do%v err = %v, want %v", sc.args, err, sc.wantErr)
				}
			case sc.errText != "":
				if err == nil || !containsStr(err.Error(), sc.errText) {
					t.Errorf("Do%v err = %v, want %q", sc.args, err, sc.errText)
				}
			case err != nil || !reflect.DeepEqual(got, sc.want):
				t.Errorf("Do%v = %#v, %v; want %#v", sc.args, got, err, sc.want)
			}
		}
		replies, err := st.Pipeline(ctx, [][]any{{"SET", "p", "v"}, {"GET", "p"}, {"GET", "nope"}, {"HGET", "set", "x"}})
		if err != nil || len(replies) != 4 || replies[0].Value != "OK" || replies[1].Value != "v" ||
			!errors.Is(replies[2].Err, sdk.ErrNil) || replies[3].Err == nil {
			t.Errorf("Pipeline = %+v, %v", replies, err)
		}
		v, err := st.Eval(ctx, `redis.call("SET", KEYS[1], ARGV[1]); return {redis.call("GET", KEYS[1]), 7}`, []string{"ek"}, "ev")
		if err != nil || !reflect.DeepEqual(v, []any{"ev", int64(7)}) {
			t.Errorf("Eval = %#v, %v", v, err)
		}
		if _, err := st.Eval(ctx, `return nil`, nil); !errors.Is(err, sdk.ErrNil) {
			t.Errorf("Eval nil = %v", err)
		}

		h.Dir.ConferenceSlugsFunc = func(_ context.Context, u string) ([]string, error) { return []string{u + "-conf"}, nil }
		h.Dir.CanSelectChatFunc = func(_ context.Context, s sdk.Socket, chat string) (bool, error) {
			return s.HasConference("c1") && chat == "chat1", nil
		}
		h.Dir.CanWriteChatFunc = func(_ context.Context, s sdk.Socket, chat, sender string) (bool, error) {
			return s.UserID == "u1" && chat == "chat1" && sender == "r1", nil
		}
		h.Dir.RegistrantFunc = func(_ context.Context, id string) (sdk.Registrant, bool, error) {
			if id == "r1" {
				return sdk.Registrant{ID: "r1", UserID: "u1", DisplayName: "Ann", ConferenceID: "c1"}, true, nil
			}
			return sdk.Registrant{}, false, nil
		}
		h.Dir.CanAccessEventFunc = func(_ context.Context, s sdk.Socket, ev string) (bool, error) { return ev == "e1", nil }
		h.Dir.IsEventChairFunc = func(context.Context, sdk.Socket, string) (bool, error) {
			return false, errors.New("directory down")
		}
		h.Dir.ChatDetailsFunc = func(_ context.Context, chat string) (sdk.ChatDetails, bool, error) {
			if chat == "chat1" {
				return sdk.ChatDetails{ConferenceSlug: "c1", ConferenceShortName: "C1", Title: "Keynote", IsDM: true}, true, nil
			}
			return sdk.ChatDetails{}, false, nil
		}
		dir := host.Directory()
		if d, found, err := dir.ChatDetails(ctx, "chat1"); err != nil || !found ||
			d != (sdk.ChatDetails{ConferenceSlug: "c1", ConferenceShortName: "C1", Title: "Keynote", IsDM: true}) {
			t.Errorf("ChatDetails = %+v %v %v", d, found, err)
		}
		if d, found, err := dir.ChatDetails(ctx, "zz"); err != nil || found || d != (sdk.ChatDetails{}) {
			t.Errorf("ChatDetails(missing) = %+v found=%v err=%v", d, found, err)
		}
		if slugs, err := dir.ConferenceSlugs(ctx, "u1"); err != nil || !reflect.DeepEqual(slugs, []string{"u1-conf"}) {
			t.Errorf("ConferenceSlugs = %v, %v", slugs, err)
		}
		if ok, err := dir.CanSelectChat(ctx, sock, "chat1"); err != nil || !ok {
			t.Errorf("CanSelectChat = %v, %v", ok, err)
		}
		if ok, err := dir.CanWriteChat(ctx, sock, "chat1", "r1"); err != nil || !ok {
			t.Errorf("CanWriteChat = %v, %v", ok, err)
		}
		if ok, err := dir.CanWriteChat(ctx, sock, "chat1", "r2"); err != nil || ok {
			t.Errorf("CanWriteChat(other sender) = %v, %v", ok, err)
		}
		if r, found, err := dir.Registrant(ctx, "r1"); err != nil || !found || r.DisplayName != "Ann" || r.ConferenceID != "c1" {
			t.Errorf("Registrant = %+v %v %v", r, found, err)
		}
		if _, found, err := dir.Registrant(ctx, "zz"); err != nil || found {
			t.Errorf("Registrant(missing) found=%v err=%v", found, err)
		}
		if ok, err := dir.CanAccessEvent(ctx, sock, "e1"); err != nil || !ok {
			t.Errorf("CanAccessEvent = %v, %v", ok, err)
		}
		if _, err := dir.IsEventChair(ctx, sock, "e1"); err == nil || !containsStr(err.Error(), "directory down") {
			t.Errorf("IsEventChair err = %v", err)
		}
	})
}

// TestCloseFailsPending checks that a plugin going away answers every pending
// call with ErrPluginUnavailable, and refuses new ones.
func TestCloseFailsPending(t *testing.T) {
	for _, mode := range []string{"grpc", "grpc-multiplex"} {
		t.Run(mode, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			p := &sdktest.Plugin{OnEventFunc: func(context.Context, sdk.Event) ([]any, error) {
				<-release
				return nil, nil
			}}
			c, _ := started(t, mode, p, `{}`)
			errs := make(chan error, 1)
			if err := c.Event(sdk.Event{Socket: sdktest.Socket("s", "u"), Name: "x"}, func(_ []json.RawMessage, err error) { errs <- err }); err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			select {
			case err := <-errs:
				if !errors.Is(err, sdk.ErrPluginUnavailable) {
					t.Errorf("pending call err = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("pending call never answered")
			}
			<-c.Done()
			if err := c.Event(sdk.Event{Socket: sdktest.Socket("s", "u"), Name: "x"}, nil); !errors.Is(err, sdk.ErrPluginUnavailable) {
				t.Errorf("event after close = %v", err)
			}
		})
	}
}

// orderedServices records the order in which Emit and Leave reach the host;
// its Emit is slow, as a busy host's would be.
type orderedServices struct {
	sdk.HostServices
	mu  sync.Mutex
	log []string
}

func (o *orderedServices) Emit(ctx context.Context, to sdk.Target, event string, args []json.RawMessage) error {
	time.Sleep(200 * time.Microsecond)
	o.mu.Lock()
	o.log = append(o.log, "emit")
	o.mu.Unlock()
	return o.HostServices.Emit(ctx, to, event, args)
}

func (o *orderedServices) Leave(ctx context.Context, id, room string) error {
	o.mu.Lock()
	o.log = append(o.log, "leave")
	o.mu.Unlock()
	return o.HostServices.Leave(ctx, id, room)
}

// TestEmitsBeforeLeaveArriveFirst: emits travel on the stream and Leave is a
// unary call; the Leave must still reach the host after the emits made
// before it, or the socket would miss updates meant for it.
func TestEmitsBeforeLeaveArriveFirst(t *testing.T) {
	const n = 50
	forEachMode(t, func(t *testing.T, mode string) {
		var p *sdktest.Plugin
		p = &sdktest.Plugin{OnEventFunc: func(ctx context.Context, e sdk.Event) ([]any, error) {
			for i := range n {
				if err := p.Host().Emit(ctx, sdk.RoomTarget("r"), "m", i); err != nil {
					return nil, err
				}
			}
			return nil, p.Host().Leave(ctx, e.Socket.ID, "r")
		}}
		h := sdktest.NewHost()
		t.Cleanup(h.Close)
		svc := &orderedServices{HostServices: h.Services()}
		c := modes[mode](t, p)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Start(ctx, svc, json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		if r := event(t, c, sdk.Event{Socket: sdktest.Socket("s", "u"), Name: "x"}); r.err != nil {
			t.Fatal(r.err)
		}
		svc.mu.Lock()
		defer svc.mu.Unlock()
		if len(svc.log) != n+1 || svc.log[n] != "leave" {
			i := slices.Index(svc.log, "leave")
			t.Fatalf("leave reached the host after %d of %d emits", i, n)
		}
	})
}

// TestHostServicesMessageModerators round-trips Directory.MessageModerators
// from the plugin's side: found, not found, and an error.
func TestHostServicesMessageModerators(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		p := &sdktest.Plugin{}
		_, h := started(t, mode, p, `{}`)
		ctx := context.Background()
		var asked []string
		var mu sync.Mutex
		h.Dir.MessageModeratorsFunc = func(_ context.Context, sid string) (sdk.ConferenceModerators, bool, error) {
			mu.Lock()
			asked = append(asked, sid)
			mu.Unlock()
			switch sid {
			case "m1":
				return sdk.ConferenceModerators{ConferenceSlug: "c1", UserIDs: []string{"u1", "u2"}}, true, nil
			case "m-empty":
				return sdk.ConferenceModerators{ConferenceSlug: "c2"}, true, nil
			case "m-err":
				return sdk.ConferenceModerators{}, false, errors.New("hasura down")
			}
			return sdk.ConferenceModerators{}, false, nil
		}
		dir := p.Host().Directory()
		if m, found, err := dir.MessageModerators(ctx, "m1"); err != nil || !found ||
			!reflect.DeepEqual(m, sdk.ConferenceModerators{ConferenceSlug: "c1", UserIDs: []string{"u1", "u2"}}) {
			t.Errorf("MessageModerators = %+v %v %v", m, found, err)
		}
		if m, found, err := dir.MessageModerators(ctx, "m-empty"); err != nil || !found || m.ConferenceSlug != "c2" || len(m.UserIDs) != 0 {
			t.Errorf("MessageModerators(no moderators) = %+v %v %v", m, found, err)
		}
		if m, found, err := dir.MessageModerators(ctx, "zz"); err != nil || found || !reflect.DeepEqual(m, sdk.ConferenceModerators{}) {
			t.Errorf("MessageModerators(missing) = %+v found=%v err=%v", m, found, err)
		}
		if _, found, err := dir.MessageModerators(ctx, "m-err"); err == nil || found || !containsStr(err.Error(), "hasura down") {
			t.Errorf("MessageModerators(error) found=%v err=%v, want the directory's error", found, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !reflect.DeepEqual(asked, []string{"m1", "m-empty", "zz", "m-err"}) {
			t.Errorf("directory asked for %v", asked)
		}
	})
}
