// Package wiring proves that Kratos is wired to the gateway as kratos.yml
// must wire it: each stage drives a real Kratos flow with a throwaway canary
// identity and checks that the gateway's endpoint answered, because one
// missing block in kratos.yml (the password migration hook above all) locks
// recovering users out while everything else looks healthy.
package wiring

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
)

// CanaryDomain is the domain of every canary address. .invalid never
// resolves (RFC 2606), so no mail to it can be delivered: the gateway
// answers Kratos's courier for it without touching SMTP.
const CanaryDomain = "canary.invalid"

// canarySlots bounds the canary addresses: a run takes the first free one,
// so two hosts checking at once do not collide, and a run finds what a
// killed run left behind by looking up a handful of addresses.
const canarySlots = 8

// staleAfter is when a canary is certainly left behind: a whole run takes
// far less (every stage has a deadline).
const staleAfter = 2 * time.Minute

// markerKey marks a canary in metadata_admin, which self-service cannot
// write.
const markerKey = "email_gateway_canary"

// IsCanary reports whether a mail address is a canary's.
func IsCanary(address string) bool {
	i := strings.LastIndexByte(address, '@')
	return i >= 0 && strings.EqualFold(address[i+1:], CanaryDomain)
}

func canaryAddress(slot int) string {
	return fmt.Sprintf("kratos-email-gateway-canary-%d@%s", slot, CanaryDomain)
}

// Admin is what the checks need from Kratos's admin API.
type Admin interface {
	Ready(ctx context.Context) error
	CreateIdentity(ctx context.Context, schemaID string, traits, metadataAdmin map[string]any) (*kratosadmin.Identity, error)
	DeleteIdentity(ctx context.Context, id string) error
	FindByIdentifier(ctx context.Context, identifier string) (*kratosadmin.Identity, error)
	Identity(ctx context.Context, id string) (*kratosadmin.Identity, error)
	SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error
	Patch(ctx context.Context, id string, ops ...kratosadmin.Op) error
	CourierMessages(ctx context.Context, recipient string) ([]kratosadmin.CourierMessage, error)
}

// Checker runs the stages against one Kratos.
type Checker struct {
	Admin Admin
	// PublicURL is Kratos's public API, where the flows run.
	PublicURL string
	// HTTP calls the public API.
	HTTP *http.Client
	// Keys are the gateway's secrets.cipher: the canary's pending reset is
	// keyed with them, so only a gateway with the same keys accepts it.
	Keys *sealing.Keyring
	Log  *slog.Logger
	// Poll is how often the courier stage looks at Kratos's queue, and
	// CourierWait how long it waits for the message to be delivered.
	Poll        time.Duration
	CourierWait time.Duration
}

// Stage is the result of one stage. Fix names what to change when it
// failed, a kratos.yml key above all.
type Stage struct {
	Name     string
	Err      error
	Fix      string
	Skipped  bool
	Duration time.Duration
}

// Stage names, in the order Doctor runs them.
const (
	StageAdmin     = "kratos admin API"
	StagePublic    = "kratos public API"
	StageSchema    = "identity schema"
	StageCanary    = "canary identity"
	StageCourier   = "courier delivery"
	StageHook      = "password migration hook"
	StageSettings  = "settings hook"
	StageLoginHook = "login hook"
	StageCleanup   = "canary removed"
)

// Report is the stages of one run.
type Report struct {
	Stages []Stage
}

// Err is the first failed stage as an error naming the stage and the fix,
// or nil when every stage passed.
func (r Report) Err() error {
	for _, s := range r.Stages {
		if s.Err != nil {
			if s.Fix != "" {
				return fmt.Errorf("%s: %w; fix: %s", s.Name, s.Err, s.Fix)
			}
			return fmt.Errorf("%s: %w", s.Name, s.Err)
		}
	}
	return nil
}

// Proven is nil when the stages the migration hook depends on passed, or
// the first one's failure. A canary that could not be deleted does not make
// the hook unproven: it is logged with its id and the next run removes it.
func (r Report) Proven() error {
	var rest Report
	for _, s := range r.Stages {
		if s.Name != StageCleanup {
			rest.Stages = append(rest.Stages, s)
		}
	}
	return rest.Err()
}

