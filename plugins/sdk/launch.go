package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// EnvAllowList is the part of the host's environment a plugin process sees
// (go-plugin adds its own handshake variables). Everything else — Redis,
// RabbitMQ and Auth0 credentials in particular — stays in the host.
var EnvAllowList = []string{"PATH", "HOME", "TMPDIR", "GOCOVERDIR", "LANG"}

// DefaultStartTimeout bounds the start and handshake of a plugin process.
const DefaultStartTimeout = 10 * time.Second

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
// handshake (gRPC only, AutoMTLS) and returns its Client. The environment is
// EnvAllowList plus RT_PLUGIN_SERVE for built-ins.
func Launch(cfg LaunchConfig) (*Process, error) {
	path := cfg.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launch plugin: own executable: %w", err)
		}
		path = exe
	}
	cmd := exec.Command(path, cfg.Args...)
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
		HandshakeConfig:  Handshake,
		Plugins:          PluginSet(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
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
	p := &Process{Client: client, gp: gp, cmd: cmd}
	if rc := gp.ReattachConfig(); rc != nil {
		p.PID = rc.Pid
	}
	return p, nil
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
