// Package courier delivers one message of Kratos's courier: a temporary
// password for a recovery message while the gateway is enabled, otherwise
// the mail as Kratos rendered it. The HTTP endpoint runs it while Kratos
// waits; the outbox runs it later, from a queued job.
package courier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Message is the part of a courier message the gateway acts on, already
// validated by whoever received it.
type Message struct {
	Recipient    string `json:"recipient"`
	Subject      string `json:"subject"`
	Body         string `json:"body"`
	HTMLBody     string `json:"html_body,omitempty"`
	TemplateType string `json:"template_type"`
	// IdentityID, RecoveryCode and RecoveryURL come from template_data;
	// the code and the link are secrets.
	IdentityID   string `json:"identity_id,omitempty"`
	RecoveryCode string `json:"recovery_code,omitempty"`
	RecoveryURL  string `json:"recovery_url,omitempty"`
}

// Recovery template types (courier/template/type.go): the code method and the
// link method. Both become a temporary password while the gateway is enabled.
const (
	TemplateRecoveryCodeValid = "recovery_code_valid"
	TemplateRecoveryValid     = "recovery_valid"
)

// IsRecovery reports whether a template type asks for a recovery.
func IsRecovery(templateType string) bool {
	return templateType == TemplateRecoveryCodeValid || templateType == TemplateRecoveryValid
}

// Resetter performs a recovery reset.
type Resetter interface {
	Reset(ctx context.Context, req recovery.Request, pol recovery.Policy) (recovery.Result, error)
}

// Sender delivers a mail Kratos rendered.
type Sender interface {
	SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error)
}

// Observer counts the deliveries (see package metrics).
type Observer interface {
	Message(templateType, outcome string)
	// Reset counts one reset; reason is empty or one of recovery's Reason
	// constants.
	Reset(trigger, outcome, reason string)
}

// Wiring says why Kratos's password migration hook is not proven, or ""
// once it is (package wiring).
type Wiring interface {
	Unproven() string
}

// Deliverer delivers courier messages. It is safe for concurrent use.
type Deliverer struct {
	reset   Resetter
	send    Sender
	observe Observer
	log     *slog.Logger
	// wiring is nil when the check is off (kratos.verify_wiring: false).
	wiring Wiring
	// kratosRetries says whether a failure goes back to Kratos's courier,
	// which sends the message again; the outbox retries on its own and
	// logs what it decided.
	kratosRetries bool
}

// Option changes a Deliverer.
type Option func(*Deliverer)

// ForOutbox tells the Deliverer that its failures go to the outbox, not to
// Kratos: its logs then do not promise Kratos's retry.
func ForOutbox() Option { return func(d *Deliverer) { d.kratosRetries = false } }