// run is one run of stages with the canary it created.
type run struct {
	c      *Checker
	report Report
	canary *kratosadmin.Identity
	addr   string
}

// stage runs f unless an earlier stage it depends on failed (ready is
// false); a skipped stage is reported as such.
func (r *run) stage(name, fix string, ready bool, f func() error) {
	if !ready {
		r.report.Stages = append(r.report.Stages, Stage{Name: name, Skipped: true})
		return
	}
	start := time.Now()
	err := f()
	r.report.Stages = append(r.report.Stages, Stage{Name: name, Err: err, Fix: fixIf(err, fix), Duration: time.Since(start)})
}

// passed reports whether the last stage ran and passed.
func (r *run) passed() bool {
	last := r.report.Stages[len(r.report.Stages)-1]
	return !last.Skipped && last.Err == nil
}

// fixIf keeps the fix only when there is something to fix; a stage's error
// may carry a more precise one (see fixError).
func fixIf(err error, fix string) string {
	var fe *fixError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &fe):
		return fe.fix
	}
	return fix
}

// fixError is a stage failure that knows its own fix.
type fixError struct {
	err error
	fix string
}

func (e *fixError) Error() string { return e.err.Error() }
func (e *fixError) Unwrap() error { return e.err }

func withFix(fix string, format string, args ...any) error {
	return &fixError{err: fmt.Errorf(format, args...), fix: fix}
}

// Doctor runs every stage: both APIs, the canary, the courier, the password
// migration hook, the settings hook and the login hook, and removes the
// canary on every path.
func (c *Checker) Doctor(ctx context.Context) Report {
	return c.check(ctx, true)
}

// VerifyHook runs only what the gateway needs before it relies on the
// migration hook: the APIs, the canary and the hook stage.
func (c *Checker) VerifyHook(ctx context.Context) Report {
	return c.check(ctx, false)
}

func (c *Checker) check(ctx context.Context, all bool) Report {
	r := &run{c: c}
	r.stage(StageAdmin, "kratos.admin_url in gateway.yaml (Kratos's admin API, serve.admin in kratos.yml)", true, func() error {
		return c.Admin.Ready(ctx)
	})
	adminUp := r.passed()
	r.stage(StagePublic, "kratos.public_url in gateway.yaml (Kratos's public API, serve.public in kratos.yml)", true, func() error {
		return c.publicReady(ctx)
	})
	var schemaID string
	var schema json.RawMessage
	r.stage(StageSchema, "the identity schema (identity.schemas in kratos.yml): mark the login trait as a password identifier and the mail trait for recovery by email", r.passed(), func() error {
		var err error
		schemaID, schema, err = c.schema(ctx)
		return err
	})
	defer r.cleanup(ctx)
	r.stage(StageCanary, "the identity schema must accept a canary with the address "+canaryAddress(0), adminUp && r.passed(), func() error {
		return r.createCanary(ctx, schemaID, schema)
	})
	// Once the canary exists, each stage checks one part of kratos.yml on
	// its own, so one run names every part that is wrong.
	if all {
		r.stage(StageCourier, "courier.delivery_strategy: http, courier.http.request_config.url (the gateway's /courier) and courier.http.request_config.auth.config.value (\"Bearer <webhook.api_key>\") in kratos.yml", r.canary != nil, func() error {
			return r.courier(ctx)
		})
	}
	var token string
	r.stage(StageHook, "selfservice.methods.password.config.migrate_hook in kratos.yml: enabled: true, config.url the gateway's /hooks/password, config.auth.config.value \"Bearer <webhook.api_key>\"", r.canary != nil, func() error {
		var err error
		token, err = r.migrationHook(ctx)
		return err
	})
	if all {
		r.stage(StageSettings, "selfservice.flows.settings.after.password.hooks in kratos.yml: a web_hook to the gateway's /hooks/settings with response.parse: true", token != "", func() error {
			return r.settingsHook(ctx, token)
		})
		r.stage(StageLoginHook, "selfservice.flows.login.after.password.hooks in kratos.yml: a web_hook to the gateway's /hooks/login with can_interrupt: true", r.canary != nil, func() error {
			return r.loginHook(ctx)
		})
	}
	r.cleanup(ctx)
	return r.report
}

