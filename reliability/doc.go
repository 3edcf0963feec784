// Package reliability is the fault suite of the realtime service: Go
// integration tests (in the _test.go files of this package) that run the
// realtime binary as a black box and break what it depends on — plugin
// processes, whole instances, Redis, RabbitMQ connections, the JWKS endpoint,
// slow or hostile clients — and check what the service promises. Each test
// starts what it breaks (its own redis-server on a free port, its own
// RabbitMQ vhost, its own server processes), so tests never disturb each
// other. RELIABILITY.md at the repository root lists every fault, the promise
// and what the tests saw. The package also holds the fuzz targets of the
// wire decoders, with their seed corpus in testdata/fuzz.
package reliability
