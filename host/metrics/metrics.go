// Package metrics defines the host's Prometheus metrics and the small
// wrappers that record them; no label ever carries a secret or a user.
package metrics

import (
	"context"
	"net/http"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Metrics are the host's metrics, registered on their own registry.
type Metrics struct {
	reg *prometheus.Registry

	messages  *prometheus.CounterVec
	resets    *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	logins    *prometheus.CounterVec
	smtpStage *prometheus.HistogramVec
	reloads   *prometheus.CounterVec
	refused   *prometheus.CounterVec
	wiring    prometheus.Gauge
	notices   *prometheus.CounterVec
	jobs      *prometheus.CounterVec
}

// New registers the metrics. restarts reports the plugin relaunches so far.
func New(restarts func() int) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_messages_total",
			Help: "Courier messages from Kratos by template type and outcome (sent, as_rendered, kratos_message, duplicate, cooldown, refused, failed).",
		}, []string{"template_type", "outcome"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_resets_total",
			Help: "Temporary password resets by trigger (self-service, admin) and outcome; outcome=cooldown counts resets refused by password.cooldown.",
		}, []string{"trigger", "outcome"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_kratos_message_total",
			Help: "Recoveries the gateway did not take over, so Kratos's own code or link went out and nothing changed, by reason (unverifiable_hash, foreign_migration_hook, sealed_hash_unreadable).",
		}, []string{"reason"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_password_hook_total",
			Help: "Answers of the password migration hook: temporary, current, no_match, error.",
		}, []string{"verdict"}),
		smtpStage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kratos_email_gateway_smtp_stage_seconds",
			Help:    "Duration of each SMTP stage of the deliveries that were accepted.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"stage"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_unauthorized_total",
			Help: "Calls on Kratos's endpoints refused for a missing or wrong API key, by path.",
		}, []string{"path"}),
		wiring: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kratos_email_gateway_wiring_verified",
			Help: "1 once the gateway proved that Kratos calls its password migration hook (kratos.verify_wiring), else 0; while 0, self-service recoveries get Kratos's own message.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_config_reloads_total",
			Help: "Config file reloads by result (applied, refused).",
		}, []string{"result"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_notices_total",
			Help: "Notices by kind (password_changed, reset_void) and result: sent, retried (a try failed, another is due), failed (given up), dropped (queue full or shutting down), skipped (switched off, no recovery address, the change was not stored).",
		}, []string{"kind", "result"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kratos_email_gateway_queue_jobs_total",
			Help: "Outbox jobs by queue (recovery, mail) and result: queued, duplicate (Kratos's retry of a message taken), done, retried, discarded (given up, with an audit line).",
		}, []string{"queue", "result"}),
	}
	m.reg.MustRegister(m.messages, m.resets, m.fallbacks, m.logins, m.smtpStage, m.reloads, m.refused, m.wiring, m.notices, m.jobs,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "kratos_email_gateway_plugin_restarts_total",
			Help: "Relaunches of the email plugin after it died.",
		}, func() float64 { return float64(restarts()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// templateType bounds the label to the names Kratos uses, so a caller
// cannot grow the series without bound.
var templateType = regexp.MustCompile(`^[a-z_]{1,40}$`)

// Message counts one courier message.
func (m *Metrics) Message(tmpl, outcome string) {
	if !templateType.MatchString(tmpl) {
		tmpl = "other"
	}
	m.messages.WithLabelValues(tmpl, outcome).Inc()
}

// Reset counts one reset; a recovery left to Kratos is also counted by its
// reason, which is one of a fixed set (recovery's Reason constants).
func (m *Metrics) Reset(trigger, outcome, reason string) {
	m.resets.WithLabelValues(trigger, outcome).Inc()
	if outcome == "kratos_message" {
		m.fallbacks.WithLabelValues(reason).Inc()
	}
}

// PasswordHook counts one answer of the migration hook.
func (m *Metrics) PasswordHook(verdict string) { m.logins.WithLabelValues(verdict).Inc() }

// Unauthorized counts one call refused for its API key; the path is one of
// the host's routes, so the label stays bounded.
func (m *Metrics) Unauthorized(path string) { m.refused.WithLabelValues(path).Inc() }

// Wiring records whether the migration hook is proven.
func (m *Metrics) Wiring(proven bool) {
	v := 0.0
	if proven {
		v = 1
	}
	m.wiring.Set(v)
}

// noticeKinds and noticeResults bound the notice metric's labels to the
// values package notify uses.
var (
	noticeKinds   = map[string]bool{sdk.NoticePasswordChanged: true, sdk.NoticeResetVoid: true}
	noticeResults = map[string]bool{"sent": true, "retried": true, "failed": true, "dropped": true, "skipped": true}
)

// Notice counts one event of a notice (package notify); labels outside the
// known values become "other", so no caller can grow the series.
// jobQueues and jobResults bound the queue metric's labels.
var (
	jobQueues  = map[string]bool{"recovery": true, "mail": true}
	jobResults = map[string]bool{"queued": true, "duplicate": true, "done": true, "retried": true, "discarded": true}
)

// Job counts one event of an outbox job.
func (m *Metrics) Job(queue, result string) {
	if !jobQueues[queue] {
		queue = "other"
	}
	if !jobResults[result] {
		result = "other"
	}
	m.jobs.WithLabelValues(queue, result).Inc()
}

func (m *Metrics) Notice(kind, result string) {
	if !noticeKinds[kind] {
		kind = "other"
	}
	if !noticeResults[result] {
		result = "other"
	}
	m.notices.WithLabelValues(kind, result).Inc()
}

// ConfigReload counts one reload.
func (m *Metrics) ConfigReload(result string) { m.reloads.WithLabelValues(result).Inc() }

// ObservedGateway is the one observer around the plugin: it records the
// SMTP stages of every delivery that passes through it; everything else
// goes to the plugin unchanged. The time a courier message spends in the
// plugin is recorded where the call is made (recovery.Spent).
type ObservedGateway struct {
	sdk.Remote
	m *Metrics
}

// Observe wraps gw; the capabilities gw lacks answer sdk.ErrUnsupported
// (sdk.AsRemote).
func (m *Metrics) Observe(gw sdk.Gateway) *ObservedGateway {
	return &ObservedGateway{Remote: sdk.AsRemote(gw), m: m}
}

// SendMessage forwards and records the delivery's stages.
func (o *ObservedGateway) SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
	resp, err := o.Remote.SendMessage(ctx, req)
	if err == nil {
		for _, s := range resp.Trace {
			o.m.smtpStage.WithLabelValues(s.Stage).Observe(s.Duration.Seconds())
		}
	}
	return resp, err
}
