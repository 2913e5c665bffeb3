package mailtmpl_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/mailtmpl"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

func mustNew(t *testing.T, cfg mailtmpl.Config) *mailtmpl.Set {
	t.Helper()
	s, err := mailtmpl.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func mustRender(t *testing.T, s *mailtmpl.Set, d mailtmpl.Data) mailtmpl.Mail {
	t.Helper()
	m, err := s.Render(d)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return m
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	d := mailtmpl.SampleData()
	// The expiry is given in another zone to check that the mail shows UTC.
	d.ExpiresAt = time.Date(2026, time.November, 27, 0, 14, 0, 0, time.FixedZone("CEST", 2*60*60))
	m := mustRender(t, mustNew(t, mailtmpl.Config{}), d)

	if want := "Your temporary password"; m.Subject != want {
		t.Errorf("Subject = %q, want %q", m.Subject, want)
	}
	for _, part := range []struct{ name, body string }{{"Text", m.Text}, {"HTML", m.HTML}} {
		for _, want := range []string{
			d.Password,
			"2026-11-26 22:14 UTC",
			d.LoginURL,
			d.Recipient,
			"choose a new password",
			"did not ask for this, you can ignore",
		} {
			if !strings.Contains(part.body, want) {
				t.Errorf("%s body does not contain %q:\n%s", part.name, want, part.body)
			}
		}
	}
}

// TestGolden pins the default rendering of SampleData; run with -update
// after changing a default template, and review the diff.
func TestGolden(t *testing.T) {
	t.Parallel()
	m := mustRender(t, mustNew(t, mailtmpl.Config{}), mailtmpl.SampleData())
	for _, tt := range []struct{ file, got string }{
		{"default.subject.golden", m.Subject},
		{"default.text.golden", m.Text},
		{"default.html.golden", m.HTML},
	} {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			golden(t, tt.file, tt.got)
		})
	}
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func TestEscaping(t *testing.T) {
	t.Parallel()
	const (
		hostilePassword = `<b>&"x'`
		hostileTrait    = `<script>alert(1)</script>`
	)
	d := mailtmpl.SampleData()
	d.Password = hostilePassword
	d.Identity.Traits["name"] = map[string]any{"first": hostileTrait, "last": "Doe"}

	custom := mailtmpl.Config{
		Text: "{{.Identity.Traits.name.first}} {{.Password}}",
		HTML: "<p>{{.Identity.Traits.name.first}} {{.Password}}</p>",
	}
	tests := []struct {
		name        string
		cfg         mailtmpl.Config
		wantHTML    []string
		wantNotHTML []string
		wantText    []string
	}{
		{
			name:        "defaults",
			cfg:         mailtmpl.Config{},
			wantHTML:    []string{"&lt;b&gt;&amp;&#34;x&#39;"},
			wantNotHTML: []string{hostilePassword},
			wantText:    []string{hostilePassword},
		},
		{
			name:        "trait in custom templates",
			cfg:         custom,
			wantHTML:    []string{"&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;&amp;&#34;x&#39;"},
			wantNotHTML: []string{hostilePassword, hostileTrait},
			wantText:    []string{hostileTrait + " " + hostilePassword},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := mustRender(t, mustNew(t, tt.cfg), d)
			for _, s := range tt.wantHTML {
				if !strings.Contains(m.HTML, s) {
					t.Errorf("HTML does not contain escaped %q:\n%s", s, m.HTML)
				}
			}
			for _, s := range tt.wantNotHTML {
				if strings.Contains(m.HTML, s) {
					t.Errorf("HTML contains unescaped %q:\n%s", s, m.HTML)
				}
			}
			for _, s := range tt.wantText {
				if !strings.Contains(m.Text, s) {
					t.Errorf("Text does not contain verbatim %q:\n%s", s, m.Text)
				}
			}
		})
	}
}

func TestUnsafeLoginURLNotLinked(t *testing.T) {
	t.Parallel()
	d := mailtmpl.SampleData()
	d.LoginURL = "javascript:alert(1)"
	m := mustRender(t, mustNew(t, mailtmpl.Config{}), d)
	if strings.Contains(m.HTML, `href="javascript:`) {
		t.Errorf("HTML links to a javascript: URL:\n%s", m.HTML)
	}
}

