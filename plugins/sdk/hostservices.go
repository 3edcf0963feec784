package sdk

// HostServices over gRPC: the host-side server (hostServicesServer, served
// through the broker) and the plugin-side Host, Store and Directory that call
// it (remoteHost, remoteStore, remoteDirectory).

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/clowdr/realtime/plugins/sdk/proto/v1"
)

// Directory method names on the wire (DirectoryRequest.method).
const (
	dirConferenceSlugs = "ConferenceSlugs"
	dirCanSelectChat   = "CanSelectChat"
	dirCanWriteChat    = "CanWriteChat"
	dirRegistrant      = "Registrant"
	dirCanAccessEvent  = "CanAccessEvent"
	dirIsEventChair    = "IsEventChair"
	// dirChatDetails was added after the others: a host without it answers
	// Unimplemented, which the plugin sees as an error.
	dirChatDetails = "ChatDetails"
	// dirMessageModerators came later still; the same applies.
	dirMessageModerators = "MessageModerators"
)

// registrantResult is the JSON result of Directory "Registrant".
type registrantResult struct {
	Registrant Registrant `json:"registrant"`
	Found      bool       `json:"found"`
}

// chatDetailsResult is the JSON result of Directory "ChatDetails".
type chatDetailsResult struct {
	Details ChatDetails `json:"details"`
	Found   bool        `json:"found"`
}

// messageModeratorsResult is the JSON result of Directory "MessageModerators".
type messageModeratorsResult struct {
	Moderators ConferenceModerators `json:"moderators"`
	Found      bool                 `json:"found"`
}

// ---- host side ----

type hostServicesServer struct {
	pluginv1.UnimplementedHostServicesServer
	host HostServices
}

var _ pluginv1.HostServicesServer = (*hostServicesServer)(nil)

func (h *hostServicesServer) StoreDo(ctx context.Context, req *pluginv1.StoreDoRequest) (*pluginv1.Value, error) {
	if len(req.GetArgs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "store: empty command")
	}
	return replyToProto(h.host.Store().Do(ctx, bytesToAny(req.GetArgs())...)), nil
}

func (h *hostServicesServer) StorePipeline(ctx context.Context, req *pluginv1.StorePipelineRequest) (*pluginv1.StorePipelineResponse, error) {
	cmds := make([][]any, len(req.GetCommands()))
	for i, c := range req.GetCommands() {
		if len(c.GetArgs()) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "store: empty command %d in pipeline", i)
		}
		cmds[i] = bytesToAny(c.GetArgs())
	}
	replies, err := h.host.Store().Pipeline(ctx, cmds)
	if err != nil && len(replies) != len(cmds) {
		return nil, toStatus(err)
	}
	out := &pluginv1.StorePipelineResponse{Replies: make([]*pluginv1.Value, len(replies))}
	for i, r := range replies {
		out.Replies[i] = replyToProto(r.Value, r.Err)
	}
	return out, nil
}

func (h *hostServicesServer) StoreEval(ctx context.Context, req *pluginv1.StoreEvalRequest) (*pluginv1.Value, error) {
	return replyToProto(h.host.Store().Eval(ctx, req.GetScript(), req.GetKeys(), bytesToAny(req.GetArgs())...)), nil
}

func (h *hostServicesServer) Join(ctx context.Context, req *pluginv1.RoomRequest) (*pluginv1.Empty, error) {
	return &pluginv1.Empty{}, toStatus(h.host.Join(ctx, req.GetSocketId(), req.GetRoom()))
}

func (h *hostServicesServer) Leave(ctx context.Context, req *pluginv1.RoomRequest) (*pluginv1.Empty, error) {
	return &pluginv1.Empty{}, toStatus(h.host.Leave(ctx, req.GetSocketId(), req.GetRoom()))
}

func (h *hostServicesServer) Disconnect(ctx context.Context, req *pluginv1.DisconnectRequest) (*pluginv1.Empty, error) {
	return &pluginv1.Empty{}, toStatus(h.host.Disconnect(ctx, req.GetSocketId()))
}

func (h *hostServicesServer) Publish(ctx context.Context, req *pluginv1.PublishRequest) (*pluginv1.Empty, error) {
	return &pluginv1.Empty{}, toStatus(h.host.Publish(ctx, req.GetExchange(), req.GetRoutingKey(), req.GetBody()))
}

func (h *hostServicesServer) Directory(ctx context.Context, req *pluginv1.DirectoryRequest) (*pluginv1.DirectoryResponse, error) {
	res, err := callDirectory(ctx, h.host.Directory(), req.GetMethod(), req.GetArgs())
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "directory %s: encode result: %v", req.GetMethod(), err)
	}
	return &pluginv1.DirectoryResponse{Result: b}, nil
}

