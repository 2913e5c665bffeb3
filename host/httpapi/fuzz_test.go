package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The courier parser takes anything: it never panics, answers only with
// the statuses Kratos is meant to see, and a refused body changes nothing.
func FuzzCourier(f *testing.F) {
	seed, err := os.ReadFile("testdata/courier-recovery_code_valid.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(seed), `{}`, `{"recipient":"a@b.c"}`, `[`, `{"recipient":"a@b.c\r\nBcc: x","template_type":"x"}`,
		`{"recipient":"a@b.c","template_type":"recovery_valid","template_data":{"identity":{"id":7}}}`, `{"a":` + string(bytes.Repeat([]byte("["), 5000))} {
		f.Add([]byte(s))
	}
	addCaptured(f, "courier-*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := &recorder{}
		h, _ := newServer(t, true, rec)
		w := post(h, "Bearer "+apiKey, bytes.NewReader(body))
		switch w.Code {
		case http.StatusOK:
			if len(rec.resets)+len(rec.sent) != 1 {
				t.Fatalf("200 after %d resets and %d mails, want exactly one", len(rec.resets), len(rec.sent))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(rec.resets)+len(rec.sent) != 0 {
				t.Fatalf("HTTP %d but something happened", w.Code)
			}
		default:
			t.Fatalf("unexpected HTTP %d: %s", w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", w.Body)
		}
	})
}

// The login hook never blocks a login it cannot read, and blocks only for
// a flag with an expiry in the past.
func FuzzLoginHook(f *testing.F) {
	seed, err := os.ReadFile("testdata/hook-login-after-password.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(seed), `{}`, `{"identity":null}`, `{"identity":{"id":"x","metadata_public":{"password_change_required":true,"temporary_password_expires_at":"2000-01-01T00:00:00Z"}}}`,
		`{"identity":{"id":"x","metadata_public":{"password_change_required":"true","temporary_password_expires_at":"2000-01-01T00:00:00Z"}}}`} {
		f.Add([]byte(s))
	}
	addCaptured(f, "hook-login-after-password.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		h, _ := newServer(t, true, &recorder{})
		w := hook(h, "/hooks/login", "Bearer "+apiKey, body)
		switch w.Code {
		case http.StatusOK:
		case http.StatusForbidden:
			var b struct {
				Identity struct {
					MetadataPublic map[string]any `json:"metadata_public"`
				} `json:"identity"`
			}
			if err := json.Unmarshal(body, &b); err != nil {
				t.Fatalf("blocked a login with a body it cannot read: %v", err)
			}
			exp, err := time.Parse(time.RFC3339, asString(b.Identity.MetadataPublic["temporary_password_expires_at"]))
			if b.Identity.MetadataPublic["password_change_required"] != true || err != nil || exp.After(testNow) {
				t.Fatalf("blocked a login without an expired temporary password: %s", body)
			}
		default:
			t.Fatalf("unexpected HTTP %d", w.Code)
		}
	})
}

// The settings hook either refuses (400) or returns metadata without the
// change-required keys.
func FuzzSettingsHook(f *testing.F) {
	for _, s := range []string{`{"identity":{"id":"x","metadata_public":{"password_change_required":true,"temporary_password_expires_at":"x","plan":"pro"}}}`,
		`{"identity":{"id":"x","metadata_public":null}}`, `{"identity":{"id":"x"}}`, `{`} {
		f.Add([]byte(s))
	}
	addCaptured(f, "hook-settings-after-password.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		h, _ := newServer(t, true, &recorder{})
		w := hook(h, "/hooks/settings", "Bearer "+apiKey, body)
		switch w.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		case http.StatusOK:
			var reply settingsReply
			if err := json.Unmarshal(w.Body.Bytes(), &reply); err != nil {
				t.Fatalf("reply is not JSON: %v", err)
			}
			if reply.Identity != nil && reply.Identity.MetadataPublic != nil {
				var meta map[string]any
				if err := json.Unmarshal(reply.Identity.MetadataPublic, &meta); err != nil {
					t.Fatalf("metadata_public in the reply is not an object: %v", err)
				}
				for _, k := range []string{"password_change_required", "temporary_password_expires_at"} {
					if _, ok := meta[k]; ok {
						t.Fatalf("the reply keeps %s", k)
					}
				}
			}
		default:
			t.Fatalf("unexpected HTTP %d", w.Code)
		}
	})
}

// The migration hook answers password_match only when CheckPassword says so.
func FuzzPasswordHook(f *testing.F) {
	for _, s := range []string{`{"identifier":"a","password":"b"}`, `{"identifier":"a"}`, `{"password":1}`, `null`, `{"identifier":"a","password":"b","status":"password_match"}`} {
		f.Add([]byte(s))
	}
	addCaptured(f, "hook-password-migration.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		h, _ := newServer(t, true, &recorder{verdict: "no_match"})
		w := hook(h, "/hooks/password", "Bearer "+apiKey, body)
		if w.Code == http.StatusOK || bytes.Contains(w.Body.Bytes(), []byte("password_match")) {
			t.Fatalf("matched without a Match verdict: HTTP %d %s", w.Code, w.Body)
		}
	})
}

// addCaptured seeds f with the captures of every Kratos version
// (testdata/kratos-<version>/) whose file name matches pattern.
func addCaptured(f *testing.F, pattern string) {
	paths, err := filepath.Glob(filepath.Join("testdata", "kratos-*", pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no captured sample matches %s: %v", pattern, err)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
}
