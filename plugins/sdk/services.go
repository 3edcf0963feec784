package sdk

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// ErrNil is returned by Store calls whose Redis reply is nil (missing key).
var ErrNil = errors.New("store: nil reply")

// ErrDrop, wrapped in an OnDelivery error, nacks the delivery without requeue.
var ErrDrop = errors.New("drop delivery")

// Store is shared state with Redis semantics: the host serves it from Redis at
// REDIS_URL or from an embedded Redis. Replies are RESP2-shaped: int64, string,
// []any, nil (with ErrNil from Do), or an error value inside an array.
type Store interface {
	// Do runs one command, e.g. Do(ctx, "SADD", key, member).
	Do(ctx context.Context, args ...any) (any, error)
	// Pipeline runs several commands in one round trip (not atomically); the
	// result has one Reply per command.
	Pipeline(ctx context.Context, cmds [][]any) ([]Reply, error)
	// Eval runs a Lua script atomically (EVALSHA, falling back to EVAL).
	Eval(ctx context.Context, script string, keys []string, args ...any) (any, error)
}

// Reply is one command's result in a pipeline.
type Reply struct {
	Value any
	Err   error
}

// Int64 converts a Store reply to an int64.
func Int64(v any, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		return strconv.ParseInt(x, 10, 64)
	case nil:
		return 0, ErrNil
	}
	return 0, fmt.Errorf("store: unexpected reply %T", v)
}

// String converts a Store reply to a string.
func String(v any, err error) (string, error) {
	if err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case nil:
		return "", ErrNil
	}
	return "", fmt.Errorf("store: unexpected reply %T", v)
}

// Strings converts an array reply to []string (nil elements become "").
func Strings(v any, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		if v == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("store: unexpected reply %T", v)
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, _ := String(e, nil)
		out = append(out, s)
	}
	return out, nil
}

// Directory answers who a user is and what they may see. Backends: static
// (config) and hasura (GraphQL, cached in the Store).
type Directory interface {
	// ConferenceSlugs lists the conferences the user may view.
	ConferenceSlugs(ctx context.Context, userID string) ([]string, error)
	// CanSelectChat reports whether the socket's user may read the chat (§7.2).
	CanSelectChat(ctx context.Context, s Socket, chatID string) (bool, error)
	// CanWriteChat reports whether the socket's user may insert, update or delete
	// a message or reaction in the chat whose stored sender is senderRegistrantID
	// ("" for none) (§7.3).
	CanWriteChat(ctx context.Context, s Socket, chatID, senderRegistrantID string) (bool, error)
	// Registrant resolves a registrant id; found is false when it doesn't exist.
	Registrant(ctx context.Context, registrantID string) (r Registrant, found bool, err error)
	// CanAccessEvent reports whether the user may see the event (§7.4).
	CanAccessEvent(ctx context.Context, s Socket, eventID string) (bool, error)
	// IsEventChair reports whether the user may accept or reject raised hands.
	IsEventChair(ctx context.Context, s Socket, eventID string) (bool, error)
	// ChatDetails describes a chat for its notifications (§6.2); found is
	// false when the chat is unknown. A subprocess plugin talking to a host
	// older than this method gets an error (the host answers Unimplemented),
	// so callers treat an error as "details unavailable".
	ChatDetails(ctx context.Context, chatID string) (d ChatDetails, found bool, err error)
	// MessageModerators names who moderates the conference of a chat message
	// (by sId), for "Message reported" notifications (§8.3); found is false
	// when the message is unknown. Like ChatDetails it was added later: an
	// older host answers Unimplemented, so callers treat an error as
	// "moderators unavailable".
	MessageModerators(ctx context.Context, messageSID string) (m ConferenceModerators, found bool, err error)
}

// ConferenceModerators are the moderators of a message's conference (§8.3).
type ConferenceModerators struct {
	// ConferenceSlug is the slug of the message's conference (for linkURL).
	ConferenceSlug string `json:"conferenceSlug"`
	// UserIDs are the users of the conference's registrants in an enabled
	// group whose role grants CONFERENCE_MODERATE_ATTENDEES, each once.
	UserIDs []string `json:"userIds,omitempty"`
}

// ChatDetails is what a chat notification shows about the chat (§6.2).
type ChatDetails struct {
	// ConferenceSlug is the slug of the chat's conference (for linkURL).
	ConferenceSlug string `json:"conferenceSlug"`
	// ConferenceShortName prefixes the title ("" for none).
	ConferenceShortName string `json:"conferenceShortName,omitempty"`
	// Title is the chat's name: its first item's title, else its first
	// room's name; "" when it has neither (shown as "Unknown chat").
	Title string `json:"title,omitempty"`
	// IsDM is true when the chat's first room is a direct-message room.
	IsDM bool `json:"isDM,omitempty"`
}

// Registrant is a user's registration in one conference.
type Registrant struct {
	ID           string `json:"id"`
	UserID       string `json:"userId"`
	DisplayName  string `json:"displayName"`
	ConferenceID string `json:"conferenceId"`
}