// decodeArgs decodes a JSON array into the pointers in dst, which must match
// its length.
func decodeArgs(method string, raw []byte, dst ...any) error {
	var arr []json.RawMessage
	if err := json.Unmarshal(raw, &arr); err != nil {
		return status.Errorf(codes.InvalidArgument, "directory %s: args: %v", method, err)
	}
	if len(arr) != len(dst) {
		return status.Errorf(codes.InvalidArgument, "directory %s: want %d args, got %d", method, len(dst), len(arr))
	}
	for i, a := range arr {
		if err := json.Unmarshal(a, dst[i]); err != nil {
			return status.Errorf(codes.InvalidArgument, "directory %s: arg %d: %v", method, i, err)
		}
	}
	return nil
}

// callDirectory runs one Directory method by name; errors are gRPC statuses.
func callDirectory(ctx context.Context, dir Directory, method string, raw []byte) (any, error) {
	if dir == nil {
		return nil, status.Error(codes.Unavailable, "directory: not configured")
	}
	var (
		s    Socket
		a, b string
		res  any
		err  error
	)
	switch method {
	case dirConferenceSlugs:
		if err := decodeArgs(method, raw, &a); err != nil {
			return nil, err
		}
		res, err = dir.ConferenceSlugs(ctx, a)
	case dirCanSelectChat:
		if err := decodeArgs(method, raw, &s, &a); err != nil {
			return nil, err
		}
		res, err = dir.CanSelectChat(ctx, s, a)
	case dirCanWriteChat:
		if err := decodeArgs(method, raw, &s, &a, &b); err != nil {
			return nil, err
		}
		res, err = dir.CanWriteChat(ctx, s, a, b)
	case dirRegistrant:
		if err := decodeArgs(method, raw, &a); err != nil {
			return nil, err
		}
		var r registrantResult
		r.Registrant, r.Found, err = dir.Registrant(ctx, a)
		res = r
	case dirCanAccessEvent:
		if err := decodeArgs(method, raw, &s, &a); err != nil {
			return nil, err
		}
		res, err = dir.CanAccessEvent(ctx, s, a)
	case dirIsEventChair:
		if err := decodeArgs(method, raw, &s, &a); err != nil {
			return nil, err
		}
		res, err = dir.IsEventChair(ctx, s, a)
	case dirChatDetails:
		if err := decodeArgs(method, raw, &a); err != nil {
			return nil, err
		}
		var r chatDetailsResult
		r.Details, r.Found, err = dir.ChatDetails(ctx, a)
		res = r
	case dirMessageModerators:
		if err := decodeArgs(method, raw, &a); err != nil {
			return nil, err
		}
		var r messageModeratorsResult
		r.Moderators, r.Found, err = dir.MessageModerators(ctx, a)
		res = r
	default:
		return nil, status.Errorf(codes.Unimplemented, "directory: unknown method %q", method)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return res, nil
}

// ---- plugin side ----

// remoteHost is the Host a subprocess plugin gets: Emit travels on the
// Channel stream (ordered, no round trip), everything else is a unary call on
// the broker connection.
type remoteHost struct {
	client     pluginv1.HostServicesClient
	srv        *grpcServer
	instanceID string
}

var _ Host = (*remoteHost)(nil)

func (h *remoteHost) Emit(ctx context.Context, to Target, event string, args ...any) error {
	raw, err := MarshalArgs(args)
	if err != nil {
		return fmt.Errorf("emit %q: %w", event, err)
	}
	seq, _ := ctx.Value(deliverySeqKey{}).(uint64)
	m := &pluginv1.PluginMessage{Msg: &pluginv1.PluginMessage_Emit{Emit: &pluginv1.Emit{
		TargetKind: targetKindToProto(to.Kind), TargetId: to.ID, Event: event, Args: rawToBytes(raw), DeliverySeq: seq,
	}}}
	if err := h.srv.enqueue(ctx, m); err != nil {
		return fmt.Errorf("emit %q: %w", event, err)
	}
	h.srv.emits.Add(1)
	return nil
}

// Join, Leave and Disconnect first wait for the emits already in the stream
// (grpcServer.barrier), so they keep their order with the plugin's emits.

func (h *remoteHost) Join(ctx context.Context, socketID, room string) error {
	if err := h.srv.barrier(ctx); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	_, err := h.client.Join(ctx, &pluginv1.RoomRequest{SocketId: socketID, Room: room})
	return fromStatus("join", err, ErrHostUnavailable)
}

func (h *remoteHost) Leave(ctx context.Context, socketID, room string) error {
	if err := h.srv.barrier(ctx); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	_, err := h.client.Leave(ctx, &pluginv1.RoomRequest{SocketId: socketID, Room: room})
	return fromStatus("leave", err, ErrHostUnavailable)
}

func (h *remoteHost) Disconnect(ctx context.Context, socketID string) error {
	if err := h.srv.barrier(ctx); err != nil {
		return fmt.Errorf("disconnect: %w", err)
	}
	_, err := h.client.Disconnect(ctx, &pluginv1.DisconnectRequest{SocketId: socketID})
	return fromStatus("disconnect", err, ErrHostUnavailable)
}

func (h *remoteHost) Store() Store { return remoteStore{h.client} }

func (h *remoteHost) Publish(ctx context.Context, exchange, routingKey string, body []byte) error {
	_, err := h.client.Publish(ctx, &pluginv1.PublishRequest{Exchange: exchange, RoutingKey: routingKey, Body: body})
	return fromStatus("publish", err, ErrHostUnavailable)
}

func (h *remoteHost) Directory() Directory { return remoteDirectory{h.client} }
func (h *remoteHost) Logger() *slog.Logger { return h.srv.logger }
func (h *remoteHost) InstanceID() string   { return h.instanceID }

type remoteStore struct{ client pluginv1.HostServicesClient }

var _ Store = remoteStore{}

func (s remoteStore) Do(ctx context.Context, args ...any) (any, error) {
	v, err := s.client.StoreDo(ctx, &pluginv1.StoreDoRequest{Args: redisArgs(args)})
	if err != nil {
		return nil, fromStatus("store", err, ErrHostUnavailable)
	}
	return replyFromProto(v)
}

func (s remoteStore) Pipeline(ctx context.Context, cmds [][]any) ([]Reply, error) {
	req := &pluginv1.StorePipelineRequest{Commands: make([]*pluginv1.Command, len(cmds))}
	for i, c := range cmds {
		req.Commands[i] = &pluginv1.Command{Args: redisArgs(c)}
	}
	resp, err := s.client.StorePipeline(ctx, req)
	if err != nil {
		return nil, fromStatus("store pipeline", err, ErrHostUnavailable)
	}
	out := make([]Reply, len(resp.GetReplies()))
	for i, r := range resp.GetReplies() {
		out[i].Value, out[i].Err = replyFromProto(r)
	}
	return out, nil
}

func (s remoteStore) Eval(ctx context.Context, script string, keys []string, args ...any) (any, error) {
	v, err := s.client.StoreEval(ctx, &pluginv1.StoreEvalRequest{Script: script, Keys: keys, Args: redisArgs(args)})
	if err != nil {
		return nil, fromStatus("store eval", err, ErrHostUnavailable)
	}
	return replyFromProto(v)
}

type remoteDirectory struct{ client pluginv1.HostServicesClient }

var _ Directory = remoteDirectory{}

func (d remoteDirectory) call(ctx context.Context, method string, result any, args ...any) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("directory %s: %w", method, err)
	}
	resp, err := d.client.Directory(ctx, &pluginv1.DirectoryRequest{Method: method, Args: raw})
	if err != nil {
		return fromStatus("directory "+method, err, ErrHostUnavailable)
	}
	if err := json.Unmarshal(resp.GetResult(), result); err != nil {
		return fmt.Errorf("directory %s: decode result: %w", method, err)
	}
	return nil
}

