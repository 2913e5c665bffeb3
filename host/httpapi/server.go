// Package httpapi serves the host's HTTP endpoints: Kratos's courier
// delivery and web hooks, the forward-auth gate, and the health probes.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/wiring"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// MaxBodyBytes caps request bodies. A courier message with a large identity
// is a few KiB; anything near this is not from Kratos.
const MaxBodyBytes = 1 << 20

// Resetter performs a recovery reset and settles it at login.
type Resetter interface {
	Reset(ctx context.Context, req recovery.Request, pol recovery.Policy) (recovery.Result, error)
	CheckPassword(ctx context.Context, identifier, password string, pol recovery.Policy) (recovery.Verdict, error)
	PasswordChanged(ctx context.Context, identityID string, pol recovery.Policy) (map[string]any, error)
}

// Sender delivers a mail Kratos rendered.
type Sender interface {
	SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error)
}

// Check is one readiness check; it returns nil when the dependency is ready.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Observer counts what the handlers do (see package metrics).
type Observer interface {
	Message(templateType, outcome string)
	// Reset counts one reset; reason is empty or one of recovery's Reason
	// constants.
	Reset(trigger, outcome, reason string)
	PasswordHook(verdict string)
	// Unauthorized counts one call refused for its API key, by path.
	Unauthorized(path string)
}

// Deps are the Server's collaborators.
type Deps struct {
	// Config is called once per request for the current snapshot, so a
	// reload applies to the next message.
	Config   func() *config.Config
	Reset    Resetter
	Send     Sender
	Sessions Sessions
	Ready    []Check
	Now      func() time.Time
	Log      *slog.Logger
	Observer Observer
	// Metrics serves GET /metrics.
	Metrics http.Handler
	// Wiring says whether Kratos's password migration hook is proven; nil
	// means it is (kratos.verify_wiring: false).
	Wiring Wiring
	// RestartNeeded, when set, lists the restart-only config keys the file
	// changed since the start (config.Store.RestartNeeded).
	RestartNeeded func() []string
}

// Wiring is what the handlers need to know of the wiring check (package
// wiring): why the migration hook is not proven, or "" once it is.
type Wiring interface {
	Unproven() string
}

// Server holds the handlers' dependencies.
type Server struct {
	config   func() *config.Config
	reset    Resetter
	send     Sender
	sessions Sessions
	ready    []Check
	now      func() time.Time
	log      *slog.Logger
	observe  Observer
	metrics  http.Handler
	wiring   Wiring
	restart  func() []string
	// keyFault is the last call from Kratos with a wrong API key, until a
	// correctly keyed call arrives (see authenticated).
	keyFault atomic.Pointer[keyFault]
}

// keyFault is a refused call on one of Kratos's endpoints.
type keyFault struct {
	path string
	at   time.Time
}

// New returns a Server.
func New(d Deps) *Server {
	return &Server{config: d.Config, reset: d.Reset, send: d.Send, sessions: d.Sessions, ready: d.Ready,
		now: d.Now, log: d.Log, observe: d.Observer, metrics: d.Metrics, wiring: d.Wiring, restart: d.RestartNeeded}
}

// Handler routes the endpoints. Go's mux answers 405 for a known path with
// the wrong method.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /courier", s.authenticated(http.HandlerFunc(s.courier)))
	mux.Handle("POST /hooks/login", s.authenticated(http.HandlerFunc(s.loginHook)))
	mux.Handle("POST /hooks/settings", s.authenticated(http.HandlerFunc(s.settingsHook)))
	mux.Handle("POST /hooks/password", s.authenticated(http.HandlerFunc(s.passwordHook)))
	mux.HandleFunc("GET /gate", s.gate)
	mux.HandleFunc("GET /health/alive", s.alive)
	mux.HandleFunc("GET /health/ready", s.readiness)
	mux.Handle("GET /metrics", s.metrics)
	return mux
}

// authenticated refuses a request without the configured bearer key before
// its body is read.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearerMatches(r, s.config().Webhook.APIKey) {
			// A Kratos with the wrong key fails every courier message and,
			// through the login hook, every password login: readiness says
			// so until a correctly keyed call arrives.
			s.keyFault.Store(&keyFault{path: r.URL.Path, at: s.now()})
			s.observe.Unauthorized(r.URL.Path)
			s.log.Warn("request refused: missing or wrong API key", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "missing or wrong API key: send \"Authorization: Bearer <webhook.api_key>\"")
			return
		}
		s.keyFault.Store(nil)
		next.ServeHTTP(w, r)
	})
}

