package integration

import (
	"strings"
	"testing"
)

// gateway template preview renders the mail with sample data as each kind
// of reset would: a Kratos recovery by code or by link hands its code or
// link to the template, an admin reset neither.
func TestTemplatePreview(t *testing.T) {
	cfg := writeConfig(t, gatewayConfig(hostOptions{enabled: true})+
		"template:\n  text: \"Password {{.Password}}{{with .RecoveryCode}} code {{.}}{{end}}{{with .RecoveryURL}} link {{.}}{{end}} for {{.Recipient}}\\n\"\n")
	tests := []struct {
		method, want, not string
	}{
		{"code", "Password Sample-Pass-4711 code 482913 for alice@example.com", "link"},
		{"link", "link http://", "code"},
		{"admin", "Password Sample-Pass-4711 for alice@example.com", "code"},
	}
	for _, tt := range tests {
		code, out := runGateway(t, "template", "preview", "--config", cfg, "--method", tt.method)
		if code != 0 || !strings.Contains(out, tt.want) || strings.Contains(out, tt.not) {
			t.Errorf("--method %s: exit %d, output %q; want %q and no %q", tt.method, code, out, tt.want, tt.not)
		}
	}
	if code, out := runGateway(t, "template", "preview", "--config", cfg, "--method", "sms"); code != 2 || !strings.Contains(out, "--method is code, link or admin") {
		t.Errorf("--method sms: exit %d, output %q; want a usage error", code, out)
	}
}
