package recovery

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// A self-service recovery keeps the current password and follows
// password.revoke_sessions; an admin reset replaces it and always ends the
// sessions. Everything else comes from the snapshot for both.
func TestNewPolicy(t *testing.T) {
	t.Parallel()
	keys, err := sealing.New([]string{"0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Password: config.Password{TTL: time.Hour, Cooldown: time.Minute, RevokeSessions: false},
		Kratos:   config.Kratos{LoginUIURL: "http://ui.example/login"},
		Timeouts: config.Timeouts{Kratos: 2 * time.Second, SMTP: 3 * time.Second},
		Keyring:  keys,
	}
	common := Policy{TTL: time.Hour, Cooldown: time.Minute, Keys: keys, LoginURL: "http://ui.example/login", KratosTimeout: 2 * time.Second, SMTPTimeout: 3 * time.Second}
	user, admin := common, common
	user.KeepCurrent, user.RevokeSessions = true, false
	admin.KeepCurrent, admin.RevokeSessions = false, true
	tests := []struct {
		name string
		by   Asker
		want Policy
	}{
		{"self-service", User, user},
		{"admin", Admin, admin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, NewPolicy(cfg, tt.by), cmp.Comparer(func(a, b *sealing.Keyring) bool { return a == b })); diff != "" {
				t.Errorf("NewPolicy (-want +got):\n%s", diff)
			}
		})
	}
}
