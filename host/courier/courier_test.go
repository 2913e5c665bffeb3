package courier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Status tells Kratos (and the outbox) whether a retry can help: 4xx for
// what a retry repeats, 5xx for what it may cure.
func TestStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("look up: %w", kratosadmin.ErrNotFound), http.StatusNotFound},
		{recovery.ErrRecipientMismatch, http.StatusUnprocessableEntity},
		{recovery.ErrNoRecoveryAddress, http.StatusUnprocessableEntity},
		{fmt.Errorf("render: %w", sdk.ErrInvalidArgument), http.StatusUnprocessableEntity},
		{kratosadmin.ErrRejected, http.StatusUnprocessableEntity},
		{fmt.Errorf("smtp rcpt_to: %w", sdk.ErrRejected), http.StatusBadGateway},
		{fmt.Errorf("send: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{fmt.Errorf("smtp connect: %w", sdk.ErrUnavailable), http.StatusServiceUnavailable},
		{errors.New("anything else"), http.StatusServiceUnavailable},
	} {
		if got := Status(tt.err); got != tt.want {
			t.Errorf("Status(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestRendered(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		msg  Message
		want *sdk.RenderedMessage
	}{
		{"text", Message{Subject: "s", Body: "Your code is 123456"}, &sdk.RenderedMessage{Subject: "s", TextBody: "Your code is 123456"}},
		{"HTML in the text template (v1.3.1)", Message{Subject: "s", Body: "<html><body>hi</body></html>"}, &sdk.RenderedMessage{Subject: "s", HTMLBody: "<html><body>hi</body></html>"}},
		{"both (v26)", Message{Subject: "s", Body: "hi", HTMLBody: "<p>hi</p>"}, &sdk.RenderedMessage{Subject: "s", TextBody: "hi", HTMLBody: "<p>hi</p>"}},
	} {
		if diff := cmp.Diff(tt.want, Rendered(tt.msg)); diff != "" {
			t.Errorf("%s: Rendered (-want +got):\n%s", tt.name, diff)
		}
	}
}

type failingSender struct{}

func (failingSender) SendMessage(context.Context, *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
	return nil, fmt.Errorf("smtp connect: %w", sdk.ErrUnavailable)
}

type noObserver struct{}

func (noObserver) Message(string, string)       {}
func (noObserver) Reset(string, string, string) {}

// A failed delivery's log says who sends the message again: Kratos, when
// the answer goes to it; not Kratos, when the outbox holds the message
// (the outbox logs its own decision).
func TestFailureLogSaysWhoRetries(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []Option
		want string
	}{
		{"synchronous", nil, `"kratos_retries":true`},
		{"outbox", []Option{ForOutbox()}, `"kratos_retries":false`},
	} {
		var logs bytes.Buffer
		d := New(nil, failingSender{}, noObserver{}, nil, slog.New(slog.NewJSONHandler(&logs, nil)), tt.opts...)
		cfg := &config.Config{Timeouts: config.Timeouts{SMTP: time.Second}}
		_, err := d.Deliver(context.Background(), cfg, Message{Recipient: "a@example.org", Subject: "s", Body: "b", TemplateType: "verification_code_valid"})
		if Status(err) != http.StatusServiceUnavailable {
			t.Fatalf("%s: Deliver = %v, want a 503-class failure", tt.name, err)
		}
		if !strings.Contains(logs.String(), tt.want) {
			t.Errorf("%s: the failure log lacks %s:\n%s", tt.name, tt.want, logs.String())
		}
	}
}
