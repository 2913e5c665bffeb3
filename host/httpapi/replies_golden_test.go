package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/recovery"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Golden replies: every answer the gateway gives Kratos on the endpoints
// Kratos calls (POST /courier and the three web hooks), success and each
// refusal, pinned byte for byte in testdata/golden/<endpoint>/<case>.golden:
// status, the headers the handler sets, and the exact JSON body. Kratos acts
// on these (retries a non-2xx courier answer, shows a hook's messages in the
// flow, stores metadata from the settings answer, accepts a password only on
// {"status":"password_match"}), so a change to any of them must be seen in a
// diff. This is the other direction from golden_test.go, which pins how the
// gateway reads what Kratos sends (testdata/kratos-<version>/).
//
//	go test ./host/httpapi -run Golden -update
//
// rewrites the files from the replies the handlers give now (and deletes
// the files of cases that no longer exist); review the diff before
// committing it.
var update = flag.Bool("update", false, "rewrite testdata/golden/ from the handlers' current replies")

// noKey as a replyCase's auth sends no Authorization header.
const noKey = "-"

// replyCase is one request to one of Kratos's endpoints.
type replyCase struct {
	// name is the golden file's name, without .golden.
	name string
	// about is the golden file's first line: what the request is.
	about string
	// auth is the Authorization header: "" sends the right key, noKey none.
	auth string
	// disabled runs the gateway with enabled: false.
	disabled bool
	body     func(t *testing.T) io.Reader
	// rec holds what the fakes answer; nil answers the defaults.
	rec *recorder
}

// sampleFile reads one of the captures of Kratos's payloads.
func sampleFile(name string) func(t *testing.T) io.Reader {
	return func(t *testing.T) io.Reader {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(raw)
	}
}

// tooLarge is a body one byte over MaxBodyBytes.
func tooLarge(*testing.T) io.Reader {
	return io.MultiReader(strings.NewReader(`{"recipient":"`), strings.NewReader(strings.Repeat("a", MaxBodyBytes)), strings.NewReader(`"}`))
}

// remote is a plugin failure as the host sees it across the wire: the
// plugin's message, matching the sentinel its status code stands for (as
// sdk's remoteError does).
type remote struct {
	msg      string
	sentinel error
}

func (e remote) Error() string { return e.msg }
func (e remote) Unwrap() error { return e.sentinel }

// testGoldenReplies posts each case to path and compares the reply with
// testdata/golden/<endpoint>/<name>.golden.
func testGoldenReplies(t *testing.T, endpoint, path string, cases []replyCase) {
	t.Helper()
	dir := filepath.Join("testdata", "golden", endpoint)
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("two cases named %s", c.name)
		}
		names[c.name] = true
	}
	// A golden file without a case pins nothing.
	files, err := filepath.Glob(filepath.Join(dir, "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".golden"); !names[name] {
			if *update {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s has no case; run go test ./host/httpapi -run Golden -update to delete it", f)
		}
	}
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := c.rec
			if rec == nil {
				rec = &recorder{}
			}
			h, _ := newServer(t, !c.disabled, rec)
			req := httptest.NewRequest(http.MethodPost, path, c.body(t))
			switch c.auth {
			case "":
				req.Header.Set("Authorization", "Bearer "+apiKey)
			case noKey:
			default:
				req.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			// Kratos reads every one of these answers as JSON.
			if !json.Valid(w.Body.Bytes()) {
				t.Errorf("the reply body is not JSON: %q", w.Body)
			}
			got := goldenReply(http.MethodPost+" "+path+": "+c.about, w)
			file := filepath.Join(dir, c.name+".golden")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v; run go test ./host/httpapi -run Golden -update to write it", err)
			}
			if diff := cmp.Diff(strings.SplitAfter(string(want), "\n"), strings.SplitAfter(string(got), "\n")); diff != "" {
				t.Errorf("reply differs from %s (-golden +got); if the change is meant, run go test ./host/httpapi -run Golden -update:\n%s", file, diff)
			}
		})
	}
}

