package smtptest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
	"github.com/wneessen/go-mail"
)

func TestParseXOAUTH2(t *testing.T) {
	for _, tc := range []struct {
		name, resp  string
		user, token string
		ok          bool
	}{
		{"valid", "user=a@example.com\x01auth=Bearer tok.en-1\x01\x01", "a@example.com", "tok.en-1", true},
		{"scheme in any case", "user=a@example.com\x01auth=bearer t\x01\x01", "a@example.com", "t", true},
		{"keys in any order, others ignored", "auth=Bearer t\x01host=smtp.example.com\x01user=a@example.com\x01\x01", "a@example.com", "t", true},
		{"no final \\x01\\x01", "user=a@example.com\x01auth=Bearer t\x01", "", "", false},
		{"no user", "auth=Bearer t\x01\x01", "", "", false},
		{"empty user", "user=\x01auth=Bearer t\x01\x01", "", "", false},
		{"no auth", "user=a@example.com\x01\x01", "", "", false},
		{"empty token", "user=a@example.com\x01auth=Bearer \x01\x01", "", "", false},
		{"not Bearer", "user=a@example.com\x01auth=Basic dDp0\x01\x01", "", "", false},
		{"no scheme", "user=a@example.com\x01auth=t\x01\x01", "", "", false},
		{"user twice", "user=a@example.com\x01user=b@example.com\x01auth=Bearer t\x01\x01", "", "", false},
		{"auth twice", "user=a@example.com\x01auth=Bearer t\x01auth=Bearer u\x01\x01", "", "", false},
		{"field without =", "user=a@example.com\x01junk\x01auth=Bearer t\x01\x01", "", "", false},
		{"AUTH PLAIN's response", "\x00a@example.com\x00password", "", "", false},
		{"empty", "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, token, ok := ParseXOAUTH2([]byte(tc.resp))
			if user != tc.user || token != tc.token || ok != tc.ok {
				t.Errorf("ParseXOAUTH2(%q) = %q, %q, %v; want %q, %q, %v", tc.resp, user, token, ok, tc.user, tc.token, tc.ok)
			}
		})
	}
}

func TestXOAUTH2Server(t *testing.T) {
	const good = "user=a@example.com\x01auth=Bearer good\x01\x01"
	validate := func(user, token string) error {
		switch {
		case user == "a@example.com" && token == "good":
			return nil
		case token == "busy":
			return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "try later"}
		}
		return errors.New("inactive token")
	}
	refused := "user=a@example.com\x01auth=Bearer bad\x01\x01"

	t.Run("valid initial response", func(t *testing.T) {
		s := &XOAUTH2Server{Validate: validate}
		if ch, done, err := s.Next([]byte(good)); ch != nil || !done || err != nil {
			t.Fatalf("Next = %q, %v, %v; want nil, true, nil", ch, done, err)
		}
	})
	t.Run("no initial response: an empty 334 asks for it", func(t *testing.T) {
		s := &XOAUTH2Server{Validate: validate}
		ch, done, err := s.Next(nil)
		if ch == nil || len(ch) != 0 || done || err != nil {
			t.Fatalf("first Next = %q, %v, %v; want empty challenge", ch, done, err)
		}
		if _, done, err := s.Next([]byte(good)); !done || err != nil {
			t.Fatalf("second Next = %v, %v; want done", done, err)
		}
	})
	t.Run("wrong format", func(t *testing.T) {
		called, malformed := false, 0
		s := &XOAUTH2Server{Validate: func(string, string) error { called = true; return nil }, malformed: func() { malformed++ }}
		_, done, err := s.Next([]byte("\x00a@example.com\x00good"))
		if done || err != ErrXOAUTH2Syntax {
			t.Fatalf("Next = %v, %v; want %v", done, err, ErrXOAUTH2Syntax)
		}
		if called || malformed != 1 {
			t.Errorf("validator called %v, malformed told %d times; want false, 1", called, malformed)
		}
	})
	t.Run("refused", func(t *testing.T) {
		_, done, err := (&XOAUTH2Server{Validate: validate}).Next([]byte(refused))
		if done || err != ErrXOAUTH2Refused {
			t.Fatalf("Next = %v, %v; want %v", done, err, ErrXOAUTH2Refused)
		}
	})
	t.Run("refused with the validator's reply", func(t *testing.T) {
		_, _, err := (&XOAUTH2Server{Validate: validate}).Next([]byte("user=a@example.com\x01auth=Bearer busy\x01\x01"))
		var e *smtp.SMTPError
		if !errors.As(err, &e) || e.Code != 454 {
			t.Fatalf("Next err = %v; want the validator's 454", err)
		}
	})
	t.Run("refused after an error challenge", func(t *testing.T) {
		s := &XOAUTH2Server{Validate: validate, ErrorChallenge: true}
		ch, done, err := s.Next([]byte(refused))
		if string(ch) != `{"status":"401","schemes":"bearer"}` || done || err != nil {
			t.Fatalf("first Next = %q, %v, %v; want the JSON error challenge", ch, done, err)
		}
		if _, done, err := s.Next([]byte{}); done || err != ErrXOAUTH2Refused {
			t.Fatalf("second Next = %v, %v; want %v", done, err, ErrXOAUTH2Refused)
		}
	})
}

