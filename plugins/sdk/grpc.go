package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/clowdr/realtime/plugins/sdk/proto/v1"
)

// Handshake is the go-plugin handshake between the host and a plugin. The
// magic cookie only tells a plugin binary run by hand that it is not meant to
// be run that way; it is not a security measure. It must NEVER change: that
// would break every plugin built before the change.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "REALTIME_PLUGIN",
	MagicCookieValue: "9f4c2b7e1d08a6539e3f7c1b2a4d6e8f0c5b3a79d1e2f4068b7c9a1d3e5f7082",
}

// PluginKey is the name under which a process serves its plugin in go-plugin's
// plugin set (one plugin per process).
const PluginKey = "realtime"

// maxMsgSize bounds one gRPC message (a batch) in both directions.
const maxMsgSize = 64 << 20

// GRPCPlugin is the go-plugin glue: in a plugin process it serves Impl, in the
// host it returns a Client (the gRPC shim). Most code uses Serve and Launch
// instead.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the plugin (plugin side only).
	Impl Plugin
	// Logger is what the plugin gets as Host.Logger (plugin side; nil =
	// slog.Default()).
	Logger *slog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Plugin service (plugin side).
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("sdk: GRPCPlugin.Impl is nil")
	}
	pluginv1.RegisterPluginServer(s, newGRPCServer(p.Impl, broker, p.Logger))
	return nil
}

// GRPCClient returns the host-side Client shim. ctx is done when the plugin
// process exits.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newGRPCClient(ctx, broker, conn), nil
}

// PluginSet is the plugin set for go-plugin's ClientConfig.Plugins (host side).
func PluginSet() plugin.PluginSet { return plugin.PluginSet{PluginKey: &GRPCPlugin{}} }

// newGRPCServerWithLimits is the gRPC server factory of both ends.
func newGRPCServerWithLimits(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))...)
}

// toStatus turns an error returned by a Go implementation into a gRPC status.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// ErrHostUnavailable means a plugin could not reach the host services (the
// host is gone or shutting down).
var ErrHostUnavailable = errors.New("host unavailable")

// fromStatus turns a gRPC error back into a Go error: context errors stay
// recognisable, a broken connection wraps unavailable, anything else keeps
// the remote message.
func fromStatus(what string, err error, unavailable error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code() {
	case codes.Canceled:
		return fmt.Errorf("%s: %w", what, context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	case codes.Unavailable:
		return fmt.Errorf("%s: %w: %s", what, unavailable, st.Message())
	}
	return fmt.Errorf("%s: %s", what, st.Message())
}
