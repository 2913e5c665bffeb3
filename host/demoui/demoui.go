// Package demoui serves the local stack's self-service pages (recovery,
// login, settings) on Kratos's browser flows, so a newcomer can click the
// whole temporary-password journey.
package demoui

import (
	"log/slog"
	"net/http"
)

// Config says where Kratos and Mailpit are, as the browser sees them.
type Config struct {
	// KratosPublicURL is Kratos's public API, used by the server and by the browser.
	KratosPublicURL string
	// MailpitURL, when set, is linked so the user finds the inbox.
	MailpitURL string
}

// New returns the demo UI's handler.
func New(cfg Config, log *slog.Logger) http.Handler {
	return http.NotFoundHandler()
}
