package bus

import (
	"context"
	"fmt"
	"testing"

	"github.com/clowdr/realtime/host/config"

	"github.com/clowdr/realtime/plugins/sdk"
)

// benchPublish measures confirmed publishes from many goroutines at once
// (b.SetParallelism(parallelism) per GOMAXPROCS) to one durable-less topic exchange
// with one bound queue that a consumer drains.
func benchPublish(b *testing.B, bus Bus, parallelism int) {
	ctx := context.Background()
	ex := uniq("bench")
	if err := bus.DeclareExchange(ctx, sdk.Exchange{Name: ex}); err != nil {
		b.Fatal(err)
	}
	if bus.Kind() == "rabbitmq" {
		// The memory bus would outrun a consumer and fill its bounded
		// queue; it publishes to an exchange without queues.
		stop, err := bus.Consume(ctx, sdk.Queue{Name: uniq("benchq"), Exchange: ex, Bindings: []string{"*"}, AutoDelete: true, Prefetch: 500},
			func(context.Context, sdk.Delivery) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		defer stop()
	}
	body := make([]byte, 256)
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bus.Publish(ctx, ex, "chat", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPublishParallelMemory(b *testing.B) {
	bus := NewMemory(nil)
	defer bus.Close()
	for _, p := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", p), func(b *testing.B) { benchPublish(b, bus, p) })
	}
}

func BenchmarkPublishParallelRabbit(b *testing.B) {
	bus, err := NewRabbit(context.Background(), rabbitURL(b), config.BusConfig{}, uniq("bench"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	waitReady(b, bus)
	for _, p := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", p), func(b *testing.B) { benchPublish(b, bus, p) })
	}
}