// goldenReply renders a reply as its golden file holds it: a comment naming
// the request, the status, every header the handler set (sorted), a blank
// line and the body as sent.
func goldenReply(about string, w *httptest.ResponseRecorder) []byte {
	res := w.Result()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n", about)
	fmt.Fprintf(&b, "HTTP %d %s\n", res.StatusCode, http.StatusText(res.StatusCode))
	for _, k := range slices.Sorted(maps.Keys(res.Header)) {
		for _, v := range res.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	b.Write(w.Body.Bytes())
	return b.Bytes()
}

// The identity of testdata/courier-recovery_code_valid.json.
const sampleIdentity = "6da9db03-4d06-4da9-9684-9133a883a5fa"

func TestGoldenCourierReplies(t *testing.T) {
	t.Parallel()
	verification := func(m map[string]any) {
		m["template_type"] = "verification_code_valid"
		m["subject"] = "Please verify your email address"
		m["body"] = "Hi, please verify your account by entering the following code:\n\n123456\n"
	}
	testGoldenReplies(t, "courier", "/courier", []replyCase{
		// What the gateway did with the message.
		{name: "sent", about: "a recovery the gateway takes over: a temporary password is mailed",
			body: okBody},
		{name: "duplicate", about: "a recovery message the gateway already handled (Kratos sent it again)",
			body: okBody, rec: &recorder{result: recovery.Result{Outcome: recovery.OutcomeDuplicate,
				Reason: "this message was mailed at " + testNow.Add(-time.Minute).Format(time.RFC3339)}}},
		{name: "cooldown", about: "a recovery within password.cooldown of a reset still pending and usable",
			body: okBody, rec: &recorder{result: recovery.Result{Outcome: recovery.OutcomeCooldown, Reason: recovery.ReasonPending}}},
		{name: "kratos_message", about: "a recovery the gateway cannot take over (unverifiable hash): Kratos's own message is mailed",
			body: okBody, rec: &recorder{result: recovery.Result{Outcome: recovery.OutcomeKratosMessage, Reason: recovery.ReasonUnverifiableHash}}},
		{name: "canary", about: "the wiring check's canary message: answered, never mailed",
			body: edited(func(m map[string]any) { m["recipient"] = "kratos-email-gateway-canary-2@canary.invalid" })},
		{name: "as_rendered", about: "a verification: mailed as Kratos rendered it",
			body: edited(verification)},
		{name: "as_rendered-disabled", about: "a recovery while the gateway is disabled: mailed as Kratos rendered it",
			disabled: true, body: okBody},

		// Refused before anything happens.
		{name: "401-no_key", about: "no Authorization header", auth: noKey, body: okBody},
		{name: "401-wrong_key", about: "a wrong API key", auth: "Bearer wrong-key-0123456789", body: okBody},
		{name: "400-not_json", about: "a body that is not JSON", body: text("hello")},
		{name: "400-json_array", about: "a JSON array instead of an object", body: text("[1,2]")},
		{name: "400-wrong_type", about: "recipient is a number", body: text(`{"recipient": 7}`)},
		{name: "400-template_data_not_object", about: "template_data is a string",
			body: edited(func(m map[string]any) { m["template_data"] = "x" })},
		{name: "400-no_recipient", about: "no recipient",
			body: edited(func(m map[string]any) { delete(m, "recipient") })},
		{name: "400-crlf_recipient", about: "a recipient with CR LF (header injection)",
			body: edited(func(m map[string]any) { m["recipient"] = "alice@example.com\r\nBcc: eve@example.com" })},
		{name: "400-crlf_subject", about: "a subject with CR LF (header injection)",
			body: edited(func(m map[string]any) { m["subject"] = "Hi\r\nBcc: eve@example.com" })},
		{name: "400-no_template_type", about: "no template_type",
			body: edited(func(m map[string]any) { delete(m, "template_type") })},
		{name: "400-sms", about: "an SMS (message_type sms)",
			body: edited(func(m map[string]any) { m["message_type"] = "sms" })},
		{name: "400-recovery_without_identity", about: "a recovery without template_data.identity.id",
			body: edited(func(m map[string]any) { m["template_data"] = map[string]any{} })},
		{name: "413-too_large", about: "a body over 1 MiB", body: tooLarge},

		// The reset failed: the status tells Kratos whether a retry can cure it.
		{name: "404-unknown_identity", about: "Kratos does not know the message's identity",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("look up identity: get identity %s: %w", sampleIdentity, kratosadmin.ErrNotFound)}},
		{name: "422-recipient_mismatch", about: "the recipient is not a recovery address of the identity",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("identity %s: %w", sampleIdentity, recovery.ErrRecipientMismatch)}},
		{name: "422-no_recovery_address", about: "the identity has no recovery address",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("identity %s: %w", sampleIdentity, recovery.ErrNoRecoveryAddress)}},
		{name: "422-render_failed", about: "the plugin cannot render the temporary password mail",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("render temporary password mail (nothing changed): %w",
				remote{`template recovery_code_valid: text: template: text:1:9: executing "text" at <.Nope>: can't evaluate field Nope`, sdk.ErrInvalidArgument})}},
		{name: "422-kratos_rejected", about: "Kratos refuses the write of the temporary password",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("set temporary password: update identity %s: %w: HTTP 400: The request was malformed or contained invalid parameters",
				sampleIdentity, kratosadmin.ErrRejected)}},
		{name: "502-smtp_rejected", about: "the SMTP server refuses the temporary password mail for good",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("send temporary password mail: %w",
				remote{"smtp rcpt_to: 550 5.1.1 <alice@example.com>: Recipient address rejected", sdk.ErrRejected})}},
		{name: "503-kratos_unavailable", about: "Kratos's admin API answers 503",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("look up identity: get identity %s: %w: HTTP 503", sampleIdentity, kratosadmin.ErrUnavailable)}},
		{name: "503-smtp_unavailable", about: "the SMTP server cannot be reached for the temporary password mail",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("send temporary password mail: %w",
				remote{"smtp connect: dial tcp 127.0.0.1:1025: connect: connection refused", sdk.ErrUnavailable})}},
		{name: "503-plugin_gone", about: "the plugin process is gone",
			body: okBody, rec: &recorder{resetErr: errors.New("render temporary password mail (nothing changed): plugin: connection error: desc = \"transport: error while dialing\"")}},
		{name: "504-kratos_timeout", about: "Kratos's admin API does not answer in time",
			body: okBody, rec: &recorder{resetErr: fmt.Errorf("look up identity: get identity %s: %w: %w", sampleIdentity, kratosadmin.ErrUnavailable, context.DeadlineExceeded)}},

		// Mailing as Kratos rendered it failed.
		{name: "502-as_rendered-smtp_rejected", about: "a verification the SMTP server refuses for good",
			body: edited(verification), rec: &recorder{sendErr: remote{"smtp rcpt_to: 550 5.1.1 <alice@example.com>: Recipient address rejected", sdk.ErrRejected}}},
		{name: "503-as_rendered-smtp_unavailable", about: "a verification while the SMTP server cannot be reached",
			body: edited(verification), rec: &recorder{sendErr: remote{"smtp connect: dial tcp 127.0.0.1:1025: connect: connection refused", sdk.ErrUnavailable}}},
		{name: "504-as_rendered-smtp_timeout", about: "a verification the SMTP server does not take in time",
			body: edited(verification), rec: &recorder{sendErr: remote{"smtp data: context deadline exceeded: read tcp 127.0.0.1:50000->127.0.0.1:1025: i/o timeout", context.DeadlineExceeded}}},
		{name: "503-kratos_message-smtp_unavailable", about: "Kratos's own recovery message while the SMTP server cannot be reached",
			body: okBody, rec: &recorder{result: recovery.Result{Outcome: recovery.OutcomeKratosMessage, Reason: recovery.ReasonUnverifiableHash},
				sendErr: remote{"smtp connect: dial tcp 127.0.0.1:1025: connect: connection refused", sdk.ErrUnavailable}}},
	})
}

