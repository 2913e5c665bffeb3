package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testplugin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// pluginBin is the real gateway-email-plugin, built once for this package.
var pluginBin string

func TestMain(m *testing.M) { testplugin.Main(m, &pluginBin) }

func pluginConfig(srv *smtptest.Server) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"smtp": {"host": "127.0.0.1", "port": %d, "email_address": %q,
		"sender_name": "Example", "authorization_code": %q, "security": "starttls", "ca_file": %q}}`,
		srv.Port, smtptest.User, smtptest.Password, srv.PKI.CAFile))
}

func start(t *testing.T, launch sdk.LaunchConfig, config json.RawMessage) (*Host, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	h, _, err := Start(context.Background(), launch, config, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(h.Close)
	return h, &logs
}

func send(h *Host, subject string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := h.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Rendered: &sdk.RenderedMessage{Subject: subject, TextBody: "hi"}})
	return err
}

func TestRealPluginDeliversOverGRPC(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	h, _ := start(t, sdk.LaunchConfig{Path: pluginBin}, pluginConfig(srv))
	if err := send(h, "over grpc"); err != nil {
		t.Fatal(err)
	}
	st := srv.State()
	if len(st.Mails) != 1 || len(st.Authed) != 1 {
		t.Fatalf("server saw %d mails and %d logins, want 1 and 1", len(st.Mails), len(st.Authed))
	}
}

// A plugin that dies is relaunched and configured again by the next call.
func TestDeadPluginIsRelaunched(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	h, logs := start(t, sdk.LaunchConfig{Path: pluginBin}, pluginConfig(srv))
	first := h.Pid()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// go-plugin notices the exit asynchronously; until then a call fails
	// as unavailable, which Kratos would retry.
	var err error
	for range 50 {
		if err = send(h, "after crash"); err == nil {
			break
		}
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("call to a dead plugin = %v, want sdk.ErrUnavailable", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no call succeeded after the crash: %v", err)
	}
	if h.Restarts() != 1 || h.Pid() == first || h.Pid() == 0 {
		t.Errorf("restarts=%d pid %d→%d, want one relaunch with a new process", h.Restarts(), first, h.Pid())
	}
	if len(srv.State().Mails) != 1 {
		t.Errorf("server received %d mails, want 1", len(srv.State().Mails))
	}
	if !strings.Contains(logs.String(), "relaunched") {
		t.Errorf("the relaunch was not logged:\n%s", logs)
	}
}

func TestStartRefusesABadConfig(t *testing.T) {
	t.Parallel()
	_, _, err := Start(context.Background(), sdk.LaunchConfig{Path: pluginBin}, json.RawMessage(`{"smtp": {"host": ""}}`), slog.New(slog.DiscardHandler))
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "smtp.host") {
		t.Fatalf("Start = %v, want sdk.ErrInvalidArgument naming smtp.host", err)
	}
}

func TestChecksum(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})

	start(t, sdk.LaunchConfig{Path: pluginBin, SHA256: hex.EncodeToString(sum[:])}, pluginConfig(srv))

	sum[0] ^= 0xff
	_, _, err = Start(context.Background(), sdk.LaunchConfig{Path: pluginBin, SHA256: hex.EncodeToString(sum[:])}, pluginConfig(srv), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Start with a wrong checksum = %v, want a checksum error", err)
	}
}

// The plugin must not inherit the host's environment, where the secrets live.
func TestPluginDoesNotSeeTheHostEnvironment(t *testing.T) {
	t.Setenv("GATEWAY_SMTP__AUTHORIZATION_CODE", "host-only-secret")
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	h, _ := start(t, sdk.LaunchConfig{Path: pluginBin, Env: []string{"SSL_CERT_DIR=/nonexistent"}}, pluginConfig(srv))
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", h.Pid()))
	if err != nil {
		t.Fatalf("read the plugin's environment: %v", err)
	}
	if bytes.Contains(environ, []byte("host-only-secret")) {
		t.Error("the plugin inherited the host's secret")
	}
	if !bytes.Contains(environ, []byte("SSL_CERT_DIR=/nonexistent")) {
		t.Errorf("the plugin lacks the environment it was given: %q", environ)
	}
}

// A plugin that stops answering (here: SIGSTOP) is found by the per-call
// deadline and a failed health check, killed and relaunched; the next
// message succeeds.
func TestHungPluginIsReplaced(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS})
	h, logs := start(t, sdk.LaunchConfig{Path: pluginBin}, pluginConfig(srv))
	hung := h.Pid()
	if err := syscall.Kill(hung, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := h.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: "alice@example.com", Rendered: &sdk.RenderedMessage{Subject: "stuck", TextBody: "hi"}})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("call to a stopped plugin = %v, want a deadline or unavailable error", err)
	}
	var sendErr error
	for range 50 {
		if sendErr = send(h, "after hang"); sendErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sendErr != nil {
		t.Fatalf("no call succeeded after the hang: %v", sendErr)
	}
	if h.Pid() == hung || h.Restarts() != 1 {
		t.Errorf("pid %d→%d restarts %d, want a new process", hung, h.Pid(), h.Restarts())
	}
	if !strings.Contains(logs.String(), "does not answer a health check") {
		t.Errorf("the hang was not logged:\n%s", logs)
	}
}

// BenchmarkRoundTrip measures one call through go-plugin's gRPC to the real
// plugin process (AutoMTLS on), with its median.
func BenchmarkRoundTrip(b *testing.B) {
	srv := smtptest.Start(b, smtptest.Options{Mode: smtptest.StartTLS})
	h, _, err := Start(context.Background(), sdk.LaunchConfig{Path: pluginBin}, pluginConfig(srv), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	msg := &sdk.PasswordMessage{Password: "Bench-Pass-12345", ExpiresAt: time.Now().Add(time.Hour), LoginURL: "http://127.0.0.1:4455/login",
		IdentityID: "id-1", IdentityTraits: json.RawMessage(`{"email":"alice@example.com"}`)}
	for _, c := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"IssuePassword", func(ctx context.Context) error {
			_, err := h.IssuePassword(ctx, &sdk.IssuePasswordRequest{IdentityID: "id-1"})
			return err
		}},
		{"Render", func(ctx context.Context) error {
			_, err := h.Render(ctx, &sdk.RenderRequest{Recipient: "alice@example.com", Password: msg})
			return err
		}},
		{"Health", func(ctx context.Context) error {
			_, err := h.Health(ctx, &sdk.HealthRequest{})
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			durations := make([]time.Duration, 0, b.N)
			ctx := context.Background()
			for b.Loop() {
				start := time.Now()
				if err := c.call(ctx); err != nil {
					b.Fatal(err)
				}
				durations = append(durations, time.Since(start))
			}
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Microseconds()), "p50-µs")
		})
	}
}
