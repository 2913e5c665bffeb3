package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The README's "Wiring Kratos" as an operator follows it with a Kratos of
// their own (issue 13, point 6).

// kratosKeyEnv are the Kratos environment variables that set the gateway's
// key in the four places of kratos.yml that carry it: hooks are array
// elements, addressed by their index.
var kratosKeyEnv = []string{
	"COURIER_HTTP_REQUEST_CONFIG_AUTH_CONFIG_VALUE",
	"SELFSERVICE_METHODS_PASSWORD_CONFIG_MIGRATE_HOOK_CONFIG_AUTH_CONFIG_VALUE",
	"SELFSERVICE_FLOWS_LOGIN_AFTER_PASSWORD_HOOKS_0_CONFIG_AUTH_CONFIG_VALUE",
	"SELFSERVICE_FLOWS_SETTINGS_AFTER_PASSWORD_HOOKS_0_CONFIG_AUTH_CONFIG_VALUE",
}

// Kratos's files carry a wrong key and its environment the right one for
// each of the four places; its bodies are the README's inline ones
// (base64://), its identity schema an absolute file:// path, and it runs
// from a directory that holds none of its files. A recovery, a login with
// the temporary password and the change of password all go through the
// gateway: Kratos took every key from its environment and needs no file
// relative to its working directory.
func TestKratosKeysFromEnvironment(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(env.root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("`([A-Z0-9_]+_AUTH_CONFIG_VALUE)`").FindAllStringSubmatch(string(readme), -1) {
		if !slices.Contains(documented, m[1]) {
			documented = append(documented, m[1])
		}
	}
	if !slices.Equal(documented, kratosKeyEnv) {
		t.Errorf("the README names the key variables %q, want %q", documented, kratosKeyEnv)
	}
	readmeBody := func(what string) string {
		m := regexp.MustCompile(`body: (base64://\S+)\s+# ` + what + `:`).FindStringSubmatch(string(readme))
		if m == nil {
			t.Fatalf("the README shows no inline body for the %s", what)
		}
		return m[1]
	}

	const fileKey = "wrong-key-left-in-kratos-yml-0123"
	dir := t.TempDir()
	if _, err := renderKratosConfig(filepath.Join(env.root, "configs", "kratos"), dir, "http://"+env.hostAddr, fileKey); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "kratos.yml"))
	if err != nil {
		t.Fatal(err)
	}
	yml := string(raw)
	for from, to := range map[string]string{
		"file://./courier.jsonnet":       readmeBody("courier"),
		"file://./identity-hook.jsonnet": readmeBody("hooks"),
		"file://./identity.schema.json":  "file://" + filepath.Join(dir, "identity.schema.json"),
	} {
		if !strings.Contains(yml, from) {
			t.Fatalf("configs/kratos/kratos.yml has no %s", from)
		}
		yml = strings.ReplaceAll(yml, from, to)
	}
	if n := strings.Count(yml, "Bearer "+fileKey); n != 4 || strings.Contains(yml, env.apiKey) || strings.Contains(yml, "file://./") {
		t.Fatalf("the edited kratos.yml carries the file key %d times (want 4), the right key or a relative file", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "kratos.yml"), []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var keyEnv []string
	for _, name := range kratosKeyEnv {
		keyEnv = append(keyEnv, name+"=Bearer "+env.apiKey)
	}
	k := startKratosElsewhere(t, "kratos-keys-from-env", filepath.Join(dir, "kratos.yml"), keyEnv...)
	useKratos(t, k)
	h := startHost(t, hostOptions{enabled: true, kratos: &k})

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	startRecovery(t, email) // courier: key and body
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	status, s := login(t, email, temp) // migration hook and login hook: keys and body
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d", status)
	}
	if mp := sessionIdentity(t, s.Token).MetadataPublic; mp["password_change_required"] != true {
		t.Fatalf("after the login metadata_public = %v, want password_change_required", mp)
	}
	if status, body := changePassword(t, s.Token, newPassword); status != http.StatusOK { // settings hook: key, body, parsed answer
		t.Fatalf("settings flow: HTTP %d %s", status, body)
	}
	if mp := getIdentity(t, id.ID).MetadataPublic; mp["password_change_required"] != nil {
		t.Errorf("after the change metadata_public = %v, want the flag cleared by the settings hook", mp)
	}
	if status, _ := login(t, email, newPassword); status != http.StatusOK {
		t.Errorf("login with the new password: HTTP %d", status)
	}
	if strings.Contains(h.String(), "wrong API key") {
		t.Errorf("a call from Kratos carried the key of its files, not its environment's:\n%s", h.String())
	}
}

