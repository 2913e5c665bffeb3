package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// canaryLeft lists the canary identities a Kratos still holds.
func canaryLeft(t *testing.T, admin string) []string {
	t.Helper()
	var left []string
	for slot := range 8 {
		var ids []struct {
			ID string `json:"id"`
		}
		addr := fmt.Sprintf("kratos-email-gateway-canary-%d@canary.invalid", slot)
		if status := call(t, "GET", admin+"/admin/identities?credentials_identifier="+url.QueryEscape(addr), nil, nil, &ids); status != http.StatusOK {
			t.Fatalf("list identities: HTTP %d", status)
		}
		for _, id := range ids {
			left = append(left, id.ID)
		}
	}
	return left
}

// assertNoCanaryTrace checks that a run left no canary in Kratos and sent no
// mail to one.
func assertNoCanaryTrace(t *testing.T, admin string) {
	t.Helper()
	if left := canaryLeft(t, admin); len(left) != 0 {
		t.Errorf("canary identities left behind: %v", left)
	}
	var res struct {
		Total int `json:"messages_count"`
	}
	call(t, "GET", env.mailpitAPI+"/api/v1/search?query="+url.QueryEscape("to:canary.invalid"), nil, nil, &res)
	if res.Total != 0 {
		t.Errorf("%d mail(s) to a canary reached the SMTP server", res.Total)
	}
}

// A correctly wired Kratos passes every stage of gateway doctor; the canary
// is gone afterwards and no mail went out.
func TestDoctorPassesOnAWellWiredKratos(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	code, out := runGateway(t, "doctor", "--config", h.configPath)
	if code != 0 {
		t.Fatalf("gateway doctor exited %d:\n%s", code, out)
	}
	for _, stage := range []string{"kratos admin API", "kratos public API", "identity schema", "canary identity", "courier delivery",
		"password migration hook", "settings hook", "login hook", "canary removed"} {
		if !strings.Contains(out, "ok       "+stage) {
			t.Errorf("stage %q did not pass:\n%s", stage, out)
		}
	}
	assertNoCanaryTrace(t, env.kratosAdmin)
	if !strings.Contains(h.String(), `"event":"wiring_canary"`) {
		t.Errorf("the serving gateway did not answer the canary's courier message")
	}
}

// Four ways to miswire Kratos, each named by its stage and the kratos.yml
// key to fix; the canary is removed every time.
func TestDoctorNamesTheBrokenStage(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(string) string
		env       []string
		stage     string
		fix       string
		passStage string // a stage that still passes: the others run on their own
	}{
		{name: "no migrate hook", env: []string{"SELFSERVICE_METHODS_PASSWORD_CONFIG_MIGRATE_HOOK_ENABLED=false"},
			stage: "password migration hook", fix: "selfservice.methods.password.config.migrate_hook", passStage: "courier delivery"},
		{name: "wrong courier key", env: []string{"COURIER_HTTP_REQUEST_CONFIG_AUTH_CONFIG_VALUE=Bearer not-the-gateway-key-0123456789"},
			stage: "courier delivery", fix: "courier.http.request_config.auth.config.value", passStage: "password migration hook"},
		{name: "login hook without can_interrupt", edit: func(y string) string { return strings.Replace(y, "can_interrupt: true", "can_interrupt: false", 1) },
			stage: "login hook", fix: "can_interrupt: true", passStage: "settings hook"},
		{name: "settings hook without response.parse", edit: func(y string) string { return strings.Replace(y, "parse: true", "parse: false", 1) },
			stage: "settings hook", fix: "response.parse: true", passStage: "login hook"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := ownKratos(t, fmt.Sprintf("kratos-miswired-%d", i), tt.edit, tt.env...)
			h := startHost(t, hostOptions{enabled: true, kratos: &k})
			code, out := runGateway(t, "doctor", "--config", h.configPath)
			if code == 0 {
				t.Fatalf("gateway doctor passed a miswired Kratos:\n%s", out)
			}
			if !strings.Contains(out, "FAILED   "+tt.stage) || !strings.Contains(out, tt.fix) {
				t.Errorf("the output does not name the stage %q and the fix %q:\n%s", tt.stage, tt.fix, out)
			}
			if !strings.Contains(out, "ok       "+tt.passStage) {
				t.Errorf("stage %q should pass on its own:\n%s", tt.passStage, out)
			}
			assertNoCanaryTrace(t, k.admin)
		})
	}
}

// serve against a Kratos without the migrate hook: the wiring stays
// unverified, readiness says why, and a recovery leaves the user's password
// working and delivers Kratos's own code.
func TestServeWithoutMigrateHookLeavesRecoveryToKratos(t *testing.T) {
	k := ownKratos(t, "kratos-no-migrate-hook", nil, "SELFSERVICE_METHODS_PASSWORD_CONFIG_MIGRATE_HOOK_ENABLED=false")
	h := startHost(t, hostOptions{enabled: true, kratos: &k})
	var ready map[string]any
	if status := call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, &ready); status != http.StatusOK ||
		ready["status"] != "degraded" || !strings.Contains(fmt.Sprint(ready["wiring"]), "unverified") || !strings.Contains(fmt.Sprint(ready["wiring"]), "migrate_hook") {
		t.Errorf("readiness = %d %v, want 200 degraded with the wiring unverified naming migrate_hook", status, ready)
	}
	var metrics []byte
	call(t, "GET", "http://"+env.hostAddr+"/metrics", nil, nil, &metrics)
	if !strings.Contains(string(metrics), "kratos_email_gateway_wiring_verified 0") {
		t.Errorf("the wiring metric does not say unverified")
	}

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	before := stateOf(t, id.ID)
	startRecovery(t, email)
	m := waitMails(t, email, 1)[0]
	if tempPasswordRe.MatchString(m.Text) || !isKratosRecoverySubject(m.Subject) {
		t.Errorf("mail %q is not Kratos's own code mail:\n%s", m.Subject, m.Text)
	}
	assertUnchanged(t, before, id.ID)
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("login with the user's password after the recovery: HTTP %d, want 200 (a pending reset without the hook locks users out)", status)
	}
	if !strings.Contains(h.String(), `"reason":"wiring_unverified"`) {
		t.Errorf("the host did not log why the recovery was left to Kratos")
	}
	assertNoCanaryTrace(t, k.admin)
}

// A Kratos that calls with a wrong key: the host turns unready naming it,
// and ready again once a correctly keyed call arrives.
func TestWrongKeyTurnsTheHostUnready(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	if status, _ := postCourier(t, "Bearer not-the-gateway-key-0123456789", courierBody(t, "x", "x@example.com")); status != http.StatusUnauthorized {
		t.Fatalf("wrong key: HTTP %d", status)
	}
	var ready map[string]any
	status := call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, &ready)
	if status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(ready["errors"]), "webhook_key") {
		t.Errorf("readiness after a wrong key = %d %v, want 503 naming webhook_key", status, ready)
	}
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	startVerification(t, email) // Kratos's courier calls with the right key
	waitMails(t, email, 1)
	if status := call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, nil); status != http.StatusOK {
		t.Errorf("readiness after a correctly keyed call = %d, want 200", status)
	}
}
