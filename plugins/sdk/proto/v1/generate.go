// Package pluginv1 is the generated gRPC code of the host<->plugin contract
// (plugin.proto). Regenerate with `go generate ./plugins/sdk/proto/v1` after
// installing protoc, protoc-gen-go@v1.36.12 and protoc-gen-go-grpc@v1.6.2.
package pluginv1

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugin.proto