func (d remoteDirectory) ConferenceSlugs(ctx context.Context, userID string) (slugs []string, err error) {
	err = d.call(ctx, dirConferenceSlugs, &slugs, userID)
	return slugs, err
}

func (d remoteDirectory) CanSelectChat(ctx context.Context, s Socket, chatID string) (ok bool, err error) {
	err = d.call(ctx, dirCanSelectChat, &ok, s, chatID)
	return ok, err
}

func (d remoteDirectory) CanWriteChat(ctx context.Context, s Socket, chatID, senderRegistrantID string) (ok bool, err error) {
	err = d.call(ctx, dirCanWriteChat, &ok, s, chatID, senderRegistrantID)
	return ok, err
}

func (d remoteDirectory) Registrant(ctx context.Context, registrantID string) (Registrant, bool, error) {
	var r registrantResult
	err := d.call(ctx, dirRegistrant, &r, registrantID)
	return r.Registrant, r.Found, err
}

func (d remoteDirectory) CanAccessEvent(ctx context.Context, s Socket, eventID string) (ok bool, err error) {
	err = d.call(ctx, dirCanAccessEvent, &ok, s, eventID)
	return ok, err
}

func (d remoteDirectory) IsEventChair(ctx context.Context, s Socket, eventID string) (ok bool, err error) {
	err = d.call(ctx, dirIsEventChair, &ok, s, eventID)
	return ok, err
}

func (d remoteDirectory) ChatDetails(ctx context.Context, chatID string) (ChatDetails, bool, error) {
	var r chatDetailsResult
	err := d.call(ctx, dirChatDetails, &r, chatID)
	return r.Details, r.Found, err
}

func (d remoteDirectory) MessageModerators(ctx context.Context, messageSID string) (ConferenceModerators, bool, error) {
	var r messageModeratorsResult
	err := d.call(ctx, dirMessageModerators, &r, messageSID)
	return r.Moderators, r.Found, err
}

// deliverySeqKey marks the ctx of an OnDelivery call with the delivery's
// seq, so its emits name it (see ErrEmittedBeforeExit).
type deliverySeqKey struct{}