// cleanup deletes the canary once, whatever happened; it runs as a
// deferred call too, so a panic in a stage still removes it.
func (r *run) cleanup(ctx context.Context) {
	if r.canary == nil {
		return
	}
	id := r.canary.ID
	r.canary = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := r.c.Admin.DeleteIdentity(ctx, id)
	if err != nil {
		r.c.Log.Error("wiring check: the canary identity could not be deleted; the next check removes it", "canary_identity_id", id, "error", err.Error())
	}
	r.report.Stages = append(r.report.Stages, Stage{Name: StageCleanup, Err: err, Duration: time.Since(start),
		Fix: fixIf(err, "delete identity "+id+" with Kratos's admin API; the next check also removes it")})
}

func (c *Checker) publicReady(ctx context.Context) error {
	var out map[string]any
	status, err := c.call(ctx, http.MethodGet, "/health/ready", nil, nil, &out)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET /health/ready answered HTTP %d", status)
	}
	return nil
}

// schema picks the identity schema the canary uses (the one named
// "default", else the first Kratos serves) and checks that canary traits
// can be derived from it.
func (c *Checker) schema(ctx context.Context) (string, json.RawMessage, error) {
	var schemas []struct {
		ID     string          `json:"id"`
		Schema json.RawMessage `json:"schema"`
	}
	status, err := c.call(ctx, http.MethodGet, "/schemas", nil, nil, &schemas)
	if err != nil {
		return "", nil, err
	}
	if status != http.StatusOK || len(schemas) == 0 {
		return "", nil, fmt.Errorf("GET /schemas answered HTTP %d with %d schemas", status, len(schemas))
	}
	pick := schemas[0]
	for _, s := range schemas {
		if s.ID == "default" {
			pick = s
		}
	}
	if _, err := canaryTraits(pick.Schema, canaryAddress(0)); err != nil {
		return "", nil, fmt.Errorf("schema %q: %w", pick.ID, err)
	}
	return pick.ID, pick.Schema, nil
}

// createCanary takes the first free canary slot, first removing canaries
// that a killed run left behind.
func (r *run) createCanary(ctx context.Context, schemaID string, schema json.RawMessage) error {
	c := r.c
	now := time.Now()
	for slot := range canarySlots {
		addr := canaryAddress(slot)
		old, err := c.Admin.FindByIdentifier(ctx, addr)
		switch {
		case errors.Is(err, kratosadmin.ErrNotFound):
		case err != nil:
			return err
		default:
			// Only the gateway writes the marker: self-service cannot set
			// metadata_admin. An unmarked identity on a canary address was
			// registered by someone else to hold the slot, and .invalid
			// takes no mail, so it is nobody's account: it goes at once.
			_, ours := old.MetadataAdmin[markerKey]
			if ours && now.Sub(old.CreatedAt) < staleAfter {
				continue // another run's canary, in use right now
			}
			if err := c.Admin.DeleteIdentity(ctx, old.ID); err != nil {
				return fmt.Errorf("remove the identity %s on the canary address %s: %w", old.ID, addr, err)
			}
			why := "left behind by an earlier run"
			if !ours {
				why = "not created by the gateway"
			}
			c.Log.Warn("wiring check: removed an identity on a canary address", "canary_identity_id", old.ID,
				"created_at", old.CreatedAt.Format(time.RFC3339), "reason", why)
		}
		traits, err := canaryTraits(schema, addr)
		if err != nil {
			return err
		}
		id, err := c.Admin.CreateIdentity(ctx, schemaID, traits,
			map[string]any{markerKey: map[string]any{"created_at": now.UTC().Format(time.RFC3339)}})
		if errors.Is(err, kratosadmin.ErrRejected) && strings.Contains(err.Error(), "409") {
			continue // another run took the slot in the meantime
		}
		if err != nil {
			return err
		}
		r.canary, r.addr = id, addr
		c.Log.Info("wiring check: canary identity created", "canary_identity_id", id.ID)
		return nil
	}
	return fmt.Errorf("all %d canary addresses are in use by runs younger than %s; try again in a minute", canarySlots, staleAfter)
}

