package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

const newPassword = "Brand-New-Password-4711"

// The whole forced-change journey through Kratos's public APIs: a user who
// logs in with the mailed password must choose a new one before the gate
// lets them through.
func TestForcedPasswordChangeJourney(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	var id identity
	if status := call(t, "POST", env.kratosAdmin+"/admin/identities", nil, map[string]any{
		"schema_id":       "default",
		"traits":          map[string]any{"email": email},
		"metadata_public": map[string]any{"plan": "pro"},
		"credentials":     map[string]any{"password": map[string]any{"config": map[string]any{"password": oldPassword}}},
	}, &id); status != http.StatusCreated {
		t.Fatalf("create identity: HTTP %d", status)
	}
	_, before := login(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])

	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d", status)
	}
	if meta := sessionIdentity(t, s.Token).MetadataPublic; meta["password_change_required"] != true {
		t.Fatalf("session metadata_public = %v, want the flag", meta)
	}
	token := http.Header{"X-Session-Token": {s.Token}}

	if status, _ := gate(t, token); status != http.StatusForbidden {
		t.Errorf("gate for an API client that must change its password: HTTP %d, want 403", status)
	}
	browser := http.Header{"X-Session-Token": {s.Token}, "Accept": {"text/html"}}
	if status, h := gate(t, browser); status != http.StatusForbidden || h.Get("X-Gate-Redirect") != "http://127.0.0.1:4455/settings" {
		t.Errorf("gate for a browser: HTTP %d, X-Gate-Redirect %q; want 403 naming the settings UI", status, h.Get("X-Gate-Redirect"))
	}
	if status, _ := gate(t, nil); status != http.StatusUnauthorized {
		t.Errorf("gate without a session: HTTP %d, want 401", status)
	}

	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow: HTTP %d\n%s", status, body)
	}
	meta := getIdentity(t, id.ID).MetadataPublic
	if _, flagged := meta["password_change_required"]; flagged || meta["temporary_password_expires_at"] != nil || meta["plan"] != "pro" {
		t.Errorf("metadata_public after the change = %v, want the flag and expiry gone and plan kept", meta)
	}

	status, h := gate(t, token)
	if status != http.StatusOK || h.Get("X-Identity-Id") != id.ID {
		t.Errorf("gate after the change: HTTP %d, X-Identity-Id %q; want 200 and %s", status, h.Get("X-Identity-Id"), id.ID)
	}
	if status, _ := login(t, email, temp); status != http.StatusBadRequest {
		t.Errorf("login with the used temporary password: HTTP %d, want 400", status)
	}
	if status, _ := login(t, email, newPassword); status != http.StatusOK {
		t.Errorf("login with the new password: HTTP %d, want 200", status)
	}
	if whoami(t, before.Token) != http.StatusUnauthorized {
		t.Errorf("the session from before the reset still works")
	}
}

// A temporary password that was used but not yet replaced logs in until
// password.ttl, then is refused at login with the gateway's message. (An
// unused one is refused earlier, by the migration hook, as invalid
// credentials: see keep_test.go.)
func TestExpiredTemporaryPasswordIsRefusedAtLogin(t *testing.T) {
	startHost(t, hostOptions{enabled: true, ttl: "3s"})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the fresh temporary password: HTTP %d", status)
	}
	expires, err := time.Parse(time.RFC3339, asString(sessionIdentity(t, s.Token).MetadataPublic["temporary_password_expires_at"]))
	if err != nil {
		t.Fatalf("temporary_password_expires_at: %v", err)
	}
	time.Sleep(time.Until(expires) + 1100*time.Millisecond) // RFC 3339 seconds round down

	status, body := loginRaw(t, email, temp)
	if status != http.StatusBadRequest || !strings.Contains(body, "Your temporary password has expired") {
		t.Fatalf("login with an expired temporary password: HTTP %d, want 400 with the gateway's message:\n%s", status, body)
	}
}

// Two recoveries inside password.cooldown send one password; the second
// Kratos message is answered 2xx, so Kratos does not retry it.
func TestTwoRecoveriesInsideTheCooldownSendOnePassword(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	startRecovery(t, email)

	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs := courierMessages(t, email)
		if len(msgs) == 2 && msgs[0].Status == "sent" && msgs[1].Status == "sent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kratos courier messages: %+v, want two, both sent", msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(mailsTo(t, email)); got != 1 {
		t.Errorf("%d mails arrived, want 1", got)
	}
	if status, _ := login(t, email, temp); status != http.StatusOK {
		t.Errorf("login with the password of the only mail: HTTP %d, want 200", status)
	}
}
