package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// courierBody is what Kratos's courier posts for a recovery, taken from a
// real Kratos v1.3.1 capture and aimed at the given identity and recipient.
func courierBody(t *testing.T, identityID, recipient string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../host/httpapi/testdata/courier-recovery_code_valid.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["recipient"] = recipient
	td := m["template_data"].(map[string]any)
	td["to"] = recipient
	td["identity"].(map[string]any)["id"] = identityID
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func postCourier(t *testing.T, auth string, body []byte) (int, map[string]string) {
	t.Helper()
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	var out map[string]string
	status := call(t, "POST", "http://"+env.hostAddr+"/courier", h, body, &out)
	return status, out
}

// Requests the gateway must refuse change nothing: no mail, no new password.
func TestRefusedCourierCallsChangeNothing(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	other := uniqueEmail(t)
	createIdentity(t, other, oldPassword)

	tests := []struct {
		name       string
		auth       string
		body       []byte
		wantStatus int
		wantError  string
	}{
		{"no API key", "", courierBody(t, id.ID, email), http.StatusUnauthorized, "API key"},
		{"wrong API key", "Bearer not-the-key-0123456789", courierBody(t, id.ID, email), http.StatusUnauthorized, "API key"},
		{"not JSON", "Bearer " + env.apiKey, []byte("recipient=" + email), http.StatusBadRequest, "not a JSON object"},
		{"no recipient", "Bearer " + env.apiKey, []byte(`{"template_type":"recovery_code_valid","template_data":{"identity":{"id":"` + id.ID + `"}}}`), http.StatusBadRequest, "recipient is missing"},
		{"unknown identity", "Bearer " + env.apiKey, courierBody(t, "0b7a1c9e-5d7f-4a59-9d0e-6c1f0e3a2b11", email), http.StatusNotFound, "identity not found"},
		{"recipient of another identity", "Bearer " + env.apiKey, courierBody(t, id.ID, other), http.StatusUnprocessableEntity, "not a recovery address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := courierOutcome(t, h, tt.auth, tt.body)
			if status != tt.wantStatus || !strings.Contains(msg, tt.wantError) {
				t.Fatalf("HTTP %d %q, want %d saying %q", status, msg, tt.wantStatus, tt.wantError)
			}
		})
	}
	// The gateway answers (or, through the outbox, ends the job) only after
	// SMTP accepted a mail, so nothing can still be on its way here.
	for _, addr := range []string{email, other} {
		if got := mailsTo(t, addr); len(got) != 0 {
			t.Errorf("%d mail(s) reached %s after refused calls", len(got), addr)
		}
		if status, _ := login(t, addr, oldPassword); status != http.StatusOK {
			t.Errorf("%s can no longer log in with the password it had: HTTP %d", addr, status)
		}
	}
	if meta := getIdentity(t, id.ID).MetadataPublic; len(meta) != 0 {
		t.Errorf("metadata_public = %v, want untouched", meta)
	}
}

// An SMTP outage answers Kratos with a 5xx naming the stage; once SMTP is
// back, Kratos's retry delivers, and the mailed password is the one that works.
func TestSMTPOutageIsRetriedByKratos(t *testing.T) {
	closed := closedPort(t)
	logs := startHost(t, hostOptions{enabled: true, smtpPort: closed})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"recovery reset failed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never reported the failed delivery:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Through the outbox, the outbox keeps the message and retries it.
	retries := fmt.Sprintf(`"kratos_retries":%v`, !queueMode())
	for _, want := range []string{`"status":503`, "smtp connect", "connection refused", retries} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the failure log lacks %q:\n%s", want, logs)
		}
	}

	// The outage ends: the SMTP server the config names answers again (the
	// same host, so its wiring check stays passed; a restarted host hands
	// recoveries to Kratos until its own check passed).
	edit(t, logs, fmt.Sprintf("port: %d", closed), fmt.Sprintf("port: %d", env.smtpPort), "applied")
	m := waitMails(t, email, 1)
	waitCourierStatus(t, email, "sent")
	if got := len(mailsTo(t, email)); got != 1 {
		t.Fatalf("%d mails arrived, want exactly 1", got)
	}
	temp := temporaryPassword(t, m[0])
	if status, _ := login(t, email, temp); status != http.StatusOK {
		t.Errorf("login with the password of the mail that arrived: HTTP %d, want 200", status)
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusBadRequest {
		t.Errorf("login with the old password: HTTP %d, want 400", status)
	}
	// Kratos v1.3.1 retries a 5xx within a dispatch, v26.2.0 at the next
	// pull: the message counts several sends; it is one message either way.
	if q := courierMessages(t, email); len(q) != 1 {
		t.Errorf("courier messages = %+v, want the one recovery message", q)
	}
}

// closedPort returns a loopback port nothing listens on: freePort closed it.
func closedPort(t *testing.T) int {
	t.Helper()
	return freePort()
}
