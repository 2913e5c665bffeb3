package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testplugin"
)

// pluginBin is the real gateway-email-plugin, built once for this package.
var pluginBin string

func TestMain(m *testing.M) { testplugin.Main(m, &pluginBin) }

func run(args []string, environ ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), Env{Args: args, Environ: environ, Stdout: &stdout, Stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

const (
	shipped = "../../configs/gateway.yaml"
	cipher  = "GATEWAY_SECRETS__CIPHER=0123456789abcdef0123456789abcdef"
)

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		environ    []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "shipped config without its secret",
			environ:    []string{"GATEWAY_PLUGIN__PATH=" + pluginBin},
			wantCode:   1,
			wantStderr: "webhook.api_key: required",
		},
		{
			name:       "shipped config with its secret",
			environ:    []string{"GATEWAY_PLUGIN__PATH=" + pluginBin, "GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher},
			wantCode:   0,
			wantStdout: "configs/gateway.yaml: ok",
		},
		{
			name:       "plugin sections are checked by the plugin",
			environ:    []string{"GATEWAY_PLUGIN__PATH=" + pluginBin, "GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher, "GATEWAY_SMTP__SENDER_NAME="},
			wantCode:   1,
			wantStderr: "smtp.sender_name",
		},
		{
			name:       "insecure mode warns",
			environ:    []string{"GATEWAY_PLUGIN__PATH=" + pluginBin, "GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher, "GATEWAY_SMTP__SECURITY=ssl"},
			wantCode:   0,
			wantStdout: "warning: smtp.security is ssl",
		},
		{
			name:       "missing plugin binary",
			environ:    []string{"GATEWAY_PLUGIN__PATH=/nonexistent/plugin", "GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher},
			wantCode:   1,
			wantStderr: "start plugin /nonexistent/plugin",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run([]string{"config", "check", "--config", shipped}, tt.environ...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d with %q / %q", code, stdout, stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestServeRefusesAnInvalidConfig(t *testing.T) {
	t.Parallel()
	code, _, stderr := run([]string{"serve", "--config", shipped}, "GATEWAY_PASSWORD__TTL=100ms")
	if code != 1 || !strings.Contains(stderr, "password.ttl") || !strings.Contains(stderr, "webhook.api_key") {
		t.Fatalf("exit %d, stderr %q; want 1 naming password.ttl and webhook.api_key", code, stderr)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"bogus"}, {"serve"}, {"config", "check"}} {
		if code, _, stderr := run(args); code != 2 || stderr == "" {
			t.Errorf("gateway %q: exit %d, stderr %q; want 2 with usage", args, code, stderr)
		}
	}
	if code, stdout, _ := run([]string{"help"}); code != 0 || !strings.Contains(stdout, "gateway serve --config FILE") {
		t.Errorf("gateway help: exit %d, %q", code, stdout)
	}
}

// --help is a question, not a mistake: every command answers it with its
// usage on stdout and exit 0; a wrong flag still exits 2 on stderr.
func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "gateway serve --config FILE"},
		{[]string{"-h"}, "gateway serve --config FILE"},
		{[]string{"config", "--help"}, "gateway config check --config FILE"},
		{[]string{"smtp", "-h"}, "gateway smtp test --config FILE"},
		{[]string{"template", "--help"}, "gateway template preview --config FILE"},
		{[]string{"serve", "--help"}, "gateway serve --config FILE"},
		{[]string{"config", "check", "--help"}, "gateway config check --config FILE"},
		{[]string{"doctor", "--help"}, "gateway doctor --config FILE"},
		{[]string{"reset", "--help"}, "-dry-run"},
		{[]string{"reset", "--id", "x", "-h"}, "gateway reset --config FILE"},
		{[]string{"smtp", "test", "--help"}, "-to string"},
		{[]string{"template", "preview", "--help"}, "-method string"},
		{[]string{"template", "preview", "--help"}, "-notice string"},
		{[]string{"template", "--help"}, "--notice password_changed|reset_void"},
	}
	for _, tt := range tests {
		if code, stdout, stderr := run(tt.args); code != 0 || !strings.Contains(stdout, tt.want) || stderr != "" {
			t.Errorf("gateway %q: exit %d, stdout %q, stderr %q; want 0 with %q on stdout", tt.args, code, stdout, stderr, tt.want)
		}
	}
	for _, args := range [][]string{{"reset", "--bogus"}, {"serve", "--config"}, {"template", "preview", "--part"}} {
		if code, stdout, stderr := run(args); code != 2 || stdout != "" || !strings.Contains(stderr, "Usage:") {
			t.Errorf("gateway %q: exit %d, stdout %q, stderr %q; want 2 with the usage on stderr", args, code, stdout, stderr)
		}
	}
}
