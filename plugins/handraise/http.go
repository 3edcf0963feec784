package handraise

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

func jsonResponse(status int, body string) sdk.HTTPResponse {
	return sdk.HTTPResponse{
		Status: status,
		Header: kit.JSONHeader(),
		Body:   []byte(body),
	}
}

// checkSecret compares the x-hasura-event-secret header with event_secret in
// constant time. An empty event_secret refuses everything.
func (p *Plugin) checkSecret(h http.Header) bool { return kit.EventSecretOK(h, p.cfg.EventSecret) }

// OnHTTP serves POST /event/ended, the Hasura action notifyEventEnded.
func (p *Plugin) OnHTTP(ctx context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	if r.Path != RouteEventEnded {
		return jsonResponse(http.StatusNotFound, `{"error":"not found"}`), nil
	}
	if !p.checkSecret(r.Header) {
		p.log.Warn("handraise: /event/ended with a missing or wrong event secret", "remote", r.RemoteAddr)
		return jsonResponse(http.StatusUnauthorized, `{}`), nil
	}
	if r.Method != http.MethodPost {
		return jsonResponse(http.StatusMethodNotAllowed, `{"ok":false}`), nil
	}
	if len(r.Body) > maxWebhookBody {
		return jsonResponse(http.StatusRequestEntityTooLarge, `{"ok":false}`), nil
	}
	eventID, err := parseEventEnded(r.Body)
	if err != nil {
		p.log.Warn("handraise: unexpected /event/ended payload", "err", err)
		return jsonResponse(http.StatusInternalServerError, `{"ok":false}`), nil
	}
	if _, err := p.host.Store().Do(ctx, "DEL", HandsKey(eventID)); err != nil {
		p.log.Error("handraise: /event/ended: clear hands", "eventId", eventID, "err", err)
		return jsonResponse(http.StatusInternalServerError, `{"ok":false}`), nil
	}
	// Not in the original: observers still in the room learn the list is empty.
	if err := p.broadcast(ctx, eventID, EmitListing, Listing{EventID: eventID, UserIDs: []string{}}); err != nil {
		p.log.Warn("handraise: /event/ended: broadcast empty listing", "eventId", eventID, "err", err)
	}
	return jsonResponse(http.StatusOK, `{"ok":true}`), nil
}

// parseEventEnded validates a Hasura action payload
// {action: {name}, input: {eventId}, session_variables?} and returns eventId.
func parseEventEnded(body []byte) (string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return "", errors.New("body must be a JSON object")
	}
	var action struct {
		Name *string `json:"name"`
	}
	if err := json.Unmarshal(top["action"], &action); err != nil || !isObject(top["action"]) || action.Name == nil {
		return "", errors.New("action must be an object with a string name")
	}
	var input struct {
		EventID *string `json:"eventId"`
	}
	if err := json.Unmarshal(top["input"], &input); err != nil || !isObject(top["input"]) || input.EventID == nil {
		return "", errors.New("input must be an object with a string eventId")
	}
	if !kit.ValidUUID(*input.EventID) {
		return "", errors.New("input.eventId is not a UUID")
	}
	if sv, ok := top["session_variables"]; ok && !bytes.Equal(bytes.TrimSpace(sv), []byte("null")) {
		var m map[string]string
		if err := json.Unmarshal(sv, &m); err != nil || m == nil {
			return "", errors.New("session_variables must be an object of strings")
		}
	}
	return *input.EventID, nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}