// courier asks Kratos for a recovery of the canary and waits until its
// courier has delivered the message to the gateway, which answers a canary's
// message without SMTP.
func (r *run) courier(ctx context.Context) error {
	c := r.c
	if err := r.submitRecovery(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(c.CourierWait)
	var last []kratosadmin.CourierMessage
	for {
		msgs, err := c.Admin.CourierMessages(ctx, r.addr)
		if err != nil {
			return err
		}
		last = msgs
		for _, m := range msgs {
			if m.Status == "sent" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.Poll):
		}
	}
	switch {
	case len(last) == 0:
		return withFix("selfservice.flows.recovery.enabled: true with selfservice.methods.code (or link) enabled in kratos.yml",
			"Kratos queued no recovery message for the canary")
	case last[0].SendCount == 0 && last[0].Status == "queued":
		return withFix("run Kratos's courier: kratos serve --watch-courier, or kratos courier watch next to it",
			"the courier of Kratos did not pick the message up within %s", c.CourierWait)
	default:
		return fmt.Errorf("the courier of Kratos did not deliver the message to the gateway within %s (status %s after %d attempts): it cannot reach the gateway's /courier, or the gateway refused its key (the gateway's log says \"request refused\")",
			c.CourierWait, last[0].Status, last[0].SendCount)
	}
}

func (r *run) submitRecovery(ctx context.Context) error {
	var flow struct {
		ID string `json:"id"`
	}
	if status, err := r.c.call(ctx, http.MethodGet, "/self-service/recovery/api", nil, nil, &flow); err != nil || status != http.StatusOK {
		return flowError("create a recovery flow", status, err, nil)
	}
	var body json.RawMessage
	status, err := r.c.call(ctx, http.MethodPost, "/self-service/recovery?flow="+flow.ID, nil,
		map[string]any{"method": "code", "email": r.addr}, &body)
	if err != nil || status != http.StatusOK {
		return flowError("submit the recovery flow", status, err, body)
	}
	return nil
}

// migrationHook gives the canary a pending reset without a password, the
// state a recovery leaves, and logs in with its temporary password: only a
// Kratos that calls the gateway's migration hook, and a gateway with the
// same secrets.cipher, let it in. It returns the session token.
func (r *run) migrationHook(ctx context.Context) (string, error) {
	c := r.c
	temp := randomPassword()
	admin := recovery.PendingAdmin(c.Keys, r.canary.ID, temp, time.Now().Add(5*time.Minute))
	admin[markerKey] = r.canary.MetadataAdmin[markerKey]
	if err := c.Admin.SetPassword(ctx, r.canary, kratosadmin.PasswordUpdate{UseMigrationHook: true, MetadataAdmin: admin}); err != nil {
		return "", err
	}
	status, body, token, err := c.login(ctx, r.addr, temp)
	if err != nil {
		return "", err
	}
	if status == http.StatusOK {
		return token, nil
	}
	reason := kratosReason(body)
	if strings.Contains(reason, "migration hook is not enabled") {
		return "", withFix("selfservice.methods.password.config.migrate_hook in kratos.yml: add it with enabled: true, config.url the gateway's /hooks/password and config.auth.config.value \"Bearer <webhook.api_key>\"",
			"Kratos does not call a password migration hook (%q): every recovering user would be locked out", reason)
	}
	// The hook may have worked and the login failed after it: the gateway
	// settled the reset, so the login hook is what failed.
	if id, err := c.Admin.Identity(ctx, r.canary.ID); err == nil && id.MetadataPublic[recovery.KeyChangeRequired] == true {
		return "", withFix("selfservice.flows.login.after.password.hooks in kratos.yml: the web_hook to the gateway's /hooks/login with config.auth.config.value \"Bearer <webhook.api_key>\"",
			"the migration hook accepted the canary's password, but the login failed after it (HTTP %d %q): the login hook cannot reach the gateway or sends another key", status, reason)
	}
	return "", fmt.Errorf("the login with the canary's temporary password failed (HTTP %d %q): Kratos cannot reach the gateway's /hooks/password, sends another key than webhook.api_key, or the gateway answering has another secrets.cipher", status, reason)
}

