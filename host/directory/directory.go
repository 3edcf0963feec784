package directory

import (
	"fmt"
	"log/slog"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
)

// Backend names, as config's directory.backend spells them.
const (
	BackendStatic = "static"
	BackendHasura = "hasura"
)

// TestConferenceSlug is the conference every user belongs to in test mode (the
// original's TEST_MODE).
const TestConferenceSlug = "test-conference-slug"

// Named is implemented by every backend: Name returns the backend name.
type Named interface {
	Name() string
}

// Backend is the backend cfg selects: cfg.Backend, or when it is "",
// hasura if cfg.GraphQLDomain is set, else static.
func Backend(cfg config.DirectoryConfig) string {
	if cfg.Backend != "" {
		return cfg.Backend
	}
	if cfg.GraphQLDomain != "" {
		return BackendHasura
	}
	return BackendStatic
}

// New builds the directory that cfg selects: cfg.Backend "static" or "hasura";
// "" picks hasura when cfg.GraphQLDomain is set, else static. The hasura
// backend caches its answers in store, which must not be nil for it. The
// result also implements Named.
func New(cfg config.DirectoryConfig, store sdk.Store, logger *slog.Logger) (sdk.Directory, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	backend := Backend(cfg)
	switch backend {
	case BackendStatic:
		d := NewStatic(cfg)
		logger.Info("directory: static", "conferences", d.conferences, "chairs", len(d.chairs))
		return d, nil
	case BackendHasura:
		d, err := NewHasura(cfg, store, logger)
		if err != nil {
			return nil, err
		}
		logger.Info("directory: hasura", "endpoint", d.endpoint, "cache_ttl", d.ttl)
		return d, nil
	default:
		return nil, fmt.Errorf("directory: unknown backend %q (want %q or %q)", backend, BackendStatic, BackendHasura)
	}
}
