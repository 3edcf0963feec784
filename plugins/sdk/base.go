package sdk

import (
	"context"
	"encoding/json"
	"net/http"
)

// Base gives a Plugin no-op defaults; embed it and override what you need.
type Base struct{}

func (Base) Start(context.Context, Host, json.RawMessage) error { return nil }
func (Base) OnConnect(context.Context, Socket) error            { return nil }
func (Base) OnEvent(context.Context, Event) ([]any, error)      { return nil, nil }
func (Base) OnDisconnect(context.Context, Socket, string) error { return nil }
func (Base) OnDelivery(context.Context, Delivery) error         { return nil }
func (Base) Stop(context.Context) error                         { return nil }
func (Base) OnHTTP(context.Context, HTTPRequest) (HTTPResponse, error) {
	return HTTPResponse{Status: http.StatusNotFound, Body: []byte("not found")}, nil
}
