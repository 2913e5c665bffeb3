package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
)

// Restart-only keys the file changed are named by readiness without
// failing it, and so is a check that only degrades; the rest of the answer
// keeps its shape.
func TestReadinessNamesKeysThatNeedARestart(t *testing.T) {
	t.Parallel()
	failing := Check{Name: "kratos", Run: func(context.Context) error { return errors.New("connection refused") }}
	backlog := Check{Name: "queue_backlog", Degrades: true, Run: func(context.Context) error { return errors.New("a message is late") }}
	tests := []struct {
		name     string
		restart  []string
		checks   []Check
		wantCode int
		wantBody string
	}{
		{"nothing changed", nil, nil, http.StatusOK, `{"status":"ok","wiring":"verified"}`},
		{"keys changed", []string{"listen", "log.format"}, nil, http.StatusOK,
			`{"restart_needed":"listen, log.format","status":"ok","wiring":"verified"}`},
		{"keys changed and a check fails", []string{"kratos.verify_wiring"}, []Check{failing}, http.StatusServiceUnavailable,
			`{"errors":{"kratos":"connection refused"},"restart_needed":"kratos.verify_wiring","status":"unavailable","wiring":"verified"}`},
		{"a check that degrades fails", nil, []Check{backlog}, http.StatusOK,
			`{"degraded":{"queue_backlog":"a message is late"},"status":"degraded","wiring":"verified"}`},
		{"a check that degrades and one that fails", nil, []Check{backlog, failing}, http.StatusServiceUnavailable,
			`{"degraded":{"queue_backlog":"a message is late"},"errors":{"kratos":"connection refused"},"status":"unavailable","wiring":"verified"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(true)
			m := metrics.New(func() int { return 0 })
			rec := &recorder{}
			h := New(Deps{Config: func() *config.Config { return cfg }, Reset: rec, Send: rec.sender(), Sessions: rec, Now: time.Now, Ready: tt.checks,
				Log: slog.New(slog.DiscardHandler), Observer: m, Metrics: m.Handler(), RestartNeeded: func() []string { return tt.restart }}).Handler()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health/ready", nil))
			if got := strings.TrimSpace(w.Body.String()); w.Code != tt.wantCode || got != tt.wantBody {
				t.Errorf("readiness = %d %s, want %d %s", w.Code, got, tt.wantCode, tt.wantBody)
			}
		})
	}
}
