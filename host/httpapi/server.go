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
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/wiring"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// MaxBodyBytes caps request bodies. A courier message with a large identity
// is a few KiB; anything near this is not from Kratos.
const MaxBodyBytes = 1 << 20

// Outbox stores a courier message for later delivery (package outbox).
type Outbox interface {
	Enqueue(ctx context.Context, msg courier.Message) (courier.Answer, error)
}

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
	// Degrades: a failure makes the host "degraded" (200, listed under
	// "degraded") rather than unavailable: it still does its job, and
	// taking it out of rotation would not help (e.g. a backlog that every
	// host sharing the queue sees alike).
	Degrades bool
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
	// Outbox, when set, takes courier messages instead of delivering them
	// while Kratos waits (queue.postgres_dsn).
	Outbox Outbox
	// Courier delivers a message while Kratos waits; nil: one built from
	// Reset, Send, Observer, Wiring and Log.
	Courier *courier.Deliverer
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
	deliver  *courier.Deliverer
	outbox   Outbox
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
	deliver := d.Courier
	if deliver == nil {
		var w courier.Wiring
		if d.Wiring != nil {
			w = d.Wiring
		}
		deliver = courier.New(d.Reset, d.Send, d.Observer, w, d.Log)
	}
	return &Server{config: d.Config, reset: d.Reset, send: d.Send, sessions: d.Sessions, ready: d.Ready,
		now: d.Now, log: d.Log, observe: d.Observer, metrics: d.Metrics, wiring: d.Wiring, restart: d.RestartNeeded,
		deliver: deliver, outbox: d.Outbox}
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
	// The whole answer has one deadline below the courier's own: Kratos
	// v26 gives up on a delivery after 10 s (v1.3.1 after 30 s) and then
	// retries, so a message must never still be in the gateway's hands
	// when Kratos sends it again.
	ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeouts.Courier)
	defer cancel()
	if s.outbox != nil {
		// The outbox answers once the message is stored; its workers
		// deliver it (package outbox).
		answer, err := s.outbox.Enqueue(ctx, msg.message())
		if err != nil {
			log.Error("courier message not queued", "error", err.Error(), "status", http.StatusServiceUnavailable, "kratos_retries", true)
			s.observe.Message(msg.TemplateType, "failed")
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, answer)
		return
	}
	answer, err := s.deliver.Deliver(ctx, cfg, msg.message())
	if err != nil {
		writeError(w, courier.Status(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

// policy is recovery's policy of one config snapshot for a reset asked by
// by, with the wiring check's state.
func (s *Server) policy(cfg *config.Config, by recovery.Asker) recovery.Policy {
	return s.deliver.Policy(cfg, by)
}

// statusOf maps a failure to the answer Kratos or an admin gets.
func statusOf(err error) int { return courier.Status(err) }

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
	errs, degraded := map[string]string{}, map[string]string{}
	for _, c := range s.ready {
		if err := c.Run(ctx); err != nil {
			if c.Degrades {
				degraded[c.Name] = err.Error()
			} else {
				errs[c.Name] = err.Error()
			}
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
	if len(degraded) > 0 {
		answer["degraded"] = degraded
	}
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
	if wiringState != "verified" || len(degraded) > 0 {
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