func TestCustomTemplates(t *testing.T) {
	t.Parallel()
	defaults := mustRender(t, mustNew(t, mailtmpl.Config{}), mailtmpl.SampleData())
	tests := []struct {
		name string
		cfg  mailtmpl.Config
		want mailtmpl.Mail
	}{
		{
			name: "all three",
			cfg: mailtmpl.Config{
				Subject: "  Password for {{.Identity.Traits.name.first}}  \n",
				Text:    "Hi {{.Identity.Traits.name.first}}, use {{.Password}} before {{formatTime .ExpiresAt}} at {{.LoginURL}}.\n",
				HTML:    `<p>Hi {{.Identity.Traits.name.first}}, use <code>{{.Password}}</code> at <a href="{{.LoginURL}}">login</a>.</p>`,
			},
			want: mailtmpl.Mail{
				Subject: "Password for Jane",
				Text:    "Hi Jane, use Hk7#Zr2@Wm9_eT4q before 2026-11-26 22:14 UTC at https://auth.example.com/login.\n",
				HTML:    `<p>Hi Jane, use <code>Hk7#Zr2@Wm9_eT4q</code> at <a href="https://auth.example.com/login">login</a>.</p>`,
			},
		},
		{
			name: "optional trait through index",
			cfg: mailtmpl.Config{
				Subject: `Hello{{with index .Identity.Traits "nickname"}} {{.}}{{end}}`,
				Text:    `{{.Identity.ID}}{{with index .Identity.Traits "nickname"}} {{.}}{{end}}`,
				HTML:    `{{with index .Identity.Traits "nickname"}}{{.}}{{else}}{{.Identity.Traits.email}}{{end}}`,
			},
			want: mailtmpl.Mail{
				Subject: "Hello",
				Text:    "9f425a8d-7efc-4768-8f23-7647a74fdf13",
				HTML:    "jane.doe@example.com",
			},
		},
		{
			name: "subject only, bodies default",
			cfg:  mailtmpl.Config{Subject: "Temporary password for {{.Recipient}}"},
			want: mailtmpl.Mail{
				Subject: "Temporary password for jane.doe@example.com",
				Text:    defaults.Text,
				HTML:    defaults.HTML,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustRender(t, mustNew(t, tt.cfg), mailtmpl.SampleData())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejectsBrokenTemplates(t *testing.T) {
	t.Parallel()
	// with puts src into the field of a Config that key names.
	with := func(key, src string) mailtmpl.Config {
		switch key {
		case "template.subject":
			return mailtmpl.Config{Subject: src}
		case "template.text":
			return mailtmpl.Config{Text: src}
		case "template.html":
			return mailtmpl.Config{HTML: src}
		}
		panic("unknown key " + key)
	}
	tests := []struct {
		name string
		src  string
		want []string // besides the key
	}{
		// Parse errors: the line of the fault must be in the message.
		{"unexpected paren on line 3", "one\ntwo\nthree {{.Password)}}\n", []string{":3:"}},
		{"unknown function on line 2", "one\n{{nope .Password}}", []string{":2:", "nope"}},
		{"unmatched end on line 4", "1\n2\n3\n{{end}}", []string{":4:"}},
		// Execution errors, found by the trial render in New.
		{"unknown field", "{{.Nope}}", []string{"Nope"}},
		{"missing trait", "{{.Identity.Traits.nickname}}", []string{"nickname"}},
		{"wrong argument type", "{{formatTime .Password}}", []string{"time.Time"}},
	}
	for _, key := range []string{"template.subject", "template.text", "template.html"} {
		for _, tt := range tests {
			t.Run(key+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				s, err := mailtmpl.New(with(key, tt.src))
				if err == nil {
					t.Fatalf("New accepted %q as %s", tt.src, key)
				}
				if s != nil {
					t.Errorf("New returned a Set alongside the error %v", err)
				}
				for _, want := range append([]string{key}, tt.want...) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
			})
		}
	}
}

// TestNewRejectsUnsafeHTMLContext covers the errors html/template reports
// only on first execution, which New must still catch.
func TestNewRejectsUnsafeHTMLContext(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`<a href="{{.LoginURL}}`,
		`<p title='{{.Password}}>`,
	} {
		if _, err := mailtmpl.New(mailtmpl.Config{HTML: src}); err == nil || !strings.Contains(err.Error(), "template.html") {
			t.Errorf("New(HTML %q) error = %v, want one naming template.html", src, err)
		}
	}
}

func TestSubjectChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		subject   string
		recipient string
		wantNew   bool   // the error shows already at New, with the sample data
		want      string // in the error
	}{
		{"LF in template", "Hello\nBcc: evil@example.com", "", true, "line break"},
		{"CRLF in template", "Hello\r\nBcc: evil@example.com", "", true, "line break"},
		{"blank template", " \n ", "", true, "empty"},
		{"LF from data", "For {{.Recipient}}", "jane@example.com\nBcc: evil@example.com", false, "line break"},
		{"CR from data", "For {{.Recipient}}", "jane@example.com\rBcc: evil@example.com", false, "line break"},
		{"empty from data", "{{.Recipient}}", "", false, "empty"},
		{"blank from data", "{{.Recipient}}", " \r\n\t", false, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := mailtmpl.New(mailtmpl.Config{Subject: tt.subject})
			if !tt.wantNew {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				d := mailtmpl.SampleData()
				d.Recipient = tt.recipient
				_, err = s.Render(d)
			}
			if err == nil {
				t.Fatal("got no error")
			}
			for _, want := range []string{"template.subject", tt.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestSampleDataIsFresh(t *testing.T) {
	t.Parallel()
	d := mailtmpl.SampleData()
	d.Identity.Traits["email"] = "changed@example.com"
	if got := mailtmpl.SampleData().Identity.Traits["email"]; got != "jane.doe@example.com" {
		t.Errorf("SampleData shares its traits map between calls: email = %v", got)
	}
}

// TestRenderConcurrent renders from several goroutines at once; under -race
// it would report shared mutable state, and the comparison catches output
// mixed between calls.
func TestRenderConcurrent(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{})
	const goroutines, renders = 8, 50

	data := make([]mailtmpl.Data, goroutines)
	want := make([]mailtmpl.Mail, goroutines)
	for i := range data {
		data[i] = mailtmpl.SampleData()
		data[i].Password = fmt.Sprintf("Pw%02d#Kq9!mRp2@Vt", i)
		data[i].Recipient = fmt.Sprintf("user%02d@example.com", i)
		want[i] = mustRender(t, s, data[i])
	}

	renderConcurrently(t, s, data, want, renders)
}

// renderConcurrently renders data[i] from one goroutine per i, renders
// times each, and checks every result against want[i].
func renderConcurrently(t *testing.T, s *mailtmpl.Set, data []mailtmpl.Data, want []mailtmpl.Mail, renders int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range data {
		wg.Go(func() {
			for range renders {
				got, err := s.Render(data[i])
				if err != nil {
					t.Errorf("goroutine %d: Render: %v", i, err)
					return
				}
				if diff := cmp.Diff(want[i], got); diff != "" {
					t.Errorf("goroutine %d: Render mismatch (-want +got):\n%s", i, diff)
					return
				}
			}
		})
	}
	wg.Wait()
}
