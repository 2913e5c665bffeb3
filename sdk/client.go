package sdk

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// LaunchConfig says which plugin binary a host starts and how.
type LaunchConfig struct {
	// Path to the plugin binary. It is made absolute and run directly, never
	// through a shell, so the checksum check covers the program that runs.
	Path string
	// SHA256 is the expected hex checksum of the binary; empty skips the check.
	SHA256 string
	// StartTimeout bounds the plugin's start-up handshake (default 10s).
	StartTimeout time.Duration
	// Env is the plugin's whole environment: it does not inherit the host's,
	// so the host's secrets stay in the host.
	Env []string
	// Logger receives the plugin's log lines.
	Logger hclog.Logger
}

// Client is a running plugin process seen as a Remote: the core and every
// capability, a capability the plugin lacks answering ErrUnsupported.
type Client struct {
	Remote
	proc *goplugin.Client
}

// Launch starts the plugin and completes go-plugin's handshake over gRPC with
// AutoMTLS. The caller must Kill the returned Client.
func Launch(cfg LaunchConfig) (*Client, error) {
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("plugin path %q: %w", cfg.Path, err)
	}
	secure, err := secureConfig(cfg.SHA256)
	if err != nil {
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cmd := exec.Command(path)
	cmd.Env = cfg.Env
	proc := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          PluginMap(nil),
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     timeout,
		Logger:           logger,
	})
	rpc, err := proc.Client()
	if err != nil {
		proc.Kill()
		return nil, fmt.Errorf("start plugin %s: %w", path, err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		proc.Kill()
		return nil, fmt.Errorf("dispense plugin %s: %w", path, err)
	}
	gw, ok := raw.(Remote)
	if !ok {
		proc.Kill()
		return nil, fmt.Errorf("plugin %s: dispensed %T, not a Remote", path, raw)
	}
	return &Client{Remote: gw, proc: proc}, nil
}

// Exited reports whether the plugin process has ended.
func (c *Client) Exited() bool { return c.proc.Exited() }

// Pid is the plugin's process id, for logs and for tests that kill it.
func (c *Client) Pid() int {
	if rc := c.proc.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Kill ends the plugin process; it is safe to call more than once.
func (c *Client) Kill() { c.proc.Kill() }

// Terminate ends a plugin that may not answer (hung, stopped): it kills
// the process first, because go-plugin's Kill asks for a graceful shutdown
// over gRPC and would wait on a process that never replies.
func (c *Client) Terminate() {
	if pid := c.Pid(); pid > 0 {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
	c.proc.Kill()
}

func secureConfig(sum string) (*goplugin.SecureConfig, error) {
	if sum == "" {
		return nil, nil
	}
	want, err := hex.DecodeString(sum)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("plugin.sha256 must be 64 hex characters (sha256sum of the binary)")
	}
	return &goplugin.SecureConfig{Checksum: want, Hash: sha256.New()}, nil
}