// New returns a Deliverer; wiring may be nil.
func New(reset Resetter, send Sender, observe Observer, wiring Wiring, log *slog.Logger, opts ...Option) *Deliverer {
	d := &Deliverer{reset: reset, send: send, observe: observe, wiring: wiring, log: log, kratosRetries: true}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Answer is what a delivered message is answered with. The fields are in
// the order of the JSON keys before Answer existed (a map's: sorted).
type Answer struct {
	Delivery string `json:"delivery"`
	// Job is the outbox job holding the message (`gateway queue list`);
	// the synchronous path has none.
	Job    int64  `json:"job,omitempty,string"`
	Reason string `json:"reason,omitempty"`
	Status string `json:"status"`
}

// Deliver handles msg under cfg within ctx: it returns once the mail was
// accepted by the SMTP server (or the message needed no mail: a duplicate,
// a cooldown). Its errors say, through Status, whether a retry may help.
func (d *Deliverer) Deliver(ctx context.Context, cfg *config.Config, msg Message) (Answer, error) {
	log := d.log.With("template_type", msg.TemplateType)
	start := time.Now()
	// spent is where the message's time went outside the host, recorded
	// where each call is made: the reset reports its own Kratos and plugin
	// calls, the send below is timed here.
	var spent recovery.Spent

	delivery := "as_rendered"
	if IsRecovery(msg.TemplateType) && cfg.Enabled {
		res, err := d.reset.Reset(ctx, recovery.Request{
			IdentityID: msg.IdentityID,
			Recipient:  msg.Recipient,
			Trigger:    "self-service",
			Message:    msg.RecoveryCode + msg.RecoveryURL,
			KratosCode: msg.RecoveryCode,
			KratosURL:  msg.RecoveryURL,
		}, d.Policy(cfg, recovery.User))
		if err != nil {
			log.Error("recovery reset failed", "identity_id", msg.IdentityID, "error", err.Error(), "status", Status(err),
				"kratos_retries", d.kratosRetries)
			d.observe.Message(msg.TemplateType, "failed")
			d.observe.Reset("self-service", string(recovery.OutcomeFailed), "")
			return Answer{}, err
		}
		d.observe.Reset("self-service", string(res.Outcome), res.Reason)
		spent = res.Spent
		if res.Outcome != recovery.OutcomeKratosMessage {
			d.observe.Message(msg.TemplateType, string(res.Outcome))
			logHandled(log, string(res.Outcome), start, spent)
			// Duplicates and cooldowns are answered 2xx too: a retry would
			// change nothing, and the mail the user already has stays valid.
			return Answer{Status: string(res.Outcome), Delivery: "temporary_password", Reason: res.Reason}, nil
		}
		// The gateway cannot take this recovery over safely: Kratos's own
		// message (its code or link) goes out, so the user still recovers.
		delivery = "kratos_message"
	}

	sendStart := time.Now()
	sendCtx, cancel := context.WithTimeout(ctx, cfg.Timeouts.SMTP)
	resp, err := d.send.SendMessage(sendCtx, &sdk.SendMessageRequest{Recipient: msg.Recipient, Rendered: Rendered(msg)})
	cancel()
	spent.Plugin += time.Since(sendStart)
	if err != nil {
		log.Error("delivery failed", "error", err.Error(), "status", Status(err), "kratos_retries", d.kratosRetries, "delivery", delivery)
		d.observe.Message(msg.TemplateType, "failed")
		return Answer{}, fmt.Errorf("send mail: %w", err)
	}
	d.observe.Message(msg.TemplateType, delivery)
	log.Info("delivered as rendered by Kratos", "smtp_reply", resp.ServerReply, "delivery", delivery)
	logHandled(log, delivery, start, spent)
	return Answer{Status: "sent", Delivery: delivery}, nil
}

// Policy is recovery's policy of one config snapshot for a reset asked by
// by, with the wiring check's state.
func (d *Deliverer) Policy(cfg *config.Config, by recovery.Asker) recovery.Policy {
	pol := recovery.NewPolicy(cfg, by)
	if d.wiring != nil {
		pol.HookUnproven = d.wiring.Unproven()
	}
	return pol
}

// logHandled writes where a handled message's time went: waiting on Kratos,
// on the plugin (which includes SMTP), and the host's own work.
func logHandled(log *slog.Logger, outcome string, start time.Time, spent recovery.Spent) {
	total := time.Since(start)
	kratos, plugin := spent.Kratos, spent.Plugin
	log.Info("courier message handled", "outcome", outcome, "total_us", total.Microseconds(),
		"kratos_us", kratos.Microseconds(), "plugin_us", plugin.Microseconds(), "own_us", (total - kratos - plugin).Microseconds())
}

// Rendered keeps Kratos's subject and bodies. "body" is the output of
// Kratos's plain-text template (courier.QueueEmail). Kratos v26 also sends
// its HTML template's output as "html_body": then the mail carries both
// parts as Kratos rendered them. The field itself says Kratos sent it, so no
// version check is needed. Without it (v1.3.1 sends no HTML at all over
// HTTP) a custom plain-text template that holds HTML is sent as HTML, so
// the content decides.
func Rendered(m Message) *sdk.RenderedMessage {
	if m.HTMLBody != "" {
		return &sdk.RenderedMessage{Subject: m.Subject, TextBody: m.Body, HTMLBody: m.HTMLBody}
	}
	if strings.HasPrefix(http.DetectContentType([]byte(m.Body)), "text/html") {
		return &sdk.RenderedMessage{Subject: m.Subject, HTMLBody: m.Body}
	}
	return &sdk.RenderedMessage{Subject: m.Subject, TextBody: m.Body}
}

// Status maps a failure to the HTTP status Kratos gets. Kratos retries every
// non-2xx; 5xx marks the failures a retry can cure, 4xx those it cannot.
func Status(err error) int {
	switch {
	case errors.Is(err, kratosadmin.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, recovery.ErrRecipientMismatch), errors.Is(err, recovery.ErrNoRecoveryAddress):
		return http.StatusUnprocessableEntity
	case errors.Is(err, sdk.ErrInvalidArgument), errors.Is(err, kratosadmin.ErrRejected):
		return http.StatusUnprocessableEntity
	case errors.Is(err, sdk.ErrRejected):
		return http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	default:
		return http.StatusServiceUnavailable
	}
}
