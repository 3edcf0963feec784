package bus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
)

// The RabbitMQ tests run in a fresh vhost per test run (created on first
// use, deleted by TestMain), so they never disturb other users of the
// broker. Without a usable rabbitmqctl they fall back to the default vhost
// with unique names.
var (
	vhostOnce sync.Once
	vhostName string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if vhostName != "" {
		if out, err := rabbitmqctl("delete_vhost", vhostName); err != nil {
			fmt.Fprintf(os.Stderr, "bus tests: delete vhost %s: %v\n%s", vhostName, err, out)
		}
	}
	os.Exit(code)
}

func rabbitmqctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
}

// rabbitURL returns the test broker's URL in this run's vhost (or the base
// URL in the fallback), skipping or failing like testenv when RabbitMQ is
// absent.
func rabbitURL(t testing.TB) string {
	t.Helper()
	base := testenv.AMQPURL(t)
	vhostOnce.Do(func() {
		name := strings.ReplaceAll(uniq("rt-test"), ".", "-")
		if out, err := rabbitmqctl("add_vhost", name); err != nil {
			t.Logf("rabbitmqctl add_vhost failed (%v: %s); using the default vhost with unique names", err, bytes.TrimSpace(out))
			return
		}
		vhostName = name
		if out, err := rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*"); err != nil {
			t.Logf("rabbitmqctl set_permissions: %v: %s", err, out)
		}
	})
	if vhostName == "" {
		return base
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", base, err)
	}
	u.Path = "/" + vhostName
	return u.String()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newTestRabbit returns a connected RabbitMQ bus closed at cleanup.
