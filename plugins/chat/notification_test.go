package chat

import (
	"context"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// notifyCarol sends one INSERT to chat1 from the socket as sender, with Carol
// subscribed and not listening, and returns the notification Carol got.
func notifyCarol(t *testing.T, details func(ctx context.Context, chatID string) (sdk.ChatDetails, bool, error), from sdk.Socket, sender string) Notification {
	t.Helper()
	p, h := newTestPlugin(t, nil)
	ctx := context.Background()
	var asked []string
	h.Dir.ChatDetailsFunc = func(ctx context.Context, chatID string) (sdk.ChatDetails, bool, error) {
		asked = append(asked, chatID)
		return details(ctx, chatID)
	}
	_, _ = h.Redis().SAdd(subscriptionsKey(chat1), regCarol)
	if _, err := sdktest.Event(t, ctx, p, from, EventMessagesSend, act("INSERT", message(sid1, sender))); err != nil {
		t.Fatal(err)
	}
	p.waitTasks()
	emits := emitsNamed(h, "notification")
	if len(emits) != 1 || emits[0].To != sdk.UserTarget("carol") {
		t.Fatalf("notification emits = %+v, want one to carol", emits)
	}
	if len(asked) != 1 || asked[0] != chat1 {
		t.Errorf("ChatDetails asked for %v, want [%s]", asked, chat1)
	}
	var n Notification
	if err := emits[0].Arg(0, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNotificationFields(t *testing.T) {
	found := func(d sdk.ChatDetails) func(context.Context, string) (sdk.ChatDetails, bool, error) {
		return func(context.Context, string) (sdk.ChatDetails, bool, error) { return d, true, nil }
	}
	const link = "/conference/conf9/chat/" + chat1
	tests := []struct {
		name    string
		details func(context.Context, string) (sdk.ChatDetails, bool, error)
		from    sdk.Socket
		sender  string
		want    Notification
	}{
		{
			"DM: from the sender",
			found(sdk.ChatDetails{ConferenceSlug: "conf9", ConferenceShortName: "C9", Title: "Alice & Carol", IsDM: true}),
			alice, regAlice,
			Notification{Title: "C9: New message", Subtitle: "from Alice", LinkURL: link},
		},
		{
			"DM without a known sender: in the chat",
			found(sdk.ChatDetails{ConferenceSlug: "conf9", ConferenceShortName: "C9", Title: "Alice & Carol", IsDM: true}),
			mod, "",
			Notification{Title: "C9: New message", Subtitle: "in Alice & Carol", LinkURL: link},
		},
		{
			"not a DM, item title",
			found(sdk.ChatDetails{ConferenceSlug: "conf9", ConferenceShortName: "C9", Title: "Keynote"}),
			alice, regAlice,
			Notification{Title: "C9: New message", Subtitle: "in Keynote", LinkURL: link},
		},
		{
			"not a DM, room name, conference without short name",
			found(sdk.ChatDetails{ConferenceSlug: "conf9", Title: "Hallway"}),
			alice, regAlice,
			Notification{Title: "New message", Subtitle: "in Hallway", LinkURL: link},
		},
		{
			"not a DM, no title",
			found(sdk.ChatDetails{ConferenceSlug: "conf9", ConferenceShortName: "C9"}),
			alice, regAlice,
			Notification{Title: "C9: New message", Subtitle: "in Unknown chat", LinkURL: link},
		},
		{
			"details unavailable: sender's conference and name",
			func(context.Context, string) (sdk.ChatDetails, bool, error) { return sdk.ChatDetails{}, false, errDir },
			alice, regAlice,
			Notification{Title: "New message", Subtitle: "from Alice", LinkURL: "/conference/conf1/chat/" + chat1},
		},
		{
			"chat not found: same fallback",
			func(context.Context, string) (sdk.ChatDetails, bool, error) { return sdk.ChatDetails{}, false, nil },
			alice, regAlice,
			Notification{Title: "New message", Subtitle: "from Alice", LinkURL: "/conference/conf1/chat/" + chat1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := notifyCarol(t, tc.details, tc.from, tc.sender)
			tc.want.Description = "hello <world>"
			tc.want.ChatID = chat1
			if got != tc.want {
				t.Errorf("notification = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// A user listening to the chat gets no notification, and then the chat's
// details are not even looked up.
func TestNotificationSkipsLookupWhenAllListen(t *testing.T) {
	p, h := newTestPlugin(t, nil)
	ctx := context.Background()
	_, _ = h.Redis().SAdd(subscriptionsKey(chat1), regBob)
	if _, err := sdktest.Event(t, ctx, p, bob, EventSubscribe, chat1); err != nil {
		t.Fatal(err)
	}
	calls := 0
	h.Dir.ChatDetailsFunc = func(context.Context, string) (sdk.ChatDetails, bool, error) {
		calls++
		return sdk.ChatDetails{}, false, nil
	}
	if _, err := sdktest.Event(t, ctx, p, alice, EventMessagesSend, act("INSERT", message(sid1, regAlice))); err != nil {
		t.Fatal(err)
	}
	p.waitTasks()
	if n := len(emitsNamed(h, "notification")); n != 0 || calls != 0 {
		t.Errorf("%d notifications, %d ChatDetails calls; want none", n, calls)
	}
}