// loginMeta is the captured login hook body with this metadata_public.
func loginMeta(meta any) func(t *testing.T) io.Reader {
	return func(t *testing.T) io.Reader { return bytes.NewReader(loginBody(t, meta)) }
}

func TestGoldenLoginHookReplies(t *testing.T) {
	t.Parallel()
	const flagged, expiry = "password_change_required", "temporary_password_expires_at"
	testGoldenReplies(t, "login", "/hooks/login", []replyCase{
		{name: "allowed", about: "an identity without the flag", body: loginMeta(nil)},
		{name: "allowed-other_metadata", about: "an identity with other metadata_public", body: loginMeta(map[string]any{"plan": "pro"})},
		{name: "allowed-kratos_v26", about: "Kratos v26.2.0's captured body (flag set, expiry in 2030)",
			body: sampleFile("kratos-v26.2.0/hook-login-after-password.json")},
		{name: "allowed-temporary_password", about: "a temporary password before its expiry: allowed, a new password is required",
			body: loginMeta(map[string]any{flagged: true, expiry: testNow.Add(time.Minute).Format(time.RFC3339)})},
		{name: "403-expired", about: "a temporary password past its expiry: refused in Kratos's message format",
			body: loginMeta(map[string]any{flagged: true, expiry: testNow.Add(-time.Second).Format(time.RFC3339)})},
		{name: "403-expires_now", about: "a temporary password whose expiry is now: refused",
			body: loginMeta(map[string]any{flagged: true, expiry: testNow.Format(time.RFC3339)})},
		// Fail open: a body the gateway cannot read never blocks a login.
		{name: "allowed-not_json", about: "a body that is not JSON: allowed with a warning", body: text("nope")},
		{name: "allowed-too_large", about: "a body over 1 MiB: allowed with a warning", body: tooLarge},
		{name: "allowed-no_identity", about: "a body without identity: allowed with a warning", body: text(`{"flow_id":"ed9431b0-8168-4e1d-a750-a8cbb1507060"}`)},
		{name: "allowed-identity_not_object", about: "identity that is not an object: allowed with a warning", body: text(`{"identity":"x"}`)},
		{name: "allowed-metadata_not_object", about: "metadata_public that is not an object: allowed", body: loginMeta([]int{1})},
		{name: "allowed-flag_without_expiry", about: "the flag without an expiry: allowed", body: loginMeta(map[string]any{flagged: true})},
		{name: "401-no_key", about: "no Authorization header", auth: noKey, body: loginMeta(nil)},
	})
}

