package smtpsend

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

func validConfig() Config {
	return Config{
		Host:              "smtp.example.com",
		EmailAddress:      "noreply@example.com",
		SenderName:        "Example Support",
		AuthorizationCode: "s3cret",
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badCert := filepath.Join(dir, "bad-cert.pem")
	if err := os.WriteFile(badCert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	goodCA := smtptest.NewPKI(t).CAFile

	tests := []struct {
		name    string
		edit    func(*Config)
		wantKey string // "" means valid
		// wantText must appear in the error, which must not contain the
		// authorization code.
		wantText string
	}{
		{name: "valid with defaults"},
		{name: "valid IPv6 host", edit: func(c *Config) { c.Host = "2001:db8::1" }},
		{name: "valid ca_file", edit: func(c *Config) { c.CAFile = goodCA }},
		{name: "valid starttls on explicit port", edit: func(c *Config) { c.Security, c.Port = SecuritySTARTTLS, 2525 }},
		{name: "host missing", edit: func(c *Config) { c.Host = "" }, wantKey: "smtp.host", wantText: "must be set"},
		{name: "host with scheme", edit: func(c *Config) { c.Host = "smtps://smtp.example.com" }, wantKey: "smtp.host", wantText: "URL"},
		{name: "host with port", edit: func(c *Config) { c.Host = "smtp.example.com:465" }, wantKey: "smtp.host", wantText: "smtp.port"},
		{name: "bracketed IPv6 host", edit: func(c *Config) { c.Host = "[::1]" }, wantKey: "smtp.host", wantText: "brackets"},
		{name: "host with space", edit: func(c *Config) { c.Host = "smtp example.com" }, wantKey: "smtp.host", wantText: "space"},
		{name: "port negative", edit: func(c *Config) { c.Port = -1 }, wantKey: "smtp.port", wantText: "1 to 65535"},
		{name: "port too high", edit: func(c *Config) { c.Port = 65536 }, wantKey: "smtp.port", wantText: "1 to 65535"},
		{name: "email_address missing", edit: func(c *Config) { c.EmailAddress = "" }, wantKey: "smtp.email_address", wantText: "must be set"},
		{name: "email_address invalid", edit: func(c *Config) { c.EmailAddress = "noreply" }, wantKey: "smtp.email_address", wantText: "not a valid"},
		{name: "email_address with display name", edit: func(c *Config) { c.EmailAddress = "Support <noreply@example.com>" }, wantKey: "smtp.email_address", wantText: "smtp.sender_name"},
		{name: "sender_name missing", edit: func(c *Config) { c.SenderName = " " }, wantKey: "smtp.sender_name", wantText: "must be set"},
		{name: "sender_name not UTF-8", edit: func(c *Config) { c.SenderName = "Caf\xe9 Accounts" }, wantKey: "smtp.sender_name", wantText: "valid UTF-8"},
		{name: "sender_name with CRLF", edit: func(c *Config) { c.SenderName = "Support\r\nBcc: victim@example.org" }, wantKey: "smtp.sender_name", wantText: "control"},
		{name: "sender_name with NUL", edit: func(c *Config) { c.SenderName = "Support\x00" }, wantKey: "smtp.sender_name", wantText: "control"},
		{name: "username with LF", edit: func(c *Config) { c.Username = "user\n" }, wantKey: "smtp.username", wantText: "control"},
		{name: "security unknown", edit: func(c *Config) { c.Security = "TLS1.3" }, wantKey: "smtp.security", wantText: "tls, starttls, ssl or none"},
		{name: "ca_file missing", edit: func(c *Config) { c.CAFile = filepath.Join(dir, "absent.pem") }, wantKey: "smtp.ca_file", wantText: "cannot read"},
		{name: "ca_file without PEM", edit: func(c *Config) { c.CAFile = garbage }, wantKey: "smtp.ca_file", wantText: "no PEM CERTIFICATE"},
		{name: "ca_file with a broken certificate", edit: func(c *Config) { c.CAFile = badCert }, wantKey: "smtp.ca_file", wantText: "does not parse"},
		{
			name:     "none sends the authorization code to a remote host",
			edit:     func(c *Config) { c.Security = SecurityNone },
			wantKey:  "smtp.security",
			wantText: "smtp.authorization_code",
		},
		{
			name:     "none to a public IP",
			edit:     func(c *Config) { c.Security, c.Host = SecurityNone, "192.0.2.1" },
			wantKey:  "smtp.security",
			wantText: "plaintext",
		},
		{name: "none to localhost", edit: func(c *Config) { c.Security, c.Host = SecurityNone, "localhost" }},
		{name: "none to 127.0.0.2", edit: func(c *Config) { c.Security, c.Host = SecurityNone, "127.0.0.2" }},
		{name: "none to ::1", edit: func(c *Config) { c.Security, c.Host = SecurityNone, "::1" }},
		{name: "none to a remote host without credentials", edit: func(c *Config) { c.Security, c.AuthorizationCode = SecurityNone, "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			errs := cfg.Validate()
			if tt.wantKey == "" {
				if len(errs) != 0 {
					t.Fatalf("Validate() = %v, want no errors", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("Validate() = %v, want exactly one error", errs)
			}
			err := errs[0]
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("error %v does not match sdk.ErrInvalidArgument", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.wantKey+": ") {
				t.Errorf("error %q does not name %s", msg, tt.wantKey)
			}
			if !strings.Contains(msg, tt.wantText) {
				t.Errorf("error %q does not mention %q", msg, tt.wantText)
			}
			if cfg.AuthorizationCode != "" && strings.Contains(msg, cfg.AuthorizationCode) {
				t.Errorf("error %q contains the authorization code", msg)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Port: 99999, Security: "bogus"})
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("New error = %v, want sdk.ErrInvalidArgument", err)
	}
	for _, key := range []string{"smtp.host", "smtp.port", "smtp.email_address", "smtp.sender_name", "smtp.security"} {
		if !strings.Contains(err.Error(), key+": ") {
			t.Errorf("New error %q does not name %s", err, key)
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		security     string
		wantSecurity string
		wantPort     int
	}{
		{"", SecurityTLS, 465},
		{SecurityTLS, SecurityTLS, 465},
		{SecuritySSL, SecuritySSL, 465},
		{SecuritySTARTTLS, SecuritySTARTTLS, 587},
		{SecurityNone, SecurityNone, 25},
	}
	for _, tt := range tests {
		t.Run(tt.wantSecurity, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			cfg.Security = tt.security
			got := cfg.withDefaults()
			if got.Security != tt.wantSecurity || got.Port != tt.wantPort || got.Username != cfg.EmailAddress {
				t.Errorf("withDefaults() = security %q port %d username %q, want %q %d %q",
					got.Security, got.Port, got.Username, tt.wantSecurity, tt.wantPort, cfg.EmailAddress)
			}
		})
	}
	t.Run("explicit values stay", func(t *testing.T) {
		t.Parallel()
		cfg := validConfig()
		cfg.Port, cfg.Username = 2525, "login"
		if got := cfg.withDefaults(); got.Port != 2525 || got.Username != "login" {
			t.Errorf("withDefaults() = port %d username %q, want 2525 login", got.Port, got.Username)
		}
	})
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		edit     func(*Config)
		contains []string // one entry per expected warning
	}{
		{name: "default tls", edit: func(*Config) {}},
		{name: "starttls", edit: func(c *Config) { c.Security = SecuritySTARTTLS }},
		{name: "ssl", edit: func(c *Config) { c.Security = SecuritySSL }, contains: []string{"TLS 1.0 and 1.1"}},
		{name: "none", edit: func(c *Config) { c.Security, c.Host = SecurityNone, "127.0.0.1" }, contains: []string{"unencrypted"}},
		{
			name:     "none with ca_file",
			edit:     func(c *Config) { c.Security, c.Host, c.CAFile = SecurityNone, "127.0.0.1", "/etc/ca.pem" },
			contains: []string{"unencrypted", "smtp.ca_file is ignored"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig()
			tt.edit(&cfg)
			warns := cfg.Warnings()
			if len(warns) != len(tt.contains) {
				t.Fatalf("Warnings() = %q, want %d warnings", warns, len(tt.contains))
			}
			for i, want := range tt.contains {
				if !strings.Contains(warns[i], want) {
					t.Errorf("warning %q does not mention %q", warns[i], want)
				}
				if strings.Contains(warns[i], cfg.AuthorizationCode) {
					t.Errorf("warning %q contains the authorization code", warns[i])
				}
			}
		})
	}
}
