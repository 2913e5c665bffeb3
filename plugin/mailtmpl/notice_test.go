package mailtmpl_test

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/mailtmpl"
)

func mustRenderNotice(t *testing.T, s *mailtmpl.Set, n mailtmpl.Notice, d mailtmpl.NoticeData) mailtmpl.Mail {
	t.Helper()
	m, err := s.RenderNotice(n, d)
	if err != nil {
		t.Fatalf("RenderNotice(%s): %v", n, err)
	}
	return m
}

// noticeInline sets the inline templates of n in cfg.
func noticeInline(cfg *mailtmpl.Config, n mailtmpl.Notice, in mailtmpl.Inline) {
	switch n {
	case mailtmpl.NoticePasswordChanged:
		cfg.PasswordChanged = in
	case mailtmpl.NoticeResetVoid:
		cfg.ResetVoid = in
	default:
		panic("unknown notice " + n)
	}
}

// The default notices say what happened, when, to which account, and what
// to do if it was not the user; they hold no secret of the password mail's
// sample (the password, Kratos's code and link).
func TestNoticeDefaults(t *testing.T) {
	t.Parallel()
	d := mailtmpl.SampleNoticeData()
	// The time is given in another zone to check that the mail shows UTC.
	d.At = time.Date(2026, time.November, 26, 23, 14, 0, 0, time.FixedZone("CEST", 2*60*60))
	s := mustNew(t, mailtmpl.Config{})
	tests := []struct {
		notice  mailtmpl.Notice
		subject string
		want    []string // in both bodies
	}{
		{
			notice:  mailtmpl.NoticePasswordChanged,
			subject: "Your password was changed",
			want:    []string{d.Recipient, "2026-11-26 21:14 UTC", "was changed", "If you did not", "Forgot password?", d.LoginURL, "no password and no link that signs"},
		},
		{
			notice:  mailtmpl.NoticeResetVoid,
			subject: "Someone asked to recover your account",
			want:    []string{d.Recipient, "2026-11-26 21:14 UTC", "current password", "nothing changed", "no longer", d.SettingsURL, "no password and no link that signs"},
		},
	}
	sample := mailtmpl.SampleData()
	for _, tt := range tests {
		t.Run(string(tt.notice), func(t *testing.T) {
			t.Parallel()
			m := mustRenderNotice(t, s, tt.notice, d)
			if m.Subject != tt.subject || m.Locale != "" {
				t.Errorf("Subject, Locale = %q, %q; want %q, \"\"", m.Subject, m.Locale, tt.subject)
			}
			for _, part := range []struct{ name, body string }{{"Text", m.Text}, {"HTML", m.HTML}} {
				for _, want := range tt.want {
					if !strings.Contains(part.body, want) {
						t.Errorf("%s body does not contain %q:\n%s", part.name, want, part.body)
					}
				}
				for _, secret := range []string{sample.Password, sample.RecoveryCode, sample.RecoveryURL} {
					if strings.Contains(part.body+m.Subject, secret) {
						t.Errorf("%s body holds a secret of the password mail's sample: %q", part.name, secret)
					}
				}
			}
		})
	}
}

// TestNoticeGolden pins the default rendering of SampleNoticeData; run
// with -update after changing a default template, and review the diff.
func TestNoticeGolden(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{})
	for _, n := range mailtmpl.Notices() {
		m := mustRenderNotice(t, s, n, mailtmpl.SampleNoticeData())
		for _, tt := range []struct{ file, got string }{
			{string(n) + ".subject.golden", m.Subject},
			{string(n) + ".text.golden", m.Text},
			{string(n) + ".html.golden", m.HTML},
		} {
			t.Run(tt.file, func(t *testing.T) {
				t.Parallel()
				golden(t, tt.file, tt.got)
			})
		}
	}
}

func TestRenderNoticeRefusesAnUnknownNotice(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{})
	for _, n := range []mailtmpl.Notice{"", "password", "Password_Changed", "reset_void "} {
		if _, err := s.RenderNotice(n, mailtmpl.SampleNoticeData()); !errors.Is(err, mailtmpl.ErrUnknownNotice) {
			t.Errorf("RenderNotice(%q) = %v, want ErrUnknownNotice", n, err)
		}
	}
}

