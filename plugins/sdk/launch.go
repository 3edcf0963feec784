package sdk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/clowdr/realtime/internal/fileowner"
)

// EnvAllowList is the part of the host's environment a plugin process sees
// (go-plugin adds its own handshake variables). Everything else — Redis,
// RabbitMQ and Auth0 credentials in particular — stays in the host.
var EnvAllowList = []string{"PATH", "HOME", "TMPDIR", "GOCOVERDIR", "LANG"}

// DefaultStartTimeout bounds the start and handshake of a plugin process.
const DefaultStartTimeout = 10 * time.Second

// MaxSocketDirLen is the longest LaunchConfig.SocketDir (or $TMPDIR) that
// leaves room for go-plugin's names below it ("/plugin-dir" and "/plugin",
// each with up to 10 random digits) within a unix socket path's 107 bytes.
const MaxSocketDirLen = 107 - len("/plugin-dir0123456789/plugin0123456789")

// LaunchConfig says how to start a plugin process.
type LaunchConfig struct {
	// Builtin is the registered name to serve by re-executing Path with
	// RT_PLUGIN_SERVE=<Builtin>; "" starts Path as an external plugin binary.
	Builtin string
	// Path is the executable ("" = this process's own binary, os.Executable).
	Path string
	// Args are extra command-line arguments.
	Args []string
	// Logger receives go-plugin's logs and the plugin's (hclog JSON on its
	// stderr, re-logged at their level); nil discards them.
	Logger hclog.Logger
	// Output receives what the plugin writes to its stdout/stderr after the
	// handshake (nil = discarded).
	Output io.Writer
	// StartTimeout bounds start+handshake (0 = DefaultStartTimeout).
	StartTimeout time.Duration
	// SocketDir is where go-plugin creates this process's private socket
	// directory (mode 0700, removed by Kill) holding the plugin's unix
	// socket and the host's (host services) one. It must be a directory
	// that only this user can enter (no group/other permission bits) unless
	// TLS is set. "" = $TMPDIR.
	SocketDir string
	// TLS turns go-plugin's AutoMTLS back on: every message between the
	// host and the plugin encrypted, both ends authenticated by throwaway
	// certificates. Not needed for isolation (the private directory keeps
	// other users out; see the package doc); it costs CPU on every message.
	TLS bool
}

// Process is a started plugin process.
type Process struct {
	// Client drives the plugin.
	Client Client
	// PID is the process id.
	PID int

	gp  *plugin.Client
	cmd *exec.Cmd
}

