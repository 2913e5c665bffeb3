package recovery

import "github.com/kratos-email-gateway/kratos-email-gateway/host/config"

// Asker says who asked for a reset, which decides what the reset may do.
type Asker int

const (
	// User is a self-service recovery (Kratos's courier). Anyone who knows
	// an address can start one, so it keeps the current password working
	// until the temporary one is used.
	User Asker = iota
	// Admin is an admin reset (gateway reset, the admin API): the temporary
	// password replaces the current one at once and the identity's sessions
	// end, what an admin wants after a breach.
	Admin
)

// NewPolicy is the reset policy of one config snapshot: every caller builds
// its policy here, per request, so a reload applies to the next reset.
// HookUnproven is the caller's to set: it is the wiring check's state, not
// the config's.
func NewPolicy(cfg *config.Config, by Asker) Policy {
	pol := Policy{
		TTL:            cfg.Password.TTL,
		Cooldown:       cfg.Password.Cooldown,
		KeepCurrent:    true,
		Keys:           cfg.Keyring,
		RevokeSessions: cfg.Password.RevokeSessions,
		LoginURL:       cfg.Kratos.LoginUIURL,
		KratosTimeout:  cfg.Timeouts.Kratos,
		SMTPTimeout:    cfg.Timeouts.SMTP,
	}
	if by == Admin {
		pol.KeepCurrent, pol.RevokeSessions = false, true
	}
	return pol
}