// A notice has no secret to show: a template that reaches for one fails at
// New, naming the template, wherever it comes from. The password mail's
// templates keep their data.
func TestNoticeTemplatesCannotReachASecret(t *testing.T) {
	t.Parallel()
	parts := []struct {
		name, file string
		set        func(*mailtmpl.Inline, string)
	}{
		{"subject", "subject.txt", func(in *mailtmpl.Inline, s string) { in.Subject = s }},
		{"text", "body.txt", func(in *mailtmpl.Inline, s string) { in.Text = s }},
		{"html", "body.html", func(in *mailtmpl.Inline, s string) { in.HTML = s }},
	}
	for _, n := range mailtmpl.Notices() {
		for _, p := range parts {
			for _, field := range []string{".Password", ".RecoveryCode", ".RecoveryURL", ".ExpiresAt"} {
				src := "Hello {{" + field + "}}"
				t.Run(fmt.Sprintf("%s/%s/%s/inline", n, p.name, field), func(t *testing.T) {
					t.Parallel()
					var in mailtmpl.Inline
					p.set(&in, src)
					var cfg mailtmpl.Config
					noticeInline(&cfg, n, in)
					_, err := mailtmpl.New(cfg)
					key := "template." + string(n) + "." + p.name
					if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), string(n)+" notice") {
						t.Errorf("New(%s = %q) = %v, want an error naming %s and the notice", key, src, err, key)
					}
				})
				t.Run(fmt.Sprintf("%s/%s/%s/file", n, p.name, field), func(t *testing.T) {
					t.Parallel()
					file := "de/" + string(n) + "." + p.file
					_, err := mailtmpl.New(mailtmpl.Config{Dir: writeDir(t, map[string]string{file: src})})
					if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "locale de") {
						t.Errorf("New(%s = %q) = %v, want an error naming the file and its locale", file, src, err)
					}
				})
			}
		}
	}
}

// For each template of each notice, <dir>/<locale>/<file> beats
// <dir>/<file> beats the inline key beats the embedded default, as for the
// password mail (TestPrecedence); and a notice's sources never change the
// password mail or the other notice.
func TestNoticePrecedence(t *testing.T) {
	t.Parallel()
	def := mustNew(t, mailtmpl.Config{})
	defPassword := mustRender(t, def, withTrait("locale", "de"))
	parts := []struct {
		file string
		set  func(*mailtmpl.Inline, string)
		get  func(mailtmpl.Mail) string
	}{
		{"subject.txt", func(in *mailtmpl.Inline, s string) { in.Subject = s }, func(m mailtmpl.Mail) string { return m.Subject }},
		{"body.txt", func(in *mailtmpl.Inline, s string) { in.Text = s }, func(m mailtmpl.Mail) string { return m.Text }},
		{"body.html", func(in *mailtmpl.Inline, s string) { in.HTML = s }, func(m mailtmpl.Mail) string { return m.HTML }},
	}
	tests := []struct {
		name                 string
		inline, root, locale bool   // which sources exist
		want, wantDE         string // "default" for the embedded default
	}{
		{"default only", false, false, false, "default", "default"},
		{"inline beats default", true, false, false, "inline", "inline"},
		{"root file beats inline", true, true, false, "root", "root"},
		{"locale file beats root file", true, true, true, "root", "de"},
		{"locale file beats inline", true, false, true, "inline", "de"},
		{"locale file beats default", false, false, true, "default", "de"},
	}
	for _, n := range mailtmpl.Notices() {
		other := mailtmpl.NoticeResetVoid
		if n == other {
			other = mailtmpl.NoticePasswordChanged
		}
		defNotice := map[string]mailtmpl.Mail{
			"": mustRenderNotice(t, def, n, mailtmpl.SampleNoticeData()),
		}
		defOther := mustRenderNotice(t, def, other, noticeWithLocale("de"))
		for _, p := range parts {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/%s/%s", n, p.file, tt.name), func(t *testing.T) {
					t.Parallel()
					var cfg mailtmpl.Config
					if tt.inline {
						var in mailtmpl.Inline
						p.set(&in, "inline")
						noticeInline(&cfg, n, in)
					}
					files := map[string]string{}
					if tt.root {
						files[string(n)+"."+p.file] = "root"
					}
					if tt.locale {
						files["de/"+string(n)+"."+p.file] = "de"
					}
					if len(files) > 0 {
						cfg.Dir = writeDir(t, files)
					}
					s := mustNew(t, cfg)
					for locale, want := range map[string]string{"": tt.want, "de": tt.wantDE} {
						got := p.get(mustRenderNotice(t, s, n, noticeWithLocale(locale)))
						if want == "default" {
							want = p.get(defNotice[""])
						}
						if got != want {
							t.Errorf("locale %q: got %q, want %q", locale, got, want)
						}
					}
					if m := mustRender(t, s, withTrait("locale", "de")); m != defPassword {
						t.Errorf("the password mail changed with the notice's sources: %+v", m)
					}
					if m := mustRenderNotice(t, s, other, noticeWithLocale("de")); m != defOther {
						t.Errorf("the %s notice changed with the %s notice's sources: %+v", other, n, m)
					}
				})
			}
		}
	}
}

