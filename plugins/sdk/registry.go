package sdk

import (
	"fmt"
	"slices"
	"sync"
)

// ServeEnv is the environment variable that makes a host binary serve one of
// its registered (built-in) plugins instead of running: the host re-executes
// itself with RT_PLUGIN_SERVE=<name> (and go-plugin's magic cookie).
const ServeEnv = "RT_PLUGIN_SERVE"

var registry = struct {
	sync.RWMutex
	m map[string]func() Plugin
}{m: map[string]func() Plugin{}}

// Register makes a built-in plugin available under name. Call it from an
// init() of the plugin's package; the host binary imports the package.
// Register panics when name is empty, factory is nil or name is taken: those
// are programming errors found at start-up, like database/sql.Register.
func Register(name string, factory func() Plugin) {
	if name == "" || factory == nil {
		panic("sdk.Register: empty name or nil factory")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic(fmt.Sprintf("sdk.Register: plugin %q registered twice", name))
	}
	registry.m[name] = factory
}

// Registered lists the registered plugin names, sorted.
func Registered() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup returns the factory registered under name.
func Lookup(name string) (factory func() Plugin, ok bool) {
	registry.RLock()
	defer registry.RUnlock()
	factory, ok = registry.m[name]
	return factory, ok
}