func newTestRabbit(t *testing.T, instanceID string) Bus {
	t.Helper()
	b, err := NewRabbit(context.Background(), rabbitURL(t), config.BusConfig{PublishTimeout: 5 * time.Second}, instanceID, testLogger(t))
	if err != nil {
		t.Fatalf("NewRabbit: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	waitReady(t, b)
	return b
}

func waitReady(t testing.TB, b Bus) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for b.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("bus not ready: %v", b.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRabbitContract(t *testing.T) {
	rabbitURL(t)
	runContractTests(t, func(t *testing.T) Bus { return newTestRabbit(t, uniq("contract")) })
}

// closeConnections closes the broker side of the bus's connections: every
// connection of this run's vhost, or, in the fallback, those whose
// connection name carries instanceID.
func closeConnections(t *testing.T, instanceID string) {
	t.Helper()
	if vhostName != "" {
		if out, err := rabbitmqctl("close_all_connections", "--vhost", vhostName, "fault test"); err != nil {
			t.Fatalf("close_all_connections: %v: %s", err, out)
		}
		return
	}
	out, err := rabbitmqctl("-q", "list_connections", "--no-table-headers", "name", "client_properties")
	if err != nil {
		testenv.Unavailable(t, "rabbitmqctl list_connections: %v: %s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "realtime "+instanceID+" ") {
			continue
		}
		name, _, _ := strings.Cut(line, "\t")
		if out, err := rabbitmqctl("close_connection", name, "fault test"); err != nil {
			t.Logf("close_connection %s: %v: %s", name, err, out)
		}
	}
}

// TestRabbitSurvivesConnectionClose publishes from several goroutines while
// the broker closes the bus's connections a few times. Every confirmed
// message must reach the consumer, and a message handled twice must be a
// redelivery (never a duplicate delivery of an acked message).
func TestRabbitSurvivesConnectionClose(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		testenv.Unavailable(t, "rabbitmqctl is not installed")
	}
	id := uniq("fault")
	b := newTestRabbit(t, id)
	ex := uniq("faultex")
	mustDeclare(t, b, sdk.Exchange{Name: ex, Kind: "topic", Durable: true})

	type seenRec struct{ deliveries, firstDeliveries int }
	var mu sync.Mutex
	seen := map[string]*seenRec{}
	signal := make(chan struct{}, 1)
	mustConsume(t, b, sdk.Queue{Name: uniq("faultq"), Exchange: ex, Bindings: []string{"*"}, Durable: true, Prefetch: 20}, func(_ context.Context, d sdk.Delivery) error {
		mu.Lock()
		r := seen[string(d.Body)]
		if r == nil {
			r = &seenRec{}
			seen[string(d.Body)] = r
		}
		r.deliveries++
		if !d.Redelivered {
			r.firstDeliveries++
		}
		mu.Unlock()
		select {
		case signal <- struct{}{}:
		default:
		}
		return nil
	})

	var (
		confirmedMu sync.Mutex
		confirmed   []string
		failed      atomic.Int64
		stopPub     = make(chan struct{})
		wg          sync.WaitGroup
	)
	confirmedCount := func() int {
		confirmedMu.Lock()
		defer confirmedMu.Unlock()
		return len(confirmed)
	}
	const publishers = 4
	for g := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopPub:
					return
				default:
				}
				body := fmt.Sprintf("g%d-%d", g, i)
				if err := b.Publish(context.Background(), ex, "chat", []byte(body)); err != nil {
					failed.Add(1)
					if errors.Is(err, ErrNotConnected) {
						time.Sleep(5 * time.Millisecond)
					}
					continue
				}
				confirmedMu.Lock()
				confirmed = append(confirmed, body)
				confirmedMu.Unlock()
			}
		}()
	}
	waitConfirmed := func(n int) {
		deadline := time.Now().Add(waitLimit)
		for confirmedCount() < n {
			if time.Now().After(deadline) {
				close(stopPub)
				wg.Wait()
				t.Fatalf("only %d confirmed publishes, want %d (failed %d, ready: %v)", confirmedCount(), n, failed.Load(), b.Ready())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitConfirmed(100)
	const closes = 3
	for range closes {
		closeConnections(t, id)
		waitConfirmed(confirmedCount() + 100)
	}
	close(stopPub)
	wg.Wait()

	confirmedMu.Lock()
	all := append([]string(nil), confirmed...)
	confirmedMu.Unlock()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		mu.Lock()
		missing := 0
		for _, body := range all {
			if seen[body] == nil {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-signal:
		case <-deadline.C:
			t.Fatalf("%d of %d confirmed messages never delivered", missing, len(all))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	redelivered, doubleFirst := 0, 0
	for _, r := range seen {
		if r.deliveries > 1 {
			redelivered++
		}
		if r.firstDeliveries > 1 {
			doubleFirst++
		}
	}
	if doubleFirst != 0 {
		t.Errorf("%d messages were delivered twice without the redelivered flag (acked twice)", doubleFirst)
	}
	t.Logf("confirmed %d, failed publishes %d, messages redelivered %d, distinct delivered %d", len(all), failed.Load(), redelivered, len(seen))
}

// TestRabbitBrokerDown needs no broker: nothing listens on the port.
func TestRabbitBrokerDown(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := config.BusConfig{Username: "guest", Password: "guest", Host: "127.0.0.1", PortNum: port, PublishTimeout: time.Second}
	b, err := New(context.Background(), cfg, "down", testLogger(t))
	if err != nil {
		t.Fatalf("New with the broker down: %v", err)
	}
	defer b.Close()
	if b.Kind() != "rabbitmq" {
		t.Fatalf("Kind = %q, want rabbitmq", b.Kind())
	}
	if err := b.Ready(); err == nil {
		t.Error("Ready = nil with the broker down")
	}
	if err := b.DeclareExchange(context.Background(), sdk.Exchange{Name: "chat.messages"}); err != nil {
		t.Errorf("DeclareExchange while down = %v, want nil (declared once connected)", err)
	}
	stop, err := b.Consume(context.Background(), sdk.Queue{Name: "q", Exchange: "chat.messages", Bindings: []string{"*"}}, func(context.Context, sdk.Delivery) error { return nil })
	if err != nil {
		t.Errorf("Consume while down = %v, want nil (starts once connected)", err)
	} else {
		defer stop()
	}
	if err := b.Publish(context.Background(), "chat.messages", "k", []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish while down: err = %v, want ErrNotConnected", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
