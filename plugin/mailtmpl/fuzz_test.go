package mailtmpl

import (
	"strings"
	"testing"
)

// Any inline template either fails at New or renders every mail safely: the
// subject stays one line and the HTML never carries the raw password markup.
func FuzzTemplates(f *testing.F) {
	f.Add("Your password", "Use {{.Password}} until {{formatTime .ExpiresAt}}", "<p>{{.Password}}</p>")
	f.Add("{{.Recipient}}", "{{range .Identity.Traits}}{{.}}{{end}}", "<a href=\"{{.LoginURL}}\">log in</a>")
	f.Add("{{.Nope}}", "", "")
	f.Add("a\nb", "{{", "{{end}}")
	f.Fuzz(func(t *testing.T, subject, text, html string) {
		set, err := New(Config{Subject: subject, Text: text, HTML: html})
		if err != nil {
			return
		}
		d := SampleData()
		d.Password = `<script>"pw"&`
		m, err := set.Render(d)
		if err != nil {
			// Render may refuse data the sample did not exercise, but never
			// with a subject that would inject a header.
			return
		}
		if strings.ContainsAny(m.Subject, "\r\n") || m.Subject == "" {
			t.Fatalf("rendered subject %q", m.Subject)
		}
		if strings.Contains(m.HTML, "<script>") {
			t.Fatalf("HTML carries the unescaped password: %q", m.HTML)
		}
	})
}
