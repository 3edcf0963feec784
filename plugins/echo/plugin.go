// Package echo is the example plugin: copy it to start a new one.
//
// It handles two Socket.IO events and one HTTP route:
//
//   - "echo" emits "echo" back to the sending socket with the same arguments,
//     and answers the client's ack callback with them too;
//   - "echo.room" joins the socket to the room named by its first argument,
//     then emits "echo.room" (with the remaining arguments) to that room;
//   - GET /echo/ping answers 200 "pong".
//
// The package registers itself as the built-in plugin "echo" (see init), so a
// host binary that imports it can serve it; cmd/ shows the same plugin built
// as a separate binary, for the `path:` form of the config.
package echo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register("echo", func() sdk.Plugin { return New() })
}

// Plugin is the echo plugin. Embedding sdk.Base gives no-op defaults for the
// hooks it does not need (OnConnect, OnDisconnect, OnDelivery, Stop).
type Plugin struct {
	sdk.Base
	host sdk.Host
}

// Interface guard: the build fails here if Plugin stops satisfying sdk.Plugin.
var _ sdk.Plugin = (*Plugin)(nil)

// New returns an echo plugin.
func New() *Plugin { return &Plugin{} }

// Describe declares the events and routes the plugin handles.
func (p *Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "echo",
		Version: "1.0.0",
		Events:  []string{"echo", "echo.room"},
		Routes:  []sdk.Route{{Method: http.MethodGet, Path: "/echo/ping"}},
		// No OnConnect/OnDisconnect (sdk.Base's): spare every connect the calls.
		SkipConnect: true, SkipReplay: true, SkipDisconnect: true,
	}
}

// Start keeps the host services; echo has no config.
func (p *Plugin) Start(_ context.Context, host sdk.Host, _ json.RawMessage) error {
	p.host = host
	return nil
}

// OnEvent handles "echo" and "echo.room".
func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	switch e.Name {
	case "echo":
		args := rawArgs(e.Args)
		if err := p.host.Emit(ctx, sdk.SocketTarget(e.Socket.ID), "echo", args...); err != nil {
			return nil, fmt.Errorf("echo: %w", err)
		}
		return args, nil
	case "echo.room":
		if len(e.Args) == 0 {
			return nil, errors.New("echo.room: missing room argument")
		}
		var room string
		if err := json.Unmarshal(e.Args[0], &room); err != nil || room == "" {
			return nil, errors.New("echo.room: the first argument must be a room name")
		}
		if err := p.host.Join(ctx, e.Socket.ID, room); err != nil {
			return nil, fmt.Errorf("echo.room: join: %w", err)
		}
		if err := p.host.Emit(ctx, sdk.RoomTarget(room), "echo.room", rawArgs(e.Args[1:])...); err != nil {
			return nil, fmt.Errorf("echo.room: %w", err)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("echo: unexpected event %q", e.Name)
}

// OnHTTP serves GET /echo/ping.
func (p *Plugin) OnHTTP(_ context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	if r.Path == "/echo/ping" && r.Method == http.MethodGet {
		return sdk.HTTPResponse{
			Status: http.StatusOK,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:   []byte("pong"),
		}, nil
	}
	return sdk.HTTPResponse{Status: http.StatusNotFound, Body: []byte("not found")}, nil
}

// rawArgs passes raw JSON arguments on unchanged (json.RawMessage is not
// re-encoded by Emit).
func rawArgs(in []json.RawMessage) []any {
	out := make([]any, len(in))
	for i, a := range in {
		out[i] = a
	}
	return out
}
