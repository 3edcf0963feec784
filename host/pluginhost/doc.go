// Package pluginhost is the host side of the plugin system: it starts the
// enabled plugins, supervises them, and routes sockets, events, HTTP requests
// and bus deliveries to them. The host application calls a Manager; plugins
// reach the host through the Services it is given.
//
// # Starting
//
// New checks the configuration (an enabled plugin must be a registered
// built-in or have a path; mode is subprocess or inprocess). Start launches
// every enabled plugin, asks each for its Descriptor, fails if an event or a
// route is claimed twice (naming both plugins), declares the exchanges, calls
// each plugin's Start, then starts a consumer for every declared queue
// ("{instance}" in its name becomes Services.InstanceID()). Manager methods
// other than Status, Ready and Describe are meant to be called after Start
// returned.
//
// # Subprocess plugins
//
// A built-in plugin runs from the host's own executable (os.Executable),
// re-executed with RT_PLUGIN_SERVE=<name>; the binary's main (and TestMain of
// tests that start plugins) must call sdk.ServeBuiltinIfRequested first. An
// external plugin is the executable at plugins.<name>.path. Either way the
// process is started through go-plugin with: gRPC only, no TLS unless
// plugins.<name>.tls (see below), a 10 s start timeout, a fresh exec.Cmd and
// go-plugin client for every start (go-plugin#306), and SkipHostEnv: the
// plugin's environment is only PATH, HOME, TMPDIR, GOCOVERDIR, LANG and
// RT_PLUGIN_SERVE (plus go-plugin's handshake variables,
// PLUGIN_UNIX_SOCKET_DIR and, with TLS, PLUGIN_CLIENT_CERT), so plugins
// never see the host's secrets. The plugin's hclog output is re-logged through the Services
// logger with plugin=<name> at its own level; go-plugin's stdio chatter is
// dropped.
//
// # Plugin sockets: who can connect
//
// Host and plugin talk plaintext gRPC over two unix sockets per process: the
// plugin's listener (host -> plugin calls) and the host's broker listener
// (plugin -> host services: store, bus, emits). Both are created in a
// directory only the host's user can enter: Start makes one per Manager,
// $TMPDIR/rt-plugins-<pid>-*, mode 0700 whatever the umask (it is made only when a
// plugin runs as a subprocess); go-plugin makes one more 0700 directory
// inside it per process (sdk.Launch passes it a RunnerFunc, the only way to
// get that from go-plugin), tells the plugin to listen there
// (PLUGIN_UNIX_SOCKET_DIR) and removes it when the process is killed; Stop
// removes the whole directory once every process is gone (with the sockets
// of processes that died without a kill). Describe of a plugin that is not
// running (before Start) uses go-plugin's per-process directory directly in
// $TMPDIR. If the host is SIGKILLed, its directory stays in $TMPDIR (stale
// socket files, nobody listening) until the next host of the same user
// starts: directories are named rt-plugins-<pid>-*, and Start removes those
// whose pid no longer runs (hosts that share a $TMPDIR must share a pid
// namespace, or give each host its own TMPDIR).
//
// So only processes of the host's own user (and root) can reach a plugin's
// or the host's socket: Linux checks the search permission of every
// directory on the path before connect(2). That is enough because those
// processes can already take more than the sockets give: read the host's
// environment (/proc/<pid>/environ, with the Redis, RabbitMQ and Auth0
// credentials) and files, signal it, and ptrace it or its plugins (unless
// Yama's ptrace_scope restricts that to ancestors). TLS between two
// processes of one user protects nothing they cannot take anyway; a process
// of another user (a compromised service next to this one) gets EACCES.
// The handshake cookie stays: it only keeps the binary from being served by
// accident. What this gives up by default is go-plugin's AutoMTLS, which
// encrypts and authenticates every message (~6 % of host CPU in the
// presence benchmark, plus the same in each plugin, plus a copy per hop).
// plugins.<name>.tls=true turns it back on for one subprocess plugin (and
// its restarts): both sockets, still in the private directory, then carry
// TLS with throwaway certificates by which each end authenticates the other,
// for deployments that do not want to rely on the directory's permissions
// alone; it costs (BENCHMARKS.md) a plugin call p50 of 127-133 µs instead of
// 101-105 µs and 14 % of the 32-socket throughput. $TMPDIR must be at most
// sdk.MaxSocketDirLen (69) bytes long: unix socket paths are limited to 107.
//
// # Supervision
//
// A subprocess plugin that dies (its process exits or its stream breaks) is
// restarted: after 100 ms, doubling up to 5 s between failed attempts; the
// delay goes back to 100 ms once a process stayed up 30 s. While it is down,
// Status shows "restarting" (or "failed" after a failed attempt, with
// LastError), Ready returns an error, realtime_plugin_up is 0; the log shows
// an error with the plugin's name, pid and exit status. After a restart,
// OnConnect is replayed for every socket of Services.LiveSockets (unless the
// plugin set SkipReplay) before any new event reaches the new process;
// realtime_plugin_restarts_total counts
// restarts and realtime_plugin_downtime_seconds observes, per restart, the
// time from the death to the new process serving. In-process plugins are not supervised (they cannot die without
// the host).
//
// # Socket calls
//
// Connect and Disconnect queue OnConnect and OnDisconnect on each plugin's
// stream and return: the gateway waits for no plugin before it answers the
// CONNECT (a socket's later events queue behind its OnConnect). A plugin
// gets them only if it wants them (sdk.Descriptor SkipConnect, SkipReplay,
// SkipDisconnect, read from its first Describe of each process); one that
// wants neither costs a connect one atomic load. OnDisconnect goes to a
// plugin that takes OnConnect only for the sockets this process got (or was
// replayed) OnConnect for; to one that skips OnConnect, for every socket
// that leaves while it runs.
//
// # While a plugin is down
//
// Sockets stay connected. Events for the plugin are dropped, not buffered
// (a replayed backlog would reach a plugin that lost its state, and the
// client's ack tells it the event failed): done gets an error wrapping
// sdk.ErrPluginUnavailable, the drop is logged at debug and counted in
// realtime_plugin_events_dropped_total{plugin} and
// realtime_plugin_events_total{plugin,result="dropped"}. The same happens when
// the plugin's queue is full (sdk.ErrOverloaded). OnConnect and OnDisconnect
// are not sent (the replay after the restart covers the sockets that are
// still there). A bus delivery waits up to 10 s for the plugin to come back,
// then is nacked and requeued. HTTP requests get 503.
//
// # Draining events (before the sockets close)
//
// DrainEvents, called at shutdown before the sockets are closed, refuses new
// events like a plugin that is down (done gets an error wrapping
// sdk.ErrPluginUnavailable, counted as dropped) and waits, bounded by its
// ctx, until every event already handed to a plugin has been answered: done
// has returned, after the handler returned and its Host.Emit calls were
// applied (subprocess emits travel before the answer on the ordered stream;
// in-process ones are synchronous). So a client whose socket closes next
// has already been sent its acks. The cost per event is one shared atomic
// counter and one atomic flag read.
//
// # Stopping
//
// Stop stops the consumers, refuses new events, waits for in-flight calls
// (bounded by its ctx), calls each plugin's Stop and then kills its process
// (each kill bounded by 5 s: go-plugin's Kill can hang, terraform#38939), all
// plugins in parallel. No plugin process outlives Stop; a plugin whose host
// dies without Stop exits by itself within a second (it watches its parent).
//
// # Metrics
//
// realtime_plugin_up{plugin}, realtime_plugin_restarts_total{plugin},
// realtime_plugin_downtime_seconds{plugin} (process death -> replacement
// serving), realtime_plugin_event_seconds{plugin} (event handed over -> answer),
// realtime_plugin_events_total{plugin,result} (ok, error, dropped) and
// realtime_plugin_events_dropped_total{plugin}.
package pluginhost