// TestXOAUTH2OverSMTP sends with go-mail's XOAUTH2 client, the one the
// plugin uses, to a server that offers only XOAUTH2.
func TestXOAUTH2OverSMTP(t *testing.T) {
	const user = "sender@example.com"
	for _, challenge := range []bool{false, true} {
		t.Run(map[bool]string{false: "refusal at once", true: "refusal after an error challenge"}[challenge], func(t *testing.T) {
			srv := Start(t, Options{XOAUTH2ErrorChallenge: challenge, XOAUTH2: func(u, token string) error {
				if u == user && token == "good-token" {
					return nil
				}
				return errors.New("inactive")
			}})
			send := func(auth mail.SMTPAuthType, username, secret string) error {
				pem, err := os.ReadFile(srv.PKI.CAFile)
				if err != nil {
					t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pem)
				c, err := mail.NewClient("127.0.0.1", mail.WithPort(srv.Port), mail.WithSSL(),
					mail.WithTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
					mail.WithSMTPAuth(auth), mail.WithUsername(username), mail.WithPassword(secret),
					mail.WithTimeout(10*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				m := mail.NewMsg()
				if err := m.From(user); err != nil {
					t.Fatal(err)
				}
				if err := m.To("rcpt@example.com"); err != nil {
					t.Fatal(err)
				}
				m.Subject("xoauth2")
				m.SetBodyString(mail.TypeTextPlain, "hello")
				return c.DialAndSend(m)
			}

			if err := send(mail.SMTPAuthXOAUTH2, user, "good-token"); err != nil {
				t.Fatalf("valid token: %v", err)
			}
			if err := send(mail.SMTPAuthXOAUTH2, user, "revoked-token"); !is535(err) {
				t.Fatalf("refused token: err = %v; want a 535 5.7.8", err)
			}
			if err := send(mail.SMTPAuthXOAUTH2, "other@example.com", "good-token"); !is535(err) {
				t.Fatalf("another user: err = %v; want a 535 5.7.8", err)
			}
			if err := send(mail.SMTPAuthPlain, user, "good-token"); !errors.Is(err, mail.ErrPlainAuthNotSupported) {
				t.Fatalf("AUTH PLAIN: err = %v; want %v (only XOAUTH2 offered)", err, mail.ErrPlainAuthNotSupported)
			}

			st := srv.State()
			if len(st.Mails) != 1 || st.Mails[0].From != user {
				t.Errorf("mails = %+v; want the one sent with the valid token", st.Mails)
			}
			if diff := cmp.Diff([]string{user}, st.Authed); diff != "" {
				t.Errorf("Authed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"good-token", "revoked-token", "good-token"}, st.Tokens); diff != "" {
				t.Errorf("Tokens (-want +got):\n%s", diff)
			}
			if st.Attempts != 3 || st.AuthFailed != 2 {
				t.Errorf("Attempts, AuthFailed = %d, %d; want 3, 2", st.Attempts, st.AuthFailed)
			}
		})
	}
}

// is535 says err is go-mail's report of a 535 5.7.8 (it quotes the text:
// 535 "5.7.8 Authentication credentials invalid").
func is535(err error) bool {
	return err != nil && strings.Contains(err.Error(), "535") && strings.Contains(err.Error(), "5.7.8")
}
