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

// Kratos's own recovery code and link reach the templates: shown where a
// self-service reset carries them, escaped in HTML, and empty for an admin
// reset, whose mail still renders.
func TestRecoveryCodeAndURL(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{
		Subject: "Password{{with .RecoveryCode}} and code {{.}}{{end}}",
		Text:    "Password: {{.Password}}\n{{with .RecoveryCode}}Code: {{.}}\n{{end}}{{with .RecoveryURL}}Link: {{.}}\n{{end}}",
		HTML:    `<p>{{.Password}}</p>{{with .RecoveryCode}}<p>{{.}}</p>{{end}}{{with .RecoveryURL}}<a href="{{.}}">recover</a>{{end}}`,
	})
	link := "https://auth.example.com/self-service/recovery?flow=f1&token=t<2>"
	tests := []struct {
		name      string
		code, url string
		want      mailtmpl.Mail
	}{
		{
			name: "code method",
			code: "123456",
			want: mailtmpl.Mail{
				Subject: "Password and code 123456",
				Text:    "Password: Hk7#Zr2@Wm9_eT4q\nCode: 123456\n",
				HTML:    `<p>Hk7#Zr2@Wm9_eT4q</p><p>123456</p>`,
			},
		},
		{
			name: "link method",
			url:  link,
			want: mailtmpl.Mail{
				Subject: "Password",
				Text:    "Password: Hk7#Zr2@Wm9_eT4q\nLink: " + link + "\n",
				HTML:    `<p>Hk7#Zr2@Wm9_eT4q</p><a href="https://auth.example.com/self-service/recovery?flow=f1&amp;token=t%3c2%3e">recover</a>`,
			},
		},
		{
			name: "admin reset",
			want: mailtmpl.Mail{
				Subject: "Password",
				Text:    "Password: Hk7#Zr2@Wm9_eT4q\n",
				HTML:    `<p>Hk7#Zr2@Wm9_eT4q</p>`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := mailtmpl.SampleData()
			d.RecoveryCode, d.RecoveryURL = tt.code, tt.url
			if diff := cmp.Diff(tt.want, mustRender(t, s, d)); diff != "" {
				t.Errorf("Render mismatch (-want +got):\n%s", diff)
			}
		})
	}
	// Both are in the sample data, so templates using them pass New's
	// check; a typo in their names does not.
	for _, src := range []string{"{{.RecoveryCode}}", "{{.RecoveryURL}}"} {
		if _, err := mailtmpl.New(mailtmpl.Config{Text: src, Subject: "s " + src}); err != nil {
			t.Errorf("New(%s): %v", src, err)
		}
	}
	if _, err := mailtmpl.New(mailtmpl.Config{Text: "{{.RecoveryCod}}"}); err == nil {
		t.Error("New accepted {{.RecoveryCod}}")
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

// failer is a trait value whose methods fail quoting the value, as a method
// of some data type could.
type failer string

func (f failer) Greeting() (string, error) { return "", fmt.Errorf("no greeting for %s", string(f)) }
func (f failer) Shout() string             { panic("cannot shout " + string(f)) }

// secretData is SampleData with values found nowhere in the templates or
// the error texts, so that an error quoting any of them shows.
func secretData() mailtmpl.Data {
	d := mailtmpl.SampleData()
	d.Password = "Tq8#Lw2@PwSecret"
	d.Recipient = "rcpt.secret@example.org"
	d.LoginURL = "https://login.secret.example.org/welcome"
	d.Identity.ID = "id-secret-4711"
	d.RecoveryCode = "730519"
	d.RecoveryURL = "https://kratos.secret.example.org/self-service/recovery?flow=flow-secret&token=TokSecret"
	d.Identity.Traits = map[string]any{
		"email": "trait.email.secret@example.org",
		"name":  map[string]any{"first": "FirstSecret", "last": "LastSecret"},
	}
	return d
}

// dataStrings returns every string in d, traits included.
func dataStrings(d mailtmpl.Data) []string {
	out := []string{d.Password, d.Recipient, d.LoginURL, d.Identity.ID, d.RecoveryCode, d.RecoveryURL}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case failer:
			out = append(out, string(v))
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(d.Identity.Traits)
	return out
}

// assertQuotesNoData fails if msg holds a string of d, or any 8 bytes in a
// row of one, which catches a value the template derived (sliced, say).
func assertQuotesNoData(t *testing.T, msg string, d mailtmpl.Data) {
	t.Helper()
	for _, v := range dataStrings(d) {
		if v == "" {
			continue
		}
		if strings.Contains(msg, v) {
			t.Errorf("error quotes the data value %q:\n%s", v, msg)
			continue
		}
		for i := 0; i+8 <= len(v); i++ {
			if strings.Contains(msg, v[i:i+8]) {
				t.Errorf("error quotes %q of the data value %q:\n%s", v[i:i+8], v, msg)
				break
			}
		}
	}
}

// TestRenderErrorsQuoteNoData renders templates that pass New's check but
// fail on a real identity's data, in ways whose text/template message quotes
// a value: the error must name the template and the problem, and hold no
// value of the data.
func TestRenderErrorsQuoteNoData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    mailtmpl.Config
		files  map[string]string // a template.dir, if set
		traits map[string]any    // set on secretData's traits
		data   func(*mailtmpl.Data)
		want   []string // in the error
	}{
		{
			name:   "subject with the password and a trait holding CRLF",
			cfg:    mailtmpl.Config{Subject: "Password {{.Password}} for {{.Identity.Traits.name.first}}"},
			traits: map[string]any{"name": map[string]any{"first": "Eve\r\nBcc: injected.secret@example.org"}},
			want:   []string{"template.subject", "line break", "nothing was sent"},
		},
		{
			name:   "subject empty for this identity",
			cfg:    mailtmpl.Config{Subject: "{{.Identity.Traits.name.first}}"},
			traits: map[string]any{"name": map[string]any{"first": " \t "}},
			want:   []string{"template.subject", "empty"},
		},
		{
			name:   "subject with a missing trait",
			cfg:    mailtmpl.Config{Subject: "Password for {{.Identity.Traits.name.first}}"},
			traits: map[string]any{"name": map[string]any{"last": "OnlyLastSecret"}},
			want:   []string{"template.subject", "line 1", "{{.Identity.Traits.name.first}}", "lacks", "index"},
		},
		{
			name:   "text calls a method that fails quoting the value",
			cfg:    mailtmpl.Config{Text: `{{with index .Identity.Traits "nick"}}{{.Greeting}}{{end}}`},
			traits: map[string]any{"nick": failer("nick-failing-secret")},
			want:   []string{"template.text", "line 1", "{{.Greeting}}", "a function or method failed"},
		},
		{
			name:   "text calls a method that panics with the value",
			cfg:    mailtmpl.Config{Text: `{{with index .Identity.Traits "nick"}}{{.Shout}}{{end}}`},
			traits: map[string]any{"nick": failer("nick-panicking-secret")},
			want:   []string{"template.text", "{{.Shout}}", "a function or method failed"},
		},
		{
			name:   "text ranges over a string trait",
			cfg:    mailtmpl.Config{Text: "Hello\n{{range .Identity.Traits.name}}{{.}}{{end}}"},
			traits: map[string]any{"name": "plain-name-secret"},
			want:   []string{"template.text", "line 2", "{{range .Identity.Traits.name}}", "range over a value"},
		},
		{
			name:   "text ranges over a slice of a trait, found in no data string",
			cfg:    mailtmpl.Config{Text: `{{with index .Identity.Traits "code"}}{{range slice . 3}}{{.}}{{end}}{{end}}`},
			traits: map[string]any{"code": "abcSlicedSecret"},
			want:   []string{"template.text", "{{range slice . 3}}", "range over a value"},
		},
		{
			name:   "text compares values that eq quotes",
			cfg:    mailtmpl.Config{Text: "{{if eq .Identity.Traits.email .Identity.Traits.email}}same{{end}}"},
			traits: map[string]any{"email": []any{"listed.email.secret@example.org"}},
			want:   []string{"template.text", "calling eq", "cannot be compared"},
		},
		{
			name:   "text indexes out of range",
			cfg:    mailtmpl.Config{Text: `{{with index .Identity.Traits "tags"}}{{index . 2}}{{end}}`},
			traits: map[string]any{"tags": []any{"tag-one-secret"}},
			want:   []string{"template.text", "{{index . 2}}", "calling index", "out of range"},
		},
		{
			name:   "text indexes a string trait",
			cfg:    mailtmpl.Config{Text: `{{index .Identity.Traits.name "first"}}`},
			traits: map[string]any{"name": "indexed-name-secret"},
			want:   []string{"template.text", "calling index", "not an integer"},
		},
		{
			name:   "text reads a field of a string trait",
			cfg:    mailtmpl.Config{Text: "{{.Identity.Traits.name.first}}"},
			traits: map[string]any{"name": "fielded-name-secret"},
			want:   []string{"template.text", "no such field"},
		},
		{
			name:   "text passes a string trait to formatTime",
			cfg:    mailtmpl.Config{Text: `{{with index .Identity.Traits "since"}}{{formatTime .}}{{end}}`},
			traits: map[string]any{"since": "2026-01-01 since-secret"},
			want:   []string{"template.text", "{{formatTime .}}", "wrong type"},
		},
		{
			name:   "text action over two lines",
			cfg:    mailtmpl.Config{Text: "{{range\n  .Identity.Traits.name}}{{.}}{{end}}"},
			traits: map[string]any{"name": "multiline-secret"},
			want:   []string{"template.text", "line 2", "{{range .Identity.Traits.name}}"},
		},
		{
			name:   "html ranges over a string trait",
			cfg:    mailtmpl.Config{HTML: "<ul>{{range .Identity.Traits.name}}<li>{{.}}</li>{{end}}</ul>"},
			traits: map[string]any{"name": "<b>html-name-secret</b>"},
			want:   []string{"template.html", "{{range .Identity.Traits.name}}", "range over a value"},
		},
		{
			name:   "html compares values that eq quotes",
			cfg:    mailtmpl.Config{HTML: "<p>{{if eq .Identity.Traits.email .Identity.Traits.email}}same{{end}}</p>"},
			traits: map[string]any{"email": []any{"html.email.secret@example.org"}},
			want:   []string{"template.html", "calling eq", "cannot be compared"},
		},
		{
			name:   "html calls a method that fails quoting the value",
			cfg:    mailtmpl.Config{HTML: `<p>{{with index .Identity.Traits "nick"}}{{.Greeting}}{{end}}</p>`},
			traits: map[string]any{"nick": failer("html-nick-secret")},
			want:   []string{"template.html", "{{.Greeting}}", "a function or method failed"},
		},
		{
			name:   "html with a missing trait",
			cfg:    mailtmpl.Config{HTML: "<p>\n{{.Identity.Traits.name.first}}</p>"},
			traits: map[string]any{"name": map[string]any{}},
			want:   []string{"template.html", "line 2", "lacks"},
		},
		{
			name: "text ranges over Kratos's recovery link when it is not the sample's",
			cfg:  mailtmpl.Config{Text: `{{if ne (slice .RecoveryURL 0 5) "https"}}{{range .RecoveryURL}}{{.}}{{end}}{{end}}`},
			data: func(d *mailtmpl.Data) {
				d.RecoveryURL = "http://kratos.secret.example.org/self-service/recovery?token=PlainTokSecret"
			},
			want: []string{"template.text", "line 1", "{{range .RecoveryURL}}", "range over a value"},
		},
		{
			name: "html ranges over Kratos's recovery code when it is not the sample's",
			cfg:  mailtmpl.Config{HTML: `<p>{{if ne .RecoveryCode "482913"}}{{range .RecoveryCode}}{{.}}{{end}}{{end}}</p>`},
			want: []string{"template.html", "{{range .RecoveryCode}}", "range over a value"},
		},
		{
			name: "subject slices the recovery code, which an admin reset lacks",
			cfg:  mailtmpl.Config{Subject: "Code {{slice .RecoveryCode 0 3}}-{{slice .RecoveryCode 3}} for {{.Recipient}}"},
			data: func(d *mailtmpl.Data) { d.RecoveryCode = "" },
			want: []string{"template.subject", "{{slice .RecoveryCode 0 3}}", "calling slice", "out of range"},
		},
		{
			name:   "file of template.dir",
			files:  map[string]string{"body.txt": "Hello,\n\nyour name: {{index .Identity.Traits.name \"first\"}}\n"},
			traits: map[string]any{"name": "dir-name-secret"},
			want:   []string{"template.dir: body.txt", "line 3", "not an integer"},
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
			d := secretData()
			for k, v := range tt.traits {
				d.Identity.Traits[k] = v
			}
			if tt.data != nil {
				tt.data(&d)
			}
			_, err := s.Render(d)
			if err == nil {
				t.Fatal("Render succeeded, want an error")
			}
			msg := err.Error()
			for _, want := range tt.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not contain %q:\n%s", want, msg)
				}
			}
			assertQuotesNoData(t, msg, d)
		})
	}
}