func TestGoldenSettingsHookReplies(t *testing.T) {
	t.Parallel()
	pendingCleared := map[string]any{"crm": 1, "email_gateway": map[string]any{"settled": "changed"}}
	testGoldenReplies(t, "settings", "/hooks/settings", []replyCase{
		{name: "cleared-flag", about: "the flag and expiry cleared, other keys kept",
			body: text(`{"identity":{"id":"id-1","metadata_public":{"password_change_required":true,"temporary_password_expires_at":"2026-11-26T22:00:00Z","plan":"pro"}}}`)},
		{name: "cleared-flag-kratos_v26", about: "Kratos v26.2.0's captured body: the flag and expiry cleared, nothing else left",
			body: sampleFile("kratos-v26.2.0/hook-settings-after-password.json")},
		{name: "cleared-pending_reset", about: "a pending reset cleared in metadata_admin, no flag",
			body: text(`{"identity":{"id":"id-1","metadata_public":null}}`), rec: &recorder{changed: pendingCleared}},
		{name: "cleared-flag_and_pending_reset", about: "the flag and a pending reset cleared together",
			body: text(`{"identity":{"id":"id-1","metadata_public":{"password_change_required":true,"plan":"pro"}}}`), rec: &recorder{changed: pendingCleared}},
		{name: "cleared-flag-kratos_unavailable", about: "Kratos unreachable for metadata_admin: the flag is cleared, the password change goes on",
			body: text(`{"identity":{"id":"id-1","metadata_public":{"password_change_required":true}}}`),
			rec:  &recorder{changedErr: fmt.Errorf("look up identity: get identity id-1: %w: HTTP 503", kratosadmin.ErrUnavailable)}},
		{name: "nothing_to_clear", about: "no flag and no pending reset", body: text(`{"identity":{"id":"id-1","metadata_public":{"plan":"pro"}}}`)},
		{name: "nothing_to_clear-null", about: "metadata_public null and no pending reset", body: text(`{"identity":{"id":"id-1","metadata_public":null}}`)},
		{name: "400-not_json", about: "a body that is not JSON", body: text("nope")},
		{name: "400-no_identity", about: "a body without identity", body: text(`{"flow":{}}`)},
		{name: "400-metadata_missing", about: "an identity without metadata_public", body: text(`{"identity":{"id":"id-1"}}`)},
		{name: "400-metadata_not_object", about: "metadata_public that is not an object", body: text(`{"identity":{"id":"id-1","metadata_public":"x"}}`)},
		{name: "400-json_array", about: "a JSON array instead of an object", body: text(`[{"identity":{"id":"id-1"}}]`)},
		{name: "400-identity_not_object", about: "identity is a string", body: text(`{"identity":"x"}`)},
		{name: "400-wrong_type", about: "identity.id is a number", body: text(`{"identity":{"id":7}}`)},
		{name: "413-too_large", about: "a body over 1 MiB", body: tooLarge},
		{name: "401-no_key", about: "no Authorization header", auth: noKey, body: text(`{"identity":{"id":"id-1","metadata_public":null}}`)},
	})
}

