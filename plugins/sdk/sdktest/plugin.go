package sdktest

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Plugin is a func-field fake sdk.Plugin, for testing hosts and shims. A nil
// func does what sdk.Base does. It keeps the Host given to Start (see Host).
type Plugin struct {
	Desc             sdk.Descriptor
	StartFunc        func(ctx context.Context, host sdk.Host, config json.RawMessage) error
	OnConnectFunc    func(ctx context.Context, s sdk.Socket) error
	OnEventFunc      func(ctx context.Context, e sdk.Event) ([]any, error)
	OnDisconnectFunc func(ctx context.Context, s sdk.Socket, reason string) error
	OnHTTPFunc       func(ctx context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error)
	OnDeliveryFunc   func(ctx context.Context, d sdk.Delivery) error
	StopFunc         func(ctx context.Context) error

	mu   sync.Mutex
	host sdk.Host
}

var _ sdk.Plugin = (*Plugin)(nil)

// Host returns the Host the plugin was started with (nil before Start).
func (p *Plugin) Host() sdk.Host { p.mu.Lock(); defer p.mu.Unlock(); return p.host }

func (p *Plugin) Describe() sdk.Descriptor { return p.Desc }

func (p *Plugin) Start(ctx context.Context, host sdk.Host, config json.RawMessage) error {
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
	if p.StartFunc != nil {
		return p.StartFunc(ctx, host, config)
	}
	return nil
}

func (p *Plugin) OnConnect(ctx context.Context, s sdk.Socket) error {
	if p.OnConnectFunc != nil {
		return p.OnConnectFunc(ctx, s)
	}
	return nil
}

func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) {
	if p.OnEventFunc != nil {
		return p.OnEventFunc(ctx, e)
	}
	return nil, nil
}

func (p *Plugin) OnDisconnect(ctx context.Context, s sdk.Socket, reason string) error {
	if p.OnDisconnectFunc != nil {
		return p.OnDisconnectFunc(ctx, s, reason)
	}
	return nil
}

func (p *Plugin) OnHTTP(ctx context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	if p.OnHTTPFunc != nil {
		return p.OnHTTPFunc(ctx, r)
	}
	return sdk.HTTPResponse{Status: http.StatusNotFound, Body: []byte("not found")}, nil
}

func (p *Plugin) OnDelivery(ctx context.Context, d sdk.Delivery) error {
	if p.OnDeliveryFunc != nil {
		return p.OnDeliveryFunc(ctx, d)
	}
	return nil
}

func (p *Plugin) Stop(ctx context.Context) error {
	if p.StopFunc != nil {
		return p.StopFunc(ctx)
	}
	return nil
}
