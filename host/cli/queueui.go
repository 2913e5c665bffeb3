package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/outbox"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/queueui"
)

// startQueueUI builds River's UI of the outbox for the admin listener,
// behind admin.api_key as it is after each reload; its background counts
// run until ctx ends.
func startQueueUI(ctx context.Context, ob *outbox.Outbox, current func() *config.Config, log *slog.Logger) (http.Handler, error) {
	ui, start, err := ob.UIHandler(queueui.Prefix, log)
	if err != nil {
		return nil, err
	}
	if err := start(ctx); err != nil {
		return nil, fmt.Errorf("start River's UI: %w", err)
	}
	log.Info("queue UI serving on admin.listen", "path", queueui.Prefix)
	return queueui.New(ui, queueui.Options{Key: func() string { return current().Admin.APIKey }, Log: log}), nil
}

// adminHandler serves admin.listen: the admin API, and River's UI under
// queueui.Prefix when the outbox is on.
func (s *services) adminHandler() http.Handler {
	return withQueueUI(s.server.AdminHandler(), s.queueUI)
}

// withQueueUI sends what is under queueui.Prefix to ui, the rest to admin.
func withQueueUI(admin, ui http.Handler) http.Handler {
	if ui == nil {
		return admin
	}
	mux := http.NewServeMux()
	mux.Handle(queueui.Prefix, ui)
	mux.Handle("/", admin)
	return mux
}
