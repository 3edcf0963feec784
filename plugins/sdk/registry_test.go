package sdk

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
)

var registryRun atomic.Int64 // names must be fresh under -count=N

func TestRegistry(t *testing.T) {
	n := registryRun.Add(1)
	zz, aa := fmt.Sprintf("zz-test-%d", n), fmt.Sprintf("aa-test-%d", n)
	Register(zz, func() Plugin { return nil })
	Register(aa, func() Plugin { return nil })
	names := Registered()
	if !slices.IsSorted(names) || !slices.Contains(names, zz) || !slices.Contains(names, aa) {
		t.Errorf("Registered = %v", names)
	}
	if _, ok := Lookup(aa); !ok {
		t.Error("Lookup(aa-test) failed")
	}
	if _, ok := Lookup("missing"); ok {
		t.Error("Lookup(missing) succeeded")
	}
	for _, tt := range []struct {
		name string
		f    func() Plugin
	}{{zz, func() Plugin { return nil }}, {"", func() Plugin { return nil }}, {"x-test", nil}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", tt.name)
				}
			}()
			Register(tt.name, tt.f)
		}()
	}
}

func TestServeBuiltinIfRequestedNoop(t *testing.T) {
	t.Setenv(ServeEnv, "aa-test")
	t.Setenv(Handshake.MagicCookieKey, "wrong")
	ServeBuiltinIfRequested() // must return: the cookie does not match
	t.Setenv(ServeEnv, "")
	ServeBuiltinIfRequested()
}
