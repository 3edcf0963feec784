package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"

	"github.com/clowdr/realtime/internal/fileowner"
)

// maxDevKeyFileBytes bounds the dev key file.
const maxDevKeyFileBytes = 1 << 20

// DefaultDevKeyFile is realtime/dev-jwks.json under the user's configuration
// directory ($XDG_CONFIG_HOME, else ~/.config on Linux).
func DefaultDevKeyFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("auth: no user configuration directory: %w", err)
	}
	return filepath.Join(dir, "realtime", "dev-jwks.json"), nil
}

// DevKeySet returns the dev key set stored at path, creating it the first
// time: {"keys":[JWK]} with one RSA 2048 key (random kid, use "sig", alg
// RS256) including its private parts. The file is written with mode 0600
// (its directory is created with 0700) and is created atomically, so
// concurrent first calls agree on one key. An existing file must hold a
// private RSA signing key and belong to the current user.
func DevKeySet(path string) (jwksJSON []byte, err error) {
	if path == "" {
		return nil, errors.New("auth: dev key set: empty path")
	}
	data, err := readDevKeySet(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auth: dev key set: create directory: %w", err)
	}
	data, err = newDevKeySet()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".dev-jwks-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := writeAndClose(tmp, data); err != nil {
		return nil, fmt.Errorf("auth: dev key set: write %s: %w", tmpName, err)
	}
	// A hard link creates path only if it does not exist yet: the first
	// writer wins and the others read its key.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readDevKeySet(path)
		}
		if err := os.Rename(tmpName, path); err != nil {
			return nil, fmt.Errorf("auth: dev key set: install %s: %w", path, err)
		}
	}
	return data, nil
}

func writeAndClose(f *os.File, data []byte) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readDevKeySet reads and checks an existing dev key set.
func readDevKeySet(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: dev key set %s: not a regular file", path)
	}
	if err := fileowner.Mine(fi); err != nil {
		return nil, fmt.Errorf("auth: dev key set %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// Ours and too open: tighten it (best effort).
		_ = f.Chmod(0o600)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxDevKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set %s: %w", path, err)
	}
	if len(data) > maxDevKeyFileBytes {
		return nil, fmt.Errorf("auth: dev key set %s: larger than 1 MiB", path)
	}
	keys, err := parseKeySet(data, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set %s: %w", path, err)
	}
	if keys[0].priv == nil {
		return nil, fmt.Errorf("auth: dev key set %s: first key has no private parts", path)
	}
	return data, nil
}

// newDevKeySet generates a fresh key set.
func newDevKeySet() ([]byte, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set: generate RSA key: %w", err)
	}
	var kid [12]byte
	if _, err := rand.Read(kid[:]); err != nil {
		return nil, fmt.Errorf("auth: dev key set: random kid: %w", err)
	}
	key := jose.JSONWebKey{Key: priv, KeyID: "dev-" + hex.EncodeToString(kid[:]), Algorithm: "RS256", Use: "sig"}
	set := struct {
		Keys []jose.JSONWebKey `json:"keys"`
	}{Keys: []jose.JSONWebKey{key}}
	data, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("auth: dev key set: encode: %w", err)
	}
	return append(data, '\n'), nil
}