// noticeWithLocale returns SampleNoticeData with the locale trait, or
// without it for "".
func noticeWithLocale(locale string) mailtmpl.NoticeData {
	d := mailtmpl.SampleNoticeData()
	if locale != "" {
		d.Identity.Traits["locale"] = locale
	}
	return d
}

// A locale folder serves the mails it holds files of: one with only the
// password mail's files leaves the notices in the default locale, and one
// with only a notice's files leaves the password mail there.
func TestNoticeLocales(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{Dir: writeDir(t, map[string]string{
		"de/subject.txt":                  "Passwort für {{.Identity.Traits.name.first}}",
		"fr/password_changed.subject.txt": "Votre mot de passe a été changé, {{.Identity.Traits.name.first}}",
		"fr/reset_void.body.txt":          "Bonjour {{.Identity.Traits.name.first}}, le {{formatTime .At}}.",
		"pt-br/reset_void.subject.txt":    "Pediram para recuperar sua conta",
	})})
	if diff := cmp.Diff([]string{"de", "fr", "pt-br"}, s.Locales()); diff != "" {
		t.Errorf("Locales mismatch (-want +got):\n%s", diff)
	}
	def := mustNew(t, mailtmpl.Config{})
	tests := []struct {
		locale      string
		mail        mailtmpl.Notice // "" for the password mail
		wantLocale  string
		wantSubject string // "" for the default's
		wantText    string // "" for the default's
	}{
		{"de", "", "de", "Passwort für Jane", ""},
		{"de", mailtmpl.NoticePasswordChanged, "", "", ""},
		{"de", mailtmpl.NoticeResetVoid, "", "", ""},
		{"fr", "", "", "", ""},
		{"fr-CA", mailtmpl.NoticePasswordChanged, "fr", "Votre mot de passe a été changé, Jane", ""},
		{"fr", mailtmpl.NoticeResetVoid, "fr", "", "Bonjour Jane, le 2026-11-26 21:14 UTC."},
		{"pt_BR", mailtmpl.NoticeResetVoid, "pt-br", "Pediram para recuperar sua conta", ""},
		{"pt", mailtmpl.NoticeResetVoid, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.locale+"/"+string(cmpOr(tt.mail, "password")), func(t *testing.T) {
			t.Parallel()
			var got, want mailtmpl.Mail
			if tt.mail == "" {
				got, want = mustRender(t, s, withTrait("locale", tt.locale)), mustRender(t, def, withTrait("locale", tt.locale))
			} else {
				got, want = mustRenderNotice(t, s, tt.mail, noticeWithLocale(tt.locale)), mustRenderNotice(t, def, tt.mail, noticeWithLocale(tt.locale))
			}
			want.Locale = tt.wantLocale
			if tt.wantSubject != "" {
				want.Subject = tt.wantSubject
			}
			if tt.wantText != "" {
				want.Text = tt.wantText
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func cmpOr(n mailtmpl.Notice, or string) mailtmpl.Notice {
	if n == "" {
		return mailtmpl.Notice(or)
	}
	return n
}

// A notice's broken template is refused at New, and the error names the
// config key or the file; template.dir refuses a misspelt notice file.
func TestNewRejectsBrokenNoticeTemplates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   mailtmpl.Config
		files map[string]string
		want  []string
	}{
		{
			name: "parse error on line 2 of an inline text",
			cfg:  mailtmpl.Config{ResetVoid: mailtmpl.Inline{Text: "one\n{{nope .At}}"}},
			want: []string{"template.reset_void.text", ":2:", "nope"},
		},
		{
			name: "unknown field in an inline html",
			cfg:  mailtmpl.Config{PasswordChanged: mailtmpl.Inline{HTML: "<p>{{.Nope}}</p>"}},
			want: []string{"template.password_changed.html", "Nope", "password_changed notice"},
		},
		{
			name: "line break in an inline subject",
			cfg:  mailtmpl.Config{PasswordChanged: mailtmpl.Inline{Subject: "Changed\nBcc: evil@example.com"}},
			want: []string{"template.password_changed.subject", "line break"},
		},
		{
			name: "blank subject file",
			files: map[string]string{
				"reset_void.subject.txt": " \n",
			},
			want: []string{"template.dir: reset_void.subject.txt", "empty"},
		},
		{
			name:  "HTML escaping error in a locale file",
			files: map[string]string{"de/password_changed.body.html": `<a href="{{.SettingsURL}}`},
			want:  []string{"locale de", "de/password_changed.body.html"},
		},
		{
			name:  "misspelt notice file",
			files: map[string]string{"password_changed.subjct.txt": "Changed"},
			want:  []string{"template.dir", "password_changed.subjct.txt", "neither a template file", "password_changed.subject.txt", "reset_void.body.html"},
		},
		{
			name:  "misspelt notice file in a locale folder",
			files: map[string]string{"de/reset-void.body.txt": "Hallo"},
			want:  []string{"template.dir", "de/reset-void.body.txt", "not a template file", "reset_void.body.txt"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if tt.files != nil {
				cfg.Dir = writeDir(t, tt.files)
			}
			s, err := mailtmpl.New(cfg)
			if err == nil {
				t.Fatal("New accepted the templates")
			}
			if s != nil {
				t.Errorf("New returned a Set alongside the error %v", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// secretNoticeData is SampleNoticeData with values found nowhere in the
// templates or the error texts, so that an error quoting any of them
// shows.
func secretNoticeData() mailtmpl.NoticeData {
	d := mailtmpl.SampleNoticeData()
	d.Recipient = "rcpt.secret@example.org"
	d.LoginURL = "https://login.secret.example.org/welcome"
	d.SettingsURL = "https://settings.secret.example.org/account"
	d.Identity.ID = "id-secret-4711"
	d.Identity.Traits = map[string]any{
		"email": "trait.email.secret@example.org",
		"name":  map[string]any{"first": "FirstSecret", "last": "LastSecret"},
	}
	return d
}

// A notice's template that passes New's check but fails on a real
// identity's data names the template and the problem, and quotes no value
// of the data.
func TestRenderNoticeErrorsQuoteNoData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		notice mailtmpl.Notice
		cfg    mailtmpl.Config
		files  map[string]string
		traits map[string]any
		want   []string
	}{
		{
			name:   "subject with a trait holding CRLF",
			notice: mailtmpl.NoticePasswordChanged,
			cfg:    mailtmpl.Config{PasswordChanged: mailtmpl.Inline{Subject: "Changed for {{.Identity.Traits.name.first}}"}},
			traits: map[string]any{"name": map[string]any{"first": "Eve\r\nBcc: injected.secret@example.org"}},
			want:   []string{"template.password_changed.subject", "line break", "nothing was sent"},
		},
		{
			name:   "text ranges over a string trait",
			notice: mailtmpl.NoticeResetVoid,
			cfg:    mailtmpl.Config{ResetVoid: mailtmpl.Inline{Text: "Hello\n{{range .Identity.Traits.name}}{{.}}{{end}}"}},
			traits: map[string]any{"name": "plain-name-secret"},
			want:   []string{"template.reset_void.text", "line 2", "{{range .Identity.Traits.name}}", "range over a value"},
		},
		{
			name:   "locale file reads a missing trait",
			notice: mailtmpl.NoticeResetVoid,
			files:  map[string]string{"de/reset_void.body.html": "<p>\n{{.Identity.Traits.name.first}}</p>"},
			traits: map[string]any{"locale": "de", "name": map[string]any{}},
			want:   []string{"template.dir: de/reset_void.body.html", "line 2", "lacks"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if tt.files != nil {
				cfg.Dir = writeDir(t, tt.files)
			}
			s := mustNew(t, cfg)
			d := secretNoticeData()
			for k, v := range tt.traits {
				d.Identity.Traits[k] = v
			}
			_, err := s.RenderNotice(tt.notice, d)
			if err == nil {
				t.Fatal("RenderNotice succeeded, want an error")
			}
			msg := err.Error()
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not contain %q:\n%s", want, msg)
				}
			}
			// The locale is the folder's name too, which the error names.
			checked := mailtmpl.Identity{ID: d.Identity.ID, Traits: maps.Clone(d.Identity.Traits)}
			delete(checked.Traits, "locale")
			assertQuotesNoData(t, msg, mailtmpl.Data{Recipient: d.Recipient, LoginURL: d.LoginURL, RecoveryURL: d.SettingsURL, Identity: checked})
		})
	}
}