// settingsHook sets a new password in the settings flow and checks that the
// gateway's answer (without the change-required flag) was written.
func (r *run) settingsHook(ctx context.Context, token string) error {
	c := r.c
	h := http.Header{"X-Session-Token": {token}}
	var flow struct {
		ID string `json:"id"`
	}
	if status, err := c.call(ctx, http.MethodGet, "/self-service/settings/api", h, nil, &flow); err != nil || status != http.StatusOK {
		return flowError("create a settings flow", status, err, nil)
	}
	var body json.RawMessage
	status, err := c.call(ctx, http.MethodPost, "/self-service/settings?flow="+flow.ID, h,
		map[string]any{"method": "password", "password": randomPassword()}, &body)
	if err != nil || status != http.StatusOK {
		return flowError("submit the settings flow (the gateway's /hooks/settings may refuse Kratos's key)", status, err, body)
	}
	id, err := c.Admin.Identity(ctx, r.canary.ID)
	if err != nil {
		return err
	}
	if id.MetadataPublic[recovery.KeyChangeRequired] != nil {
		return errors.New("the new password was stored but metadata_public.password_change_required stayed: Kratos did not apply the gateway's answer (response.parse: true missing) or did not call the hook")
	}
	return nil
}

// loginHook gives the canary a known password and an expired temporary
// password flag, and checks that the gateway's login hook refuses the login.
func (r *run) loginHook(ctx context.Context) error {
	c := r.c
	pw := randomPassword()
	id, err := c.Admin.Identity(ctx, r.canary.ID)
	if err != nil {
		return err
	}
	expired := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if err := c.Admin.SetPassword(ctx, id, kratosadmin.PasswordUpdate{
		Password:       pw,
		MetadataPublic: map[string]any{recovery.KeyChangeRequired: true, recovery.KeyExpiresAt: expired},
		MetadataAdmin:  id.MetadataAdmin,
	}); err != nil {
		return err
	}
	status, body, _, err := c.login(ctx, r.addr, pw)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK:
		return errors.New("a login with an expired temporary password went through: Kratos does not call the gateway's login hook, or calls it without can_interrupt: true")
	case strings.Contains(string(body), "temporary password has expired"):
		return nil
	case strings.Contains(kratosReason(body), "status code 403"):
		return errors.New("the gateway's login hook refused the expired temporary password, but Kratos answered its own error instead of the gateway's message: the hook lacks can_interrupt: true")
	default:
		return fmt.Errorf("the login failed, but not with the gateway's answer (HTTP %d %q): the login hook cannot reach the gateway or sends another key", status, kratosReason(body))
	}
}

// login runs Kratos's API login flow with a password.
func (c *Checker) login(ctx context.Context, identifier, password string) (int, json.RawMessage, string, error) {
	var flow struct {
		ID string `json:"id"`
	}
	if status, err := c.call(ctx, http.MethodGet, "/self-service/login/api", nil, nil, &flow); err != nil || status != http.StatusOK {
		return 0, nil, "", flowError("create a login flow", status, err, nil)
	}
	var body json.RawMessage
	status, err := c.call(ctx, http.MethodPost, "/self-service/login?flow="+flow.ID, nil,
		map[string]any{"method": "password", "identifier": identifier, "password": password}, &body)
	if err != nil {
		return 0, nil, "", err
	}
	var s struct {
		Token string `json:"session_token"`
	}
	_ = json.Unmarshal(body, &s)
	return status, body, s.Token, nil
}

func flowError(what string, status int, err error, body json.RawMessage) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: HTTP %d %q", what, status, kratosReason(body))
}

// kratosReason reads the message of a Kratos error or of a flow's UI,
// which never holds a password.
func kratosReason(body []byte) string {
	var e struct {
		Error struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"error"`
		UI struct {
			Messages []struct {
				Text string `json:"text"`
			} `json:"messages"`
		} `json:"ui"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	var parts []string
	for _, s := range []string{e.Error.Message, e.Error.Reason} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	for _, m := range e.UI.Messages {
		parts = append(parts, m.Text)
	}
	return strings.Join(parts, "; ")
}

// call sends one JSON request to Kratos's public API. Error answers are
// decoded into out too: callers read their reason.
func (c *Checker) call(ctx context.Context, method, path string, h http.Header, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.PublicURL, "/")+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("kratos public API: %w", err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
	}
	return resp.StatusCode, nil
}

// randomPassword is a throwaway password for the canary, never shown.
func randomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return "Cn-" + base64.RawURLEncoding.EncodeToString(b)
}
