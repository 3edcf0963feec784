// Package bus is the host's message bus: AMQP 0.9.1 exchanges, queues and
// bindings, with a RabbitMQ backend for production and an in-memory backend
// with the same semantics for local runs and tests. One contract test suite
// (runContractTests) runs against both.
//
// # Backends and URL resolution
//
// New picks the backend from config.BusConfig (see ResolveURL):
//
//   - URL (env CLOUDAMQP_URL) when set;
//   - else, when Username is set, amqp://Username[:Password]@Host:Port/ with
//     the credentials URL-escaped, Host defaulting to localhost and Port to
//     5672 (the original service always used localhost:5672);
//   - else the in-memory bus.
//
// "{instance}" in queue names is replaced by the host's instance id, for
// queues each instance needs its own copy of.
//
// # RabbitMQ backend
//
// Two connections, named "realtime <instance> pub" and "realtime <instance>
// sub" (visible in the management UI and rabbitmqctl list_connections), with
// a 10 s heartbeat. Each is owned by a manager goroutine that redials with
// backoff (100 ms doubling to 2 s, with jitter) after any loss — broker
// restart, rabbitmqctl close_connection, network failure — forever, until
// Close. amqp091-go's built-in recovery is deliberately not used: the
// manual loop has no "gave up" state to handle, and each consumer always
// acks on the very channel that delivered.
//
// New never fails because the broker is down: it logs, retries in the
// background, Ready reports the error, DeclareExchange and Consume record
// what they are asked and apply it once connected, and Publish fails at once
// with ErrNotConnected.
//
// After every reconnect the bus redeclares the exchanges it was asked to
// declare, and every consumer redeclares its queue and bindings, sets its QoS
// and consumes again; callers do nothing.
//
// Publishing uses a pool of confirm-mode channels, each owned by one worker
// goroutine. A worker writes a publish and immediately hands its
// DeferredConfirmation back to the caller, so many publishes are in flight
// per channel and concurrent callers never wait for each other's round trips.
// Messages are persistent (delivery mode 2) and published without the
// mandatory flag, so a message no queue is bound for is confirmed and
// dropped, as in the original service.
//
// # Delivery guarantees
//
// Publish returns nil only after the broker confirmed the message. If the
// broker nacks, the publish times out (config publish_timeout, default 5 s,
// or ctx), or the connection drops before the confirm, Publish returns an
// error and the caller must treat the message as not sent (it may still have
// been routed: at-least-once). Publishes are not retried across reconnects.
// A confirmed message on a durable queue survives broker restarts.
//
// Consumers use manual acks: a delivery is acked after its handler returns
// nil, nacked with requeue after an error (the consumer then pauses 50 ms so
// a failing handler does not spin), and nacked without requeue when the
// error wraps sdk.ErrDrop or the handler panics. A delivery whose ack did not
// reach the broker (connection lost) is delivered again with Redelivered
// set: delivery is at-least-once, so handlers must be idempotent.
//
// # Ordering
//
// Each Consume call runs ONE goroutine that handles its queue's deliveries
// one at a time, in queue order; messages published one after another by
// one caller (each Publish returning before the next) reach a queue in that
// order. Chat distribution relies on this per-chat order. Several Consume
// calls on one queue are competing consumers (round-robin up to each
// prefetch) and give up that order. A requeued delivery comes back after the
// deliveries already prefetched, as in RabbitMQ.
//
// # Memory backend
//
// Same semantics in-process: topic ('*' one word, '#' zero or more words,
// words split on '.'), direct and fanout exchanges, the default exchange ""
// routing to the queue named by the key, queues with bindings, competing
// consumers with prefetch, nack+requeue with Redelivered, auto-delete
// queues. Publish "confirms" once the message is enqueued on every bound
// queue; a queue holds at most DefaultMaxQueueLength ready messages, beyond
// which Publish fails with ErrQueueFull. Nothing survives the process.
//
// # Metrics
//
// Both backends implement MetricsRegisterer: publishes_total{result},
// publish_confirm_seconds, deliveries_total{queue,result} and
// connection_up{role}, all prefixed realtime_bus_ and labelled backend.
package bus
