// Package sdk is what a realtime plugin imports: the plugin contract, the
// one-call entry point of a plugin binary, and (in sdktest) a test kit.
//
// # What a plugin is
//
// A plugin is a realtime feature (presence, chat, admin, ...) that the host
// loads when config.yaml enables it. The host owns every connection to the
// outside world (websockets, Redis, RabbitMQ, Hasura, Auth0); a plugin sees
// sockets, rooms, a Redis-like Store, a message bus and a directory only
// through the Host interface, and never reads the host's environment.
//
// A plugin implements Plugin; embed Base for no-op defaults:
//
//	type Plugin struct {
//		sdk.Base
//		host sdk.Host
//	}
//
//	func (p *Plugin) Describe() sdk.Descriptor {
//		return sdk.Descriptor{Name: "echo", Version: "1.0.0", Events: []string{"echo"}}
//	}
//	func (p *Plugin) Start(ctx context.Context, h sdk.Host, cfg json.RawMessage) error { p.host = h; return nil }
//	func (p *Plugin) OnEvent(ctx context.Context, e sdk.Event) ([]any, error) { ... }
//
// plugins/echo is the complete example to copy.
//
// # Lifecycle
//
//   - Describe declares the Socket.IO events, HTTP routes, bus exchanges and
//     queues. An event or route claimed by two enabled plugins stops the host
//     at start-up with an error naming both. The host calls Describe again
//     after Start and takes the exchanges and queues from that answer, so
//     they may depend on the plugin's config.
//   - Start gets the plugin's config subtree (plugins.<name>.config as JSON)
//     and the Host. Its ctx only lives for the call: start background work
//     with your own context and end it in Stop.
//   - OnConnect runs for every socket before any of its events; after a
//     restart of a subprocess plugin it is replayed for every live socket.
//   - OnEvent handles one declared event. Its return values answer the
//     client's ack callback (if the client sent one); an error goes back to
//     the host, which decides what the client sees.
//   - OnDisconnect runs once when a socket is gone.
//   - A plugin that does not need these socket calls says so in its
//     Descriptor (SkipConnect, SkipReplay, SkipDisconnect) and the host
//     does not make them: each is a message across the process boundary on
//     every connect or disconnect. A plugin that embeds Base and overrides
//     neither OnConnect nor OnDisconnect sets all three; one whose OnConnect
//     only reloads what the Store holds for a socket (a new socket has
//     nothing there) sets SkipConnect alone and still gets the replay. The
//     zero value, which is also what a plugin built before these fields
//     sends, gets every call.
//   - OnDelivery handles one message of a declared queue: nil acks it, an
//     error nacks and requeues it, an error wrapping ErrDrop nacks it without
//     requeue. "{instance}" in a queue name becomes the host's instance id.
//     If the plugin process dies while handling a delivery, the host
//     requeues it, unless the handler had already emitted (with the ctx it
//     got): then it acks it, so that subscribers do not get the emit twice
//     (ErrEmittedBeforeExit). Emit last in OnDelivery.
//   - OnDeliveries (optional, BatchDeliveryHandler) handles the deliveries
//     of a queue declared with BatchMax > 0 in batches; see below.
//   - OnHTTP serves a declared route (body up to 1 MiB).
//   - Stop runs when the host shuts down, after in-flight calls finished.
//
// Each OnConnect/OnEvent/OnDisconnect/OnDelivery/OnDeliveries call gets a ctx that ends
// after 30 s. A panic in a handler is recovered, logged with its stack, and
// reported as that call's error.
//
// # Ordering and concurrency
//
// The calls of one socket (OnConnect, its events, OnDisconnect) reach the
// plugin one at a time, in the order the client sent them; different sockets
// are handled concurrently (64 workers keyed by socket id), so a plugin must
// be safe for concurrent use, and a slow handler delays the other sockets
// that share its worker. Deliveries are ordered per queue.
//
// # Batched deliveries
//
// A plugin that writes deliveries somewhere with a per-request cost (a
// database) can take them in batches: it implements BatchDeliveryHandler
// and sets BatchMax (and BatchWait) on the queue. Describe fails when
// BatchMax is set without OnDeliveries or above Prefetch (a consumer never
// holds more than Prefetch unanswered deliveries). The batching happens on
// the plugin's side (in the plugin process, or in the in-process client),
// one goroutine per batched queue, so the host needs no settings of it: a
// batch is what is waiting for the queue, in queue order, up to BatchMax;
// when it is not full it waits for more until BatchWait after its oldest
// delivery arrived. The next batch of the queue starts once OnDeliveries
// returned. Its answer is one error per delivery (nil ack, error requeue,
// ErrDrop drop); a missing result requeues its delivery and a panic
// requeues the whole batch. Other queues keep calling OnDelivery.
//
// A host that waits for each delivery's answer before it hands over the
// next can only make batches of one; waiting for more would then only slow
// the queue down, so a queue's batches wait (BatchWait) only once a delivery
// arrived while another was unanswered. The queue names are matched after
// the host's "{instance}" replacement.
//
// Host.Emit does not wait for a round trip: emits travel on the same ordered
// stream as the answers, so the emits of one plugin reach the host in the
// order they were made, and an event's emits are applied before its ack is
// answered. An emit error (unknown socket, ...) is logged by the host, not
// returned. Join, Leave, Disconnect, Publish, Store and Directory calls wait
// for the host's answer (Publish waits for the broker's confirm).
//
// # Modes
//
// The same Plugin runs in two modes, chosen by config (plugins.<name>.mode):
//
//   - subprocess (default): the host starts the plugin as a child process
//     through hashicorp/go-plugin (plaintext gRPC over unix sockets in a
//     directory only the host's user can enter: Launch, LaunchConfig.TLS;
//     the security model is in host/pluginhost's doc) and
//     restarts it with backoff when it dies; a crash never takes the host or
//     its sockets down. Built-in plugins run from the host's own binary (it
//     re-executes itself with RT_PLUGIN_SERVE=<name>); other plugins are
//     binaries named by plugins.<name>.path whose main is sdk.Serve.
//   - inprocess: the host calls the Plugin directly (same dispatch rules,
//     no gRPC): faster, no isolation, no restart.
//
// The wire contract is proto/v1/plugin.proto: one long-lived bidirectional
// stream per plugin process carries socket calls, events, deliveries, their
// answers and the plugin's emits (batched when several are ready); the host
// services are served back once per process through go-plugin's broker.
//
// # Entry points
//
// A plugin binary's main is one line:
//
//	func main() { sdk.Serve(myplugin.New()) }
//
// A built-in plugin registers itself, and the host binary serves it when
// re-executed:
//
//	func init() { sdk.Register("echo", func() sdk.Plugin { return New() }) }
//	func main() { sdk.ServeBuiltinIfRequested(); ... }
//
// A plugin logs with Host.Logger (slog). In a subprocess the records go out as
// hclog JSON on stderr and the host re-logs them with plugin=<name>. Never
// write to stdout: it is go-plugin's handshake channel.
//
// # Testing a plugin
//
// Package sdktest has a recording fake Host (Emits, Joins, Leaves,
// Disconnects, Publishes) whose Store is a real embedded Redis and whose
// Directory is a struct of func fields, plus helpers:
//
//	h := sdktest.NewHost()
//	defer h.Close()
//	p := echo.New()
//	sdktest.Start(t, ctx, p, h, nil)
//	ack, err := sdktest.Event(t, ctx, p, sdktest.Socket("s1", "alice"), "echo", "hi")
//	emits := h.Emits()
//
// To test the real subprocess path (gRPC shims, re-exec), let the test binary
// serve plugins and use StartSubprocess:
//
//	func TestMain(m *testing.M) { sdk.ServeBuiltinIfRequested(); os.Exit(m.Run()) }
//
//	sp := sdktest.StartSubprocess(t, "echo")
//	ack, err := sp.Event(sdktest.Socket("s1", "alice"), "echo", "hi")
//	emits := sp.Host.Emits()
package sdk
