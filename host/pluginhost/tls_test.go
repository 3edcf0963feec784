package pluginhost

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// pluginEnv reads a running process's environment from /proc.
func pluginEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatalf("environment of plugin pid %d: %v", pid, err)
	}
	env := map[string]string{}
	for kv := range bytes.SplitSeq(raw, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

// tlsCert connects to the unix socket at path and sends a TLS ClientHello;
// it returns the certificate the server answers with, or nil when the
// server does not speak TLS (a plaintext gRPC server reads the ClientHello
// as a bad HTTP/2 preface and hangs up). The handshake itself may fail
// afterwards (the server wants a client certificate we do not have): the
// server's certificate is proof enough.
func tlsCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer conn.Close()
	// Only keeps a broken server from hanging the test.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var cert *x509.Certificate
	tc := tls.Client(conn, &tls.Config{
		ServerName:         "localhost",
		InsecureSkipVerify: true, // go-plugin's certificates are throwaway; we only look
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				cert, _ = x509.ParseCertificate(raw[0])
			}
			return nil
		},
	})
	_ = tc.Handshake()
	return cert
}

// checkTLS checks a running plugin process against want: whether go-plugin
// handed it a client certificate (PLUGIN_CLIENT_CERT, AutoMTLS's
// mechanism) and whether every socket in its private directory (its
// listener and the host's broker listener) answers a TLS handshake with a
// certificate. The directory must be inside the Manager's 0700 one either
// way.
func checkTLS(t *testing.T, m *Manager, pid int, want bool) {
	t.Helper()
	env := pluginEnv(t, pid)
	if got := strings.Contains(env["PLUGIN_CLIENT_CERT"], "BEGIN CERTIFICATE"); got != want {
		t.Errorf("pid %d: PLUGIN_CLIENT_CERT set = %v, want %v", pid, got, want)
	}
	dir := env["PLUGIN_UNIX_SOCKET_DIR"]
	if base := m.sockDir(); dir == "" || base == "" || filepath.Dir(dir) != base {
		t.Fatalf("pid %d: socket dir %q, want one inside the manager's %q", pid, dir, base)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sockets := 0
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 {
			continue
		}
		sockets++
		cert := tlsCert(t, filepath.Join(dir, e.Name()))
		if (cert != nil) != want {
			t.Errorf("pid %d: socket %s presents a TLS certificate = %v, want %v", pid, e.Name(), cert != nil, want)
		}
		if cert != nil && cert.Subject.CommonName != "localhost" {
			t.Errorf("pid %d: socket %s: certificate for %q, want go-plugin's %q", pid, e.Name(), cert.Subject.CommonName, "localhost")
		}
	}
	if sockets == 0 {
		t.Fatalf("pid %d: no socket in %s", pid, dir)
	}
}

// TestTLS starts a subprocess plugin with plugins.<name>.tls off and on; in
// both an event makes its round trip, and the connection is plaintext or
// TLS as configured (the "off" case shows that the probe can tell them
// apart).
func TestTLS(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(on), func(t *testing.T) {
			svc := newFakeServices(t)
			m := startManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true, TLS: on}}, svc, nil)
			s := sdktest.Socket("s1", "u1")
			m.Connect(s)
			ack, err := sendEvent(t, m, s, "ptest.echo", "hi")
			if err != nil || len(ack) != 1 || string(ack[0]) != `"hi"` {
				t.Fatalf("echo ack = %s, %v", ack, err)
			}
			// The plugin's emit came back through the host services
			// connection (the broker socket).
			if e := svc.Emits(); len(e) != 1 || e[0].Event != "echo" {
				t.Fatalf("emits = %+v", e)
			}
			checkTLS(t, m, statusOf(m, "ptest").PID, on)
		})
	}
}

// TestTLSRestart kills a plugin running with TLS: the supervisor's new
// process (a fresh exec.Cmd and go-plugin client) uses TLS again.
func TestTLSRestart(t *testing.T) {
	svc := newFakeServices(t)
	m := startManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true, TLS: true}}, svc, nil)
	oldPID := statusOf(m, "ptest").PID
	checkTLS(t, m, oldPID, true)

	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the plugin to restart", func() bool {
		st := statusOf(m, "ptest")
		return st.State == StateRunning && st.Restarts == 1
	})
	st := statusOf(m, "ptest")
	if st.PID == oldPID || st.PID == 0 {
		t.Fatalf("after restart: %+v", st)
	}
	ack, err := sendEvent(t, m, sdktest.Socket("s1", "u1"), "ptest.pid")
	if err != nil || len(ack) != 1 || string(ack[0]) != strconv.Itoa(st.PID) {
		t.Fatalf("after restart: pid event = %s, %v; want %d", ack, err, st.PID)
	}
	checkTLS(t, m, st.PID, true)
}
