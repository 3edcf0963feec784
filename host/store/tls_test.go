package store

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
)

// TestSkipTLSVerifyOptions checks what redis.tls_insecure_skip_verify does to
// the go-redis options: it turns verification off for rediss:// only.
func TestSkipTLSVerifyOptions(t *testing.T) {
	tests := []struct {
		url      string
		skip     bool
		wantSkip bool // TLSConfig.InsecureSkipVerify afterwards
		wantTLS  bool // a TLSConfig at all
	}{
		{url: "rediss://:pw@redis.example.com:6380/0", skip: true, wantSkip: true, wantTLS: true},
		{url: "rediss://:pw@redis.example.com:6380/0", skip: false, wantSkip: false, wantTLS: true},
		{url: "redis://:pw@redis.example.com:6379/0", skip: true, wantTLS: false},
		{url: "unix:///tmp/redis.sock", skip: true, wantTLS: false},
	}
	for _, tc := range tests {
		opts, err := redis.ParseURL(tc.url)
		if err != nil {
			t.Fatalf("ParseURL(%s): %v", tc.url, err)
		}
		got := skipTLSVerify(config.RedisConfig{URL: tc.url, TLSInsecureSkipVerify: tc.skip}, opts)
		if (opts.TLSConfig != nil) != tc.wantTLS {
			t.Errorf("%s skip=%v: TLSConfig = %v, want TLS %v", tc.url, tc.skip, opts.TLSConfig, tc.wantTLS)
			continue
		}
		if got != tc.wantSkip {
			t.Errorf("%s skip=%v: skipTLSVerify = %v, want %v", tc.url, tc.skip, got, tc.wantSkip)
		}
		if opts.TLSConfig != nil && opts.TLSConfig.InsecureSkipVerify != tc.wantSkip {
			t.Errorf("%s skip=%v: InsecureSkipVerify = %v, want %v", tc.url, tc.skip, opts.TLSConfig.InsecureSkipVerify, tc.wantSkip)
		}
	}
}

// TestTLSSelfSigned runs redis-server with TLS and a self-signed certificate,
// as Heroku Redis does: the default refuses the certificate, and
// redis.tls_insecure_skip_verify connects (and New logs a warning).
func TestTLSSelfSigned(t *testing.T) {
	bin := testenv.RedisServerBinary(t)
	dir := t.TempDir()
	certFile, keyFile := selfSignedCert(t, dir)
	port := testenv.FreePort(t)
	startRedisArgs(t, bin, port, "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-auth-clients", "no")
	url := "rediss://127.0.0.1:" + strconv.Itoa(port) + "/0"
	ctx := context.Background()

	strict, err := New(ctx, config.RedisConfig{URL: url, Timeout: time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	if err := strict.Ready(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Ready with certificate checks = %v, want a certificate error", err)
	}

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := New(ctx, config.RedisConfig{URL: url, Timeout: time.Second, TLSInsecureSkipVerify: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready with tls_insecure_skip_verify: %v", err)
	}
	if _, err := s.Do(ctx, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := sdk.String(s.Do(ctx, "GET", "k")); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "tls_insecure_skip_verify") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in dir.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "redis self-signed test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