// bearerMatches compares the request's bearer key with key as fixed-length
// digests in constant time: neither the key's bytes nor its length can be
// learnt from response times. An empty key matches nothing.
func bearerMatches(r *http.Request, key string) bool {
	if key == "" {
		return false
	}
	got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
	want := sha256.Sum256([]byte("Bearer " + key))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (s *Server) courier(w http.ResponseWriter, r *http.Request) {
	cfg := s.config()
	var msg courierMessage
	if status, err := readJSON(w, r, &msg); err != nil {
		s.log.Warn("courier message refused", "error", err.Error(), "status", status)
		s.observe.Message(msg.TemplateType, "refused")
		writeError(w, status, err.Error())
		return
	}
	if err := msg.validate(); err != nil {
		s.log.Warn("courier message refused", "error", err.Error(), "template_type", msg.TemplateType)
		s.observe.Message(msg.TemplateType, "refused")
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	log := s.log.With("template_type", msg.TemplateType)
	if wiring.IsCanary(msg.Recipient) {
		// The wiring check's canary: the message proves Kratos's courier
		// reaches the gateway with the right key; .invalid takes no mail.
		log.Info("canary message of the wiring check answered; nothing sent", "event", "wiring_canary")
		s.observe.Message(msg.TemplateType, "canary")
		writeJSON(w, http.StatusOK, map[string]string{"status": "canary", "delivery": "none"})
		return
	}
	start := time.Now()
	// spent is where the message's time went outside the host, recorded
	// where each call is made: the reset reports its own Kratos and plugin
	// calls, the send below is timed here.
	var spent recovery.Spent

	// The whole answer has one deadline below the courier's own: Kratos
	// v26 gives up on a delivery after 10 s (v1.3.1 after 30 s) and then
	// retries, so a message must never still be in the gateway's hands
	// when Kratos sends it again.
	ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeouts.Courier)
	defer cancel()

	delivery := "as_rendered"
	if isRecovery(msg.TemplateType) && cfg.Enabled {
		identityID := msg.TemplateData.Identity.ID
		res, err := s.reset.Reset(ctx, recovery.Request{
			IdentityID: identityID,
			Recipient:  msg.Recipient,
			Trigger:    "self-service",
			Message:    msg.TemplateData.RecoveryCode + msg.TemplateData.RecoveryURL,
			KratosCode: msg.TemplateData.RecoveryCode,
			KratosURL:  msg.TemplateData.RecoveryURL,
		}, s.policy(cfg, recovery.User))
		if err != nil {
			status := statusOf(err)
			log.Error("recovery reset failed", "identity_id", msg.TemplateData.Identity.ID, "error", err.Error(), "status", status,
				"kratos_retries", kratosRetries)
			s.observe.Message(msg.TemplateType, "failed")
			s.observe.Reset("self-service", string(recovery.OutcomeFailed), "")
			writeError(w, status, err.Error())
			return
		}
		s.observe.Reset("self-service", string(res.Outcome), res.Reason)
		spent = res.Spent
		if res.Outcome != recovery.OutcomeKratosMessage {
			s.observe.Message(msg.TemplateType, string(res.Outcome))
			logHandled(log, string(res.Outcome), start, spent)
			// Duplicates and cooldowns are answered 2xx too: a retry would
			// change nothing, and the mail the user already has stays valid.
			answer := map[string]string{"status": string(res.Outcome), "delivery": "temporary_password"}
			if res.Reason != "" {
				answer["reason"] = res.Reason
			}
			writeJSON(w, http.StatusOK, answer)
			return
		}
		// The gateway cannot take this recovery over safely: Kratos's own
		// message (its code or link) goes out, so the user still recovers.
		delivery = "kratos_message"
	}

	sendStart := time.Now()
	resp, err := withTimeout(ctx, cfg.Timeouts.SMTP, func(ctx context.Context) (*sdk.SendMessageResponse, error) {
		return s.send.SendMessage(ctx, &sdk.SendMessageRequest{Recipient: msg.Recipient, Rendered: rendered(msg)})
	})
	spent.Plugin += time.Since(sendStart)
	if err != nil {
		status := statusOf(err)
		log.Error("delivery failed", "error", err.Error(), "status", status, "kratos_retries", kratosRetries, "delivery", delivery)
		s.observe.Message(msg.TemplateType, "failed")
		writeError(w, status, fmt.Sprintf("send mail: %v", err))
		return
	}
	s.observe.Message(msg.TemplateType, delivery)
	log.Info("delivered as rendered by Kratos", "smtp_reply", resp.ServerReply, "delivery", delivery)
	logHandled(log, delivery, start, spent)
	writeJSON(w, http.StatusOK, map[string]string{"status": "sent", "delivery": delivery})
}

func withTimeout[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// logHandled writes where a handled message's time went: waiting on Kratos,
// on the plugin (which includes SMTP), and the host's own work.
func logHandled(log *slog.Logger, outcome string, start time.Time, spent recovery.Spent) {
	total := time.Since(start)
	kratos, plugin := spent.Kratos, spent.Plugin
	log.Info("courier message handled", "outcome", outcome, "total_us", total.Microseconds(),
		"kratos_us", kratos.Microseconds(), "plugin_us", plugin.Microseconds(), "own_us", (total - kratos - plugin).Microseconds())
}

// policy is recovery's policy of one config snapshot for a reset asked by
// by, with the wiring check's state.
func (s *Server) policy(cfg *config.Config, by recovery.Asker) recovery.Policy {
	pol := recovery.NewPolicy(cfg, by)
	if s.wiring != nil {
		pol.HookUnproven = s.wiring.Unproven()
	}
	return pol
}

// rendered keeps Kratos's subject and bodies. "body" is the output of
// Kratos's plain-text template (courier.QueueEmail). Kratos v26 also sends
// its HTML template's output as "html_body": then the mail carries both
// parts as Kratos rendered them. The field itself says Kratos sent it, so no
// version check is needed. Without it (v1.3.1 sends no HTML at all over
// HTTP) a custom plain-text template that holds HTML is sent as HTML, so
// the content decides.
func rendered(m courierMessage) *sdk.RenderedMessage {
	if m.HTMLBody != "" {
		return &sdk.RenderedMessage{Subject: m.Subject, TextBody: m.Body, HTMLBody: m.HTMLBody}
	}
	if strings.HasPrefix(http.DetectContentType([]byte(m.Body)), "text/html") {
		return &sdk.RenderedMessage{Subject: m.Subject, HTMLBody: m.Body}
	}
	return &sdk.RenderedMessage{Subject: m.Subject, TextBody: m.Body}
}

// kratosRetries is the kratos_retries field of a failed courier answer:
// Kratos's courier retries every non-2xx answer, 4xx included, until
// courier.message_retries is spent.
const kratosRetries = true

// statusOf maps a failure to the answer Kratos gets. Kratos retries every
// non-2xx; 5xx marks the failures a retry can cure.
func statusOf(err error) int {
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

func (s *Server) alive(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readiness runs every check; the body names the failing ones so an
// operator sees why without reading logs. An unproven migration hook is
// reported but keeps the host ready: every mail still goes out, recoveries
// as Kratos rendered them. So are restart-only keys the file changed
// ("restart_needed"): the host runs on, with their old values.
func (s *Server) readiness(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	errs := map[string]string{}
	for _, c := range s.ready {
		if err := c.Run(ctx); err != nil {
			errs[c.Name] = err.Error()
		}
	}
	if f := s.keyFault.Load(); f != nil {
		errs["webhook_key"] = fmt.Sprintf("a call to %s at %s carried a wrong API key: Kratos fails every courier message and password login while its key differs from webhook.api_key (set it in kratos.yml); this clears with the next correctly keyed call",
			f.path, f.at.UTC().Format(time.RFC3339))
	}
	wiringState := "verified"
	if s.wiring != nil {
		if why := s.wiring.Unproven(); why != "" {
			wiringState = "unverified: " + why
		}
	}
	answer := map[string]any{"wiring": wiringState}
	if s.restart != nil {
		if keys := s.restart(); len(keys) > 0 {
			answer["restart_needed"] = strings.Join(keys, ", ")
		}
	}
	if len(errs) > 0 {
		answer["status"], answer["errors"] = "unavailable", errs
		writeJSON(w, http.StatusServiceUnavailable, answer)
		return
	}
	answer["status"] = "ok"
	if wiringState != "verified" {
		answer["status"] = "degraded"
	}
	writeJSON(w, http.StatusOK, answer)
}

// readJSON decodes a capped body into v and returns the status to answer
// with when it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", MaxBodyBytes)
		}
		return http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field == "" {
			return http.StatusBadRequest, fmt.Errorf("body must be a JSON object, not a JSON %s", typeErr.Value)
		}
		if errors.As(err, &typeErr) {
			return http.StatusBadRequest, fmt.Errorf("body field %s must be a JSON %s", typeErr.Field, jsonKind(typeErr.Type))
		}
		return http.StatusBadRequest, fmt.Errorf("body is not a JSON object: %w", err)
	}
	return 0, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
