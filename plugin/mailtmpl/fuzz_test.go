package mailtmpl

import (
	"strings"
	"testing"
)

// marker is in every string of markedData, so that an error quoting one of
// them, or most parts a template can cut from one, shows.
const marker = "Qz7Marker"

// markedData returns Data whose strings all hold marker, in the shape of
// SampleData and in shapes the sample does not have (a string where it has
// a map, a list where it has a string, missing and null traits), so that
// templates passing New's check fail on them, for every reason they can.
func markedData() []Data {
	shaped := SampleData()
	shaped.Password = "pw-" + marker + "\r\n-pw"
	shaped.Recipient = "rcpt-" + marker + "@example.org"
	shaped.LoginURL = "https://login.example.org/" + marker
	shaped.Identity.ID = "id-" + marker
	// Kratos's code and link, in shapes the sample's do not have (a link
	// that is not https, a code that is not six digits).
	shaped.RecoveryCode = "code-" + marker
	shaped.RecoveryURL = "http://kratos.example.org/" + marker + "?token=" + marker
	shaped.Identity.Traits = map[string]any{
		"email": "email-" + marker + "@example.org",
		"name":  map[string]any{"first": "first-" + marker + "\nBcc: x@example.org", "last": "last-" + marker},
	}

	reshaped := shaped
	reshaped.Identity.Traits = map[string]any{
		"email": []any{"email-" + marker + "@example.org"},
		"name":  "name-" + marker,
		"code":  "code-" + marker + "-code",
		"tags":  []any{"tag-" + marker},
		"nick":  map[string]any{"x": "nick-" + marker},
	}

	sparse := shaped
	sparse.Identity.Traits = map[string]any{
		"email": nil,
		"name":  map[string]any{"first": []any{"first-" + marker}},
	}
	// An admin reset carries neither code nor link.
	admin := shaped
	admin.RecoveryCode, admin.RecoveryURL = "", ""
	return []Data{shaped, reshaped, sparse, admin}
}

// Any inline template either fails at New or renders every mail safely: the
// subject stays one line, the HTML never carries the raw password markup,
// and an error on real data quotes none of its values.
func FuzzTemplates(f *testing.F) {
	f.Add("Your password", "Use {{.Password}} until {{formatTime .ExpiresAt}}", "<p>{{.Password}}</p>")
	f.Add("{{.Recipient}}", "{{range .Identity.Traits}}{{.}}{{end}}", "<a href=\"{{.LoginURL}}\">log in</a>")
	f.Add("{{.Nope}}", "", "")
	f.Add("a\nb", "{{", "{{end}}")
	f.Add("Password {{.Password}} for {{.Identity.Traits.name.first}}", "", "")
	f.Add("Your password", "{{range .Identity.Traits.name}}{{.}}{{end}}", "<p>{{if eq .Identity.Traits.email .Identity.Traits.email}}same{{end}}</p>")
	f.Add("Your password", `{{with index .Identity.Traits "code"}}{{range slice . 2}}{{.}}{{end}}{{end}}`, `{{index .Identity.Traits.name "first"}}`)
	f.Add("Your password", "", `<p>{{with index .Identity.Traits "nick"}}{{if eq . .}}same{{end}}{{end}}</p>`)
	f.Add("Code {{slice .RecoveryCode 0 3}}", `{{if ne (slice .RecoveryURL 0 5) "https"}}{{range .RecoveryURL}}{{.}}{{end}}{{end}}`, `<a href="{{.RecoveryURL}}">{{.RecoveryCode}}</a>`)
	f.Fuzz(func(t *testing.T, subject, text, html string) {
		set, err := New(Config{Subject: subject, Text: text, HTML: html})
		if err != nil {
			return
		}
		templates := subject + text + html

		d := SampleData()
		d.Password = `<script>"pw"&`
		m, err := set.Render(d)
		if err != nil {
			// Render may refuse data the sample did not exercise, but never
			// quoting the password.
			if !strings.Contains(templates, d.Password) && strings.Contains(err.Error(), d.Password) {
				t.Fatalf("error quotes the password: %v", err)
			}
		} else {
			if strings.ContainsAny(m.Subject, "\r\n") || m.Subject == "" {
				t.Fatalf("rendered subject %q", m.Subject)
			}
			if strings.Contains(m.HTML, "<script>") {
				t.Fatalf("HTML carries the unescaped password: %q", m.HTML)
			}
		}

		if strings.Contains(templates, marker) {
			return // the template itself may be quoted
		}
		for _, d := range markedData() {
			m, err := set.Render(d)
			if err != nil {
				if strings.Contains(err.Error(), marker) {
					t.Fatalf("error quotes a value of the data: %v", err)
				}
				continue
			}
			if strings.ContainsAny(m.Subject, "\r\n") || m.Subject == "" {
				t.Fatalf("rendered subject %q", m.Subject)
			}
		}
	})
}

// markedNoticeData is markedData in the shape of NoticeData.
func markedNoticeData() []NoticeData {
	var out []NoticeData
	for _, d := range markedData() {
		out = append(out, NoticeData{
			At:          d.ExpiresAt,
			Recipient:   d.Recipient,
			Identity:    d.Identity,
			LoginURL:    d.LoginURL,
			SettingsURL: "https://settings.example.org/" + marker,
		})
	}
	return out
}

// Any inline notice template either fails at New or renders every notice
// safely: the subject stays one line, and an error on real data quotes
// none of its values. The same templates serve both notices, so each is
// exercised.
func FuzzNoticeTemplates(f *testing.F) {
	f.Add("Your password was changed", "Changed on {{formatTime .At}}; sign in at {{.LoginURL}}", `<a href="{{.SettingsURL}}">settings</a>`)
	f.Add("{{.Recipient}}", "{{range .Identity.Traits}}{{.}}{{end}}", "<p>{{.Identity.Traits.name.first}}</p>")
	f.Add("{{.Password}}", "", "")
	f.Add("For {{.Identity.Traits.name.first}}", `{{with index .Identity.Traits "code"}}{{range slice . 2}}{{.}}{{end}}{{end}}`, `{{index .Identity.Traits.name "first"}}`)
	f.Fuzz(func(t *testing.T, subject, text, html string) {
		in := Inline{Subject: subject, Text: text, HTML: html}
		set, err := New(Config{PasswordChanged: in, ResetVoid: in})
		if err != nil {
			return
		}
		if strings.Contains(subject+text+html, marker) {
			return // the template itself may be quoted
		}
		for _, n := range Notices() {
			for _, d := range markedNoticeData() {
				m, err := set.RenderNotice(n, d)
				if err != nil {
					if strings.Contains(err.Error(), marker) {
						t.Fatalf("%s: error quotes a value of the data: %v", n, err)
					}
					continue
				}
				if strings.ContainsAny(m.Subject, "\r\n") || m.Subject == "" {
					t.Fatalf("%s: rendered subject %q", n, m.Subject)
				}
			}
		}
	})
}
