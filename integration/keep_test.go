package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Anyone can start a recovery for any address: the current password keeps
// working, and using it voids the reset.
func TestCurrentPasswordStillWorksAndVoidsTheReset(t *testing.T) {
	logs := startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	id := createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])

	status, s := login(t, email, oldPassword)
	if status != http.StatusOK {
		t.Fatalf("login with the current password during a pending reset: HTTP %d, want 200", status)
	}
	if meta := sessionIdentity(t, s.Token).MetadataPublic; meta["password_change_required"] != nil {
		t.Errorf("metadata_public = %v: a change is forced on a user who kept their password", meta)
	}
	if status, _ := login(t, email, temp); status != http.StatusBadRequest {
		t.Errorf("login with the voided temporary password: HTTP %d, want 400", status)
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("second login with the current password: HTTP %d, want 200", status)
	}
	if gw, _ := getIdentity(t, id.ID).MetadataAdmin["email_gateway"].(map[string]any); gw["pending"] != nil {
		t.Errorf("metadata_admin still holds the pending reset: %v", gw)
	}
	if !strings.Contains(logs.String(), `"event":"reset_void"`) {
		t.Errorf("no audit line says the user kept their password")
	}
	assertNoSecrets(t, logs.String(), temp, oldPassword)
}

// Using the temporary password forces the change and ends the current one.
func TestTemporaryPasswordUsedReplacesTheCurrent(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	_, before := login(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	if whoami(t, before.Token) != http.StatusOK {
		t.Errorf("a pending reset ended the user's session before the temporary password was used")
	}
	status, s := login(t, email, temp)
	if status != http.StatusOK {
		t.Fatalf("login with the temporary password: HTTP %d", status)
	}
	if meta := sessionIdentity(t, s.Token).MetadataPublic; meta["password_change_required"] != true {
		t.Errorf("metadata_public = %v, want the flag", meta)
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusBadRequest {
		t.Errorf("login with the old password after the temporary one was used: HTTP %d, want 400", status)
	}
	if whoami(t, before.Token) != http.StatusUnauthorized {
		t.Errorf("the session from before still works after the temporary password was used")
	}
	if whoami(t, s.Token) != http.StatusOK {
		t.Errorf("the session made with the temporary password was ended too")
	}
}

// The last mail wins.
func TestSecondRecoveryReplacesTheFirstTemporaryPassword(t *testing.T) {
	startHost(t, hostOptions{enabled: true, cooldown: "0s"})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	first := temporaryPassword(t, waitMails(t, email, 1)[0])
	startRecovery(t, email)
	mails := waitMails(t, email, 2)
	second := temporaryPassword(t, mails[0]) // newest first
	if first == second {
		t.Fatal("both mails carry the same password")
	}
	if status, _ := login(t, email, first); status != http.StatusBadRequest {
		t.Errorf("login with the first temporary password: HTTP %d, want 400", status)
	}
	if status, _ := login(t, email, second); status != http.StatusOK {
		t.Errorf("login with the second temporary password: HTTP %d, want 200", status)
	}
}

// An expired temporary password is refused; the current password still works.
func TestExpiredTemporaryPasswordLeavesTheCurrentOne(t *testing.T) {
	startHost(t, hostOptions{enabled: true, ttl: "2s"})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	time.Sleep(3100 * time.Millisecond) // past the 2s ttl, whatever the rounding

	if status, _ := login(t, email, temp); status != http.StatusBadRequest {
		t.Errorf("login with the expired temporary password: HTTP %d, want 400", status)
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("login with the current password after the temporary one expired: HTTP %d, want 200", status)
	}
}

// keep_current_until_used: false is no longer honoured for self-service
// recovery, which anyone who knows an address can start: the current
// password and the sessions stay until the temporary one is used, and the
// host warns that the key is ignored.
func TestKeepCurrentFalseIsIgnoredWithAWarning(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true, replaceAtOnce: true})
	email := uniqueEmail(t)
	createIdentity(t, email, oldPassword)
	_, before := login(t, email, oldPassword)

	startRecovery(t, email)
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	if whoami(t, before.Token) != http.StatusOK {
		t.Errorf("a stranger's recovery ended the user's session")
	}
	if status, _ := login(t, email, oldPassword); status != http.StatusOK {
		t.Errorf("login with the current password right after the mail: HTTP %d, want 200", status)
	}
	if status, _ := login(t, email, temp); status != http.StatusBadRequest {
		t.Errorf("login with the temporary password the current one voided: HTTP %d, want 400", status)
	}
	if !strings.Contains(h.String(), "password.keep_current_until_used: false is no longer honoured") {
		t.Errorf("the host did not warn that the key is ignored:\n%s", h)
	}
}

// Kratos configured with its argon2 hasher: the current argon2id hash is
// sealed and checked by the gateway.
func TestKeepCurrentWithArgon2Hasher(t *testing.T) {
	k := ownKratos(t, "kratos-argon2", nil, "HASHERS_ALGORITHM=argon2")
	startHost(t, hostOptions{enabled: true, kratos: &k})

	for _, use := range []string{"current", "temporary"} {
		t.Run(use, func(t *testing.T) {
			email := uniqueEmail(t)
			id := createIdentity(t, email, oldPassword)
			var cred struct {
				Credentials struct {
					Password struct {
						Config struct {
							HashedPassword string `json:"hashed_password"`
						} `json:"config"`
					} `json:"password"`
				} `json:"credentials"`
			}
			call(t, "GET", k.admin+"/admin/identities/"+id.ID+"?include_credential=password", nil, nil, &cred)
			if h := cred.Credentials.Password.Config.HashedPassword; !strings.HasPrefix(h, "$argon2id$") {
				t.Fatalf("Kratos stored %.12q…, want an argon2id hash", h)
			}

			startRecovery(t, email)
			temp := temporaryPassword(t, waitMails(t, email, 1)[0])
			first, refused := oldPassword, temp
			if use == "temporary" {
				first, refused = temp, oldPassword
			}
			if status, _ := login(t, email, first); status != http.StatusOK {
				t.Fatalf("login with the %s password: HTTP %d, want 200", use, status)
			}
			if status, _ := login(t, email, refused); status != http.StatusBadRequest {
				t.Errorf("login with the other password: HTTP %d, want 400", status)
			}
		})
	}
}

func assertNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, env.apiKey, env.smtpPass, env.cipher) {
		if strings.Contains(logs, s) {
			t.Errorf("the gateway log contains a secret (%d characters)", len(s))
		}
	}
}
