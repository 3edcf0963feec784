package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "1234 (rt (x) y) S 1 2 3 4 5 6 7 8 9 10 250 130 0 0 20 0 1 0 100 0 0\n"
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3800 * time.Millisecond; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	if _, err := parseStatCPU("1234 (x) S 1 2"); err == nil {
		t.Error("short line accepted")
	}
	if _, err := ReadCPU(os.Getpid()); err != nil {
		t.Errorf("own stat: %v", err)
	}
}

func TestCPUUse(t *testing.T) {
	a := cpuSnapshot{client: time.Second, server: 2 * time.Second, plugins: time.Second, ok: true}
	b := cpuSnapshot{client: 2 * time.Second, server: 4 * time.Second, plugins: time.Second + 500*time.Millisecond, ok: true}
	u := cpuUse(a, b, 500_000, 2*time.Second)
	if u.ClientUsPerDelivery != 2 || u.ServerUsPerDelivery != 4 || u.PluginUsPerDelivery != 1 {
		t.Errorf("per delivery = %+v", u)
	}
	if u.ServerCores != 1 || u.ClientCores != 0.5 {
		t.Errorf("cores = %+v", u)
	}
	if u := cpuUse(cpuSnapshot{}, cpuSnapshot{client: time.Second}, 10, time.Second); u.ServerUsPerDelivery != 0 {
		t.Errorf("server measured without a pid: %+v", u)
	}
}
