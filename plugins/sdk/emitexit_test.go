package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func init() {
	sdk.Register("emitexit", func() sdk.Plugin { return &emitExitPlugin{} })
}

// emitExitPlugin's OnDelivery emits first when the body is "emit", then
// hangs until the test kills the process.
type emitExitPlugin struct {
	sdk.Base
	host sdk.Host
}

func (p *emitExitPlugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{Name: "emitexit", Queues: []sdk.Queue{{Name: "q"}}, SkipConnect: true, SkipReplay: true, SkipDisconnect: true}
}

func (p *emitExitPlugin) Start(_ context.Context, h sdk.Host, _ json.RawMessage) error {
	p.host = h
	return nil
}

func (p *emitExitPlugin) OnDelivery(ctx context.Context, d sdk.Delivery) error {
	if string(d.Body) == "emit" {
		if err := p.host.Emit(ctx, sdk.RoomTarget("r"), "delivered", "x"); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestDeliveryEmittedBeforeExit: a plugin that dies while handling a
// delivery answers ErrEmittedBeforeExit if the handler had emitted (the host
// acks it: a redelivery would emit twice), plain ErrPluginUnavailable if not.
func TestDeliveryEmittedBeforeExit(t *testing.T) {
	sp := sdktest.StartSubprocess(t, "emitexit")
	emitted := deliverAsync(t, sp.Client, "q", "emit")
	// Another queue: handled concurrently, or queued behind "emit" if both
	// queues share a dispatch worker; either way it has not emitted.
	quiet := deliverAsync(t, sp.Client, "q2", "quiet")
	deadline := time.Now().Add(10 * time.Second)
	for len(sp.Host.Emits()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the plugin never emitted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := syscall.Kill(sp.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := answer(t, emitted); !errors.Is(err, sdk.ErrEmittedBeforeExit) || !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Errorf("delivery that emitted: err = %v, want ErrEmittedBeforeExit", err)
	}
	if err := answer(t, quiet); !errors.Is(err, sdk.ErrPluginUnavailable) || errors.Is(err, sdk.ErrEmittedBeforeExit) {
		t.Errorf("delivery that did not emit: err = %v, want only ErrPluginUnavailable", err)
	}
}