func TestGoldenPasswordHookReplies(t *testing.T) {
	t.Parallel()
	captured := sampleFile("kratos-v26.2.0/hook-password-migration.json")
	testGoldenReplies(t, "password", "/hooks/password", []replyCase{
		{name: "password_match-temporary", about: "the temporary password of a pending reset", body: captured, rec: &recorder{verdict: recovery.MatchTemporary}},
		{name: "password_match-current", about: "the current password a pending reset keeps working", body: captured, rec: &recorder{verdict: recovery.MatchCurrent}},
		{name: "403-no_match", about: "a password that matches neither", body: captured, rec: &recorder{verdict: recovery.NoMatch}},
		{name: "403-unknown_verdict", about: "a verdict the hook does not know", body: captured, rec: &recorder{verdict: recovery.Verdict("maybe")}},
		{name: "503-check_failed", about: "the password cannot be checked (Kratos unreachable)", body: captured,
			rec: &recorder{checkErr: fmt.Errorf("look up identity: find identity by identifier: %w: HTTP 503", kratosadmin.ErrUnavailable)}},
		{name: "400-not_json", about: "a body that is not JSON", body: text("identifier=alice")},
		{name: "400-no_password", about: "no password", body: text(`{"identifier":"alice@example.com"}`)},
		{name: "400-no_identifier", about: "no identifier", body: text(`{"password":"x"}`)},
		{name: "400-json_array", about: "a JSON array instead of an object", body: text(`["alice@example.com","x"]`)},
		{name: "400-wrong_type", about: "password is a number", body: text(`{"identifier":"a","password":1}`)},
		{name: "413-too_large", about: "a body over 1 MiB", body: tooLarge},
		{name: "401-no_key", about: "no Authorization header", auth: noKey, body: captured},
		{name: "401-wrong_key", about: "a wrong API key", auth: "Bearer wrong-key-0123456789", body: captured},
	})
}