// Launch starts a plugin process (a fresh exec.Cmd and go-plugin client every
// time: a go-plugin client cannot be restarted, go-plugin#306), performs the
// handshake (gRPC only, no TLS unless cfg.TLS, unix sockets in a private
// directory) and returns its Client. The environment is EnvAllowList plus
// RT_PLUGIN_SERVE for built-ins.
func Launch(cfg LaunchConfig) (*Process, error) {
	if cfg.SocketDir != "" && !cfg.TLS {
		if err := checkPrivateDir(cfg.SocketDir); err != nil {
			return nil, fmt.Errorf("launch plugin: socket dir: %w", err)
		}
	}
	if base := cmp.Or(cfg.SocketDir, os.TempDir()); len(base) > MaxSocketDirLen {
		// Else the plugin fails to listen and the handshake error says nothing useful.
		return nil, fmt.Errorf("launch plugin: socket dir %s: longer than %d bytes, too long for the unix socket paths below it", base, MaxSocketDirLen)
	}
	path := cfg.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launch plugin: own executable: %w", err)
		}
		path = exe
	}
	cmd := exec.Command(path, cfg.Args...)
	cmd.Env = []string{} // not nil: nil would mean the host's whole environment
	for _, k := range EnvAllowList {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	if cfg.Builtin != "" {
		cmd.Env = append(cmd.Env, ServeEnv+"="+cfg.Builtin)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	out := cfg.Output
	if out == nil {
		out = io.Discard
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	gp := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(),
		// A RunnerFunc, not Cmd: only then does go-plugin make a 0700
		// directory (in UnixSocketConfig.TempDir), tell the plugin to listen
		// in it (PLUGIN_UNIX_SOCKET_DIR) and put its own broker socket (host
		// services) there too; with Cmd both land in $TMPDIR, guarded only by
		// the umask.
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, _ string) (runner.Runner, error) {
			// spec carries go-plugin's variables (handshake cookie, socket
			// dir, the client certificate with TLS): SkipHostEnv keeps the
			// host's own out.
			cmd.Env = append(cmd.Env, spec.Env...)
			cmd.Stdin = spec.Stdin
			return newCmdRunner(cmd)
		},
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: cfg.SocketDir},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         cfg.TLS,
		SkipHostEnv:      true,
		StartTimeout:     timeout,
		Logger:           logger,
		SyncStdout:       out,
		SyncStderr:       out,
	})
	rpc, err := gp.Client()
	if err != nil {
		gp.Kill()
		return nil, fmt.Errorf("launch plugin %s: %w", path, err)
	}
	raw, err := rpc.Dispense(PluginKey)
	if err != nil {
		gp.Kill()
		return nil, fmt.Errorf("launch plugin %s: dispense: %w", path, err)
	}
	client, ok := raw.(Client)
	if !ok {
		gp.Kill()
		return nil, fmt.Errorf("launch plugin %s: dispensed %T, not a Client", path, raw)
	}
	// go-plugin only knows the pid of a Cmd it started itself.
	return &Process{Client: client, PID: cmd.Process.Pid, gp: gp, cmd: cmd}, nil
}

// checkPrivateDir fails unless dir is a directory that no other user can
// enter or write.
func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %#o: want no group/other permissions (0700)", dir, perm)
	}
	if err := fileowner.Mine(fi); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// cmdRunner starts the plugin's exec.Cmd for go-plugin: its own cmdrunner
// (internal, used with ClientConfig.Cmd) minus the diagnostics.
type cmdRunner struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser
	pid            int
}

func newCmdRunner(cmd *exec.Cmd) (*cmdRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &cmdRunner{cmd: cmd, stdout: stdout, stderr: stderr}, nil
}

func (r *cmdRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.pid = r.cmd.Process.Pid
	return nil
}

func (r *cmdRunner) Wait(context.Context) error { return r.cmd.Wait() }

func (r *cmdRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *cmdRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *cmdRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *cmdRunner) Name() string          { return r.cmd.Path }

// ID is "" before Start: go-plugin's Kill then has nothing to do.
func (r *cmdRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

func (r *cmdRunner) Diagnose(context.Context) string {
	return "the plugin did not complete go-plugin's handshake: is it built for this platform, " +
		"and does its main call sdk.Serve (or sdk.ServeBuiltinIfRequested)?"
}

func (r *cmdRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *cmdRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool { return p.gp.Exited() }

// ExitStatus describes how the process ended ("exit status 2", "signal:
// killed"), or "" while it runs.
func (p *Process) ExitStatus() string {
	if !p.gp.Exited() || p.cmd.ProcessState == nil {
		return ""
	}
	return p.cmd.ProcessState.String()
}

// Kill closes the client and ends the process: go-plugin's graceful Kill
// (which SIGKILLs after 2 s), bounded by ctx, after which the process is
// SIGKILLed directly (go-plugin's Kill can hang: terraform#38939).
func (p *Process) Kill(ctx context.Context) error {
	_ = p.Client.Close()
	done := make(chan struct{})
	go func() {
		p.gp.Kill()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	if p.PID > 0 {
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill plugin pid %d: %w", p.PID, err)
		}
	}
	select {
	case <-done:
		return nil
	case <-time.After(time.Second):
		return fmt.Errorf("kill plugin pid %d: %w", p.PID, ctx.Err())
	}
}