// startKratosElsewhere runs Kratos with the config file at config from a
// fresh, empty working directory, on ports and a database of its own, as
// startKratosFor does with the committed files.
func startKratosElsewhere(t *testing.T, name, config string, extraEnv ...string) kratosServer {
	t.Helper()
	work := t.TempDir()
	publicPort, adminPort := freePort(), freePort()
	k := kratosServer{public: fmt.Sprintf("http://127.0.0.1:%d", publicPort), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
	kratosEnv := append([]string{
		"DSN=sqlite://" + filepath.Join(work, "kratos.sqlite") + "?_fk=true&mode=rwc&_journal_mode=WAL",
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", publicPort),
		"SERVE_PUBLIC_BASE_URL=" + k.public + "/",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", adminPort),
		"SERVE_ADMIN_BASE_URL=" + k.admin + "/",
		"HASHERS_ALGORITHM=bcrypt",
		"LOG_LEVEL=debug",
	}, extraEnv...)
	migrate := exec.Command(env.kratosBin, "migrate", "sql", "-e", "--yes", "-c", config)
	migrate.Dir, migrate.Env = work, append(os.Environ(), kratosEnv...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("kratos migrate: %v\n%s", err, tail(out))
	}
	stop, err := env.start(name, env.kratosBin, work, kratosEnv, "serve", "-c", config, "--dev", "--watch-courier")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if err := waitHTTP(k.admin+"/admin/health/ready", 60*time.Second); err != nil {
		t.Fatalf("%s not ready: %v", name, err)
	}
	return k
}

// A template that shows {{.RecoveryCode}} gets the code of the Kratos
// message that asked for the reset, and that code works in Kratos's own
// recovery flow: a deployment whose UI waits for a code after a recovery
// can put it in the password mail. The code is a secret like the password:
// the run-wide scan looks for it too.
func TestKratosCodeInPasswordMail(t *testing.T) {
	k := ownKratos(t, "kratos-code-in-mail", nil, "FEATURE_FLAGS_USE_CONTINUE_WITH_TRANSITIONS=true")
	cfg := gatewayConfig(hostOptions{enabled: true, kratos: &k}) + `template:
  text: |
    Here is a temporary password for it: {{.Password}}
    {{with .RecoveryCode}}Or enter this code on the recovery page: {{.}}{{end}}
`
	h, stopHost := runHostWith(t, writeConfig(t, cfg))
	t.Cleanup(stopHost)

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	flowID := submitRecovery(t, email, "code")
	m := waitMails(t, email, 1)[0]
	temp := temporaryPassword(t, m)
	match := regexp.MustCompile(`enter this code on the recovery page: (\d{6})\b`).FindStringSubmatch(m.Text)
	if match == nil {
		t.Fatalf("the password mail carries no code:\n%s", m.Text)
	}
	code := match[1]
	observed.secret(code)
	if kratos := regexp.MustCompile(`\b(\d{6})\b`).FindString(kratosMessageBody(t, email, "recovery_code_valid")); kratos != code {
		t.Fatalf("the mail's code is not the one of Kratos's message (%d digits against %d)", len(code), len(kratos))
	}

	// The code logs the user in through Kratos's recovery flow, which sends
	// them to the settings flow with a session.
	var done struct {
		ContinueWith []struct {
			Action string `json:"action"`
			Token  string `json:"ory_session_token"`
		} `json:"continue_with"`
	}
	if status := call(t, "POST", env.kratosPublic+"/self-service/recovery?flow="+flowID, nil,
		map[string]any{"method": "code", "code": code}, &done); status != http.StatusOK {
		t.Fatalf("submit the mail's code to Kratos's recovery flow: HTTP %d", status)
	}
	token := ""
	for _, c := range done.ContinueWith {
		if c.Action == "set_ory_session_token" {
			token = c.Token
		}
	}
	if token == "" {
		t.Fatalf("Kratos's recovery with the mail's code gave no session: %+v", done)
	}
	if status, body := changePassword(t, token, newPassword); status != http.StatusOK {
		t.Fatalf("settings flow after the recovery by code: HTTP %d %s", status, body)
	}
	if gw, _ := getIdentity(t, id.ID).MetadataAdmin["email_gateway"].(map[string]any); gw["pending"] != nil {
		t.Errorf("the pending reset outlived the new password: metadata_admin.email_gateway = %v", gw)
	}
	if status, _ := login(t, email, newPassword); status != http.StatusOK {
		t.Errorf("login with the password set after the recovery by code: HTTP %d", status)
	}
	for _, pw := range []string{temp, oldPassword} {
		if status, _ := login(t, email, pw); status != http.StatusBadRequest {
			t.Errorf("a password from before the change still logs in: HTTP %d", status)
		}
	}
	if strings.Contains(h.String(), code) {
		t.Errorf("the host logged Kratos's recovery code")
	}
}

// The same for the link method: {{.RecoveryURL}} is the link of Kratos's
// message, and the link logs the user in and opens Kratos's settings flow.
func TestKratosLinkInPasswordMail(t *testing.T) {
	k := ownKratos(t, "kratos-link-in-mail", nil, "SELFSERVICE_FLOWS_RECOVERY_USE=link")
	cfg := gatewayConfig(hostOptions{enabled: true, kratos: &k}) + `template:
  text: |
    Here is a temporary password for it: {{.Password}}
    {{with .RecoveryURL}}Or open this link: {{.}}{{end}}
`
	h, stopHost := runHostWith(t, writeConfig(t, cfg))
	t.Cleanup(stopHost)

	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)
	submitRecovery(t, email, "link")
	m := waitMails(t, email, 1)[0]
	temporaryPassword(t, m)
	match := regexp.MustCompile(`Or open this link: (\S+)`).FindStringSubmatch(m.Text)
	if match == nil {
		t.Fatalf("the password mail carries no link:\n%s", m.Text)
	}
	link, err := url.Parse(match[1])
	if err != nil || link.Query().Get("token") == "" {
		t.Fatalf("the mail's link is not Kratos's recovery link (%v)", err)
	}
	observed.secret(link.Query().Get("token"))
	if !slices.Contains(strings.Split(kratosMessageBody(t, email, "recovery_valid"), "\n"), match[1]) {
		t.Fatalf("the mail's link is not a line of Kratos's message")
	}

	resp, err := client.Get(match[1])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "http://127.0.0.1:4455/settings?flow=") {
		t.Fatalf("the mail's link: HTTP %d to %q, want 303 to the settings UI", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	var s struct {
		Identity identity `json:"identity"`
	}
	if status := call(t, "GET", env.kratosPublic+"/sessions/whoami", http.Header{"Cookie": {strings.Join(cookies, "; ")}}, nil, &s); status != http.StatusOK || s.Identity.ID != id.ID {
		t.Fatalf("the session the link opened: HTTP %d for identity %q, want %s", status, s.Identity.ID, id.ID)
	}
	if strings.Contains(h.String(), link.Query().Get("token")) {
		t.Errorf("the host logged the token of Kratos's recovery link")
	}
}

// kratosMessageBody returns the body of a message of templateType that
// Kratos queued for recipient (each test here has one). It asks Kratos's
// admin API without call(), whose answers the run-wide secret scan reads:
// Kratos's own message holds its code or link by design.
func kratosMessageBody(t *testing.T, recipient, templateType string) string {
	t.Helper()
	resp, err := client.Get(env.kratosAdmin + "/admin/courier/messages?recipient=" + url.QueryEscape(recipient))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var msgs []struct {
		TemplateType string `json:"template_type"`
		Body         string `json:"body"`
	}
	if err := json.Unmarshal(raw, &msgs); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("list Kratos's courier messages: HTTP %d, %v", resp.StatusCode, err)
	}
	for _, m := range msgs {
		if m.TemplateType == templateType {
			return m.Body
		}
	}
	t.Fatalf("Kratos queued no %s message for %s", templateType, recipient)
	return ""
}
