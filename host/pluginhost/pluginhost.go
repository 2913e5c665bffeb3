// Package pluginhost keeps the email plugin process running: it launches it,
// configures it, and relaunches it when it has died.
package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("plugin host closed")

// probeTimeout bounds the health check that decides whether a plugin whose
// call failed is hung; a live plugin answers Health in microseconds.
const probeTimeout = time.Second

// Host is an sdk.Remote backed by a supervised plugin process. Calls go to
// the current process; a process found dead is replaced, and configured with
// the last config it accepted, before the call is made.
type Host struct {
	launch sdk.LaunchConfig
	log    *slog.Logger

	mu       sync.Mutex
	proc     *sdk.Client
	config   json.RawMessage
	restarts int
	closed   bool
}

// Launch starts a plugin process and configures it with config, returning
// the plugin's warnings; a plugin that refuses the config is killed. Every
// command that runs the plugin starts it here (serve through Start and its
// relaunches); the caller must Kill the process.
func Launch(ctx context.Context, launch sdk.LaunchConfig, config json.RawMessage) (*sdk.Client, []string, error) {
	proc, err := sdk.Launch(launch)
	if err != nil {
		return nil, nil, err
	}
	resp, err := proc.Configure(ctx, &sdk.ConfigureRequest{Config: config})
	if err != nil {
		proc.Kill()
		return nil, nil, fmt.Errorf("plugin refused its sections: %w", err)
	}
	return proc, resp.Warnings, nil
}

// Start launches the plugin and configures it with config. It fails when the
// plugin cannot start or refuses the config, so a host never serves without a
// working plugin.
func Start(ctx context.Context, launch sdk.LaunchConfig, config json.RawMessage, log *slog.Logger) (*Host, []string, error) {
	proc, warnings, err := Launch(ctx, launch, config)
	if err != nil {
		return nil, nil, err
	}
	return &Host{launch: launch, log: log, proc: proc, config: config}, warnings, nil
}

// Configure applies a new config; on refusal the plugin keeps the old one.
func (h *Host) Configure(ctx context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	gw, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := gw.Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.config = req.Config
	h.mu.Unlock()
	return resp, nil
}

// IssuePassword forwards to the plugin.
func (h *Host) IssuePassword(ctx context.Context, req *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
	gw, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := gw.IssuePassword(ctx, req)
	h.afterCall(gw, err)
	return resp, err
}

// SendMessage forwards to the plugin. It is not retried here: a plugin that
// died mid-send may have handed the mail over already, and Kratos's retry
// is the one place that decides to try again.
func (h *Host) SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
	gw, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := gw.SendMessage(ctx, req)
	h.afterCall(gw, err)
	return resp, err
}

// Health forwards to the plugin.
func (h *Host) Health(ctx context.Context, req *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	gw, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	return gw.Health(ctx, req)
}

// Render forwards to the plugin; a plugin without the capability answers
// sdk.ErrUnsupported.
func (h *Host) Render(ctx context.Context, req *sdk.RenderRequest) (*sdk.RenderResponse, error) {
	gw, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := gw.Render(ctx, req)
	h.afterCall(gw, err)
	return resp, err
}

// Probe forwards to the plugin; a plugin without the capability answers
// sdk.ErrUnsupported.
func (h *Host) Probe(ctx context.Context, req *sdk.ProbeRequest) (*sdk.ProbeResponse, error) {
	gw, err := h.current(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := gw.Probe(ctx, req)
	h.afterCall(gw, err)
	return resp, err
}

// afterCall detects a hung plugin: after a call that timed out or could not
// reach the plugin, a live plugin still answers a quick health check; one
// that does not is killed, so the next call relaunches it. Without this a
// stopped or deadlocked process would keep failing every message.
func (h *Host) afterCall(gw sdk.Remote, err error) {
	if err == nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sdk.ErrUnavailable)) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, herr := gw.Health(ctx, &sdk.HealthRequest{}); herr == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc != nil && sdk.Remote(h.proc) == gw && !h.proc.Exited() {
		h.log.Error("plugin does not answer a health check; killing it so the next call relaunches it", "pid", h.proc.Pid())
		h.proc.Terminate()
	}
}

// Restarts counts the relaunches since Start.
func (h *Host) Restarts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.restarts
}

// Pid is the current plugin process id.
func (h *Host) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return 0
	}
	return h.proc.Pid()
}

// Close ends the plugin process. It does not wait for a graceful exit: the
// plugin holds no work once the host stopped serving, and a hung plugin
// would never finish one.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.proc != nil {
		h.proc.Terminate()
	}
}

// current returns a live, configured plugin, relaunching a dead one. The lock
// is held across the relaunch so concurrent callers start one process, not many.
func (h *Host) current(ctx context.Context) (sdk.Remote, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if !h.proc.Exited() {
		return h.proc, nil
	}
	old := h.proc.Pid()
	h.proc.Kill()
	proc, _, err := Launch(ctx, h.launch, h.config)
	if err != nil {
		return nil, fmt.Errorf("%w: relaunch plugin: %v", sdk.ErrUnavailable, err)
	}
	h.proc = proc
	h.restarts++
	h.log.Warn("plugin process had exited; relaunched it", "old_pid", old, "new_pid", proc.Pid(), "restarts", h.restarts)
	return proc, nil
}
