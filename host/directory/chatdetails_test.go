package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

const (
	chatDM       = "00000000-0000-0000-0000-0000000000d1"
	chatUntitled = "00000000-0000-0000-0000-0000000000d2"
)

// untitledChat answers ChatInfo for chatUntitled with a chat that has no
// items and no conference short name (the shared fake always has an item),
// and hands every other request to the fake.
func untitledChat(f *fakeHasura) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			OperationName string         `json:"operationName"`
			Variables     map[string]any `json:"variables"`
		}
		_ = json.Unmarshal(body, &req)
		if req.OperationName == "ChatInfo" && req.Variables["chatId"] == chatUntitled {
			f.mu.Lock()
			f.counts["ChatInfo"]++
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"chat_Chat_by_pk": map[string]any{
				"id": chatUntitled, "restrictToAdmins": false,
				"conference": map[string]any{"id": "id-conf1", "slug": "conf1", "shortName": nil},
				"items":      []any{},
				"rooms": []any{
					map[string]any{"id": "r1", "name": "Hallway", "managementModeName": "PRIVATE", "roomPeople": []any{}},
					map[string]any{"id": "r2", "name": "Second", "managementModeName": "DM", "roomPeople": []any{}},
				},
			}}})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.ServeHTTP(w, r)
	})
}

func TestHasuraChatDetails(t *testing.T) {
	ctx := context.Background()
	f, _ := newFake(t)
	srv := httptest.NewServer(untitledChat(f))
	t.Cleanup(srv.Close)
	f.update(func(w *world) {
		w.chats[chatDM] = chat{slug: "conf1", rooms: []room{{mode: "DM", users: []string{"alice", "bob"}}}}
	})
	h := newHasura(t, srv, newStore(t), time.Hour)

	tests := []struct {
		name  string
		chat  string
		want  sdk.ChatDetails
		found bool
	}{
		{"item title, public room", chatPublic, sdk.ChatDetails{ConferenceSlug: "conf1", ConferenceShortName: "CONF1", Title: "Item"}, true},
		{"DM room", chatDM, sdk.ChatDetails{ConferenceSlug: "conf1", ConferenceShortName: "CONF1", Title: "Item", IsDM: true}, true},
		{"no items: first room's name, first room decides DM", chatUntitled, sdk.ChatDetails{ConferenceSlug: "conf1", Title: "Hallway"}, true},
		{"other conference", chatOtherConf, sdk.ChatDetails{ConferenceSlug: "conf2", ConferenceShortName: "CONF2", Title: "Item"}, true},
		{"missing chat", chatMissing, sdk.ChatDetails{}, false},
		{"not a uuid", "not-a-uuid", sdk.ChatDetails{}, false},
	}
	for _, tc := range tests {
		got, found, err := h.ChatDetails(ctx, tc.chat)
		if err != nil || found != tc.found || got != tc.want {
			t.Errorf("%s: ChatDetails = %+v, %v, %v; want %+v, %v, nil", tc.name, got, found, err, tc.want, tc.found)
		}
	}
	// ChatDetails shares the permission checks' cached ChatInfo.
	before := f.count("ChatInfo")
	if _, _, err := h.ChatDetails(ctx, chatPublic); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.CanSelectChat(ctx, sock("alice"), chatDM); err != nil || !ok {
		t.Fatalf("CanSelectChat(DM member) = %v, %v", ok, err)
	}
	if c := f.count("ChatInfo"); c != before {
		t.Errorf("ChatInfo requests went from %d to %d on cached chats", before, c)
	}
}

func TestHasuraChatDetailsError(t *testing.T) {
	f, srv := newFake(t)
	f.fail = http.StatusInternalServerError
	h := newHasura(t, srv, newStore(t), time.Hour)
	if d, found, err := h.ChatDetails(context.Background(), chatPublic); err == nil || found {
		t.Errorf("ChatDetails with Hasura down = %+v, %v, %v; want an error", d, found, err)
	}
}

func TestStaticChatDetails(t *testing.T) {
	d := NewStatic(config.DirectoryConfig{Conferences: []string{"demo", "other"}})
	if got, found, err := d.ChatDetails(context.Background(), "chat1"); err != nil || found {
		t.Errorf("ChatDetails = %+v, %v, %v; want not found (the chat plugin then uses the sender's data)", got, found, err)
	}
}
