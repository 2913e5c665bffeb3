// Package mailtmpl renders the mail that hands a user their temporary
// password: a subject, a plain-text body and an HTML body, from inline
// templates in the config or from the embedded defaults.
//
// Templates see a Data value and one function, formatTime, which writes a
// time in UTC as "2006-01-02 15:04 UTC". The subject and text body use
// text/template; the HTML body uses html/template, so the password, the
// traits and every other value are escaped for the place they appear in.
package mailtmpl

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	"strings"
	texttemplate "text/template"
	"time"
)

// Config keys, used in errors so that an operator can find the template at
// fault in their config file.
const (
	keySubject = "template.subject"
	keyText    = "template.text"
	keyHTML    = "template.html"
)

// timeLayout is what formatTime writes: unambiguous and readable anywhere,
// since the mail cannot know the reader's time zone.
const timeLayout = "2006-01-02 15:04 UTC"

// defaults is read-only: embed.FS has no way to change its files.
//
//go:embed defaults/subject.txt defaults/body.txt defaults/body.html
var defaults embed.FS

// Identity is the Kratos identity the mail goes to.
type Identity struct {
	ID     string
	Traits map[string]any
}

// Data is what the templates see.
type Data struct {
	Password  string    // the temporary password
	ExpiresAt time.Time // when the temporary password stops working
	LoginURL  string    // where to log in with it
	Recipient string    // the address the mail goes to
	Identity  Identity
}

// Config holds inline templates; an empty field means the embedded default.
//
// Templates run with missingkey=error, and New tries each one on SampleData,
// so a typo such as {{.Identity.Traits.emial}} fails at startup rather than
// on the first mail. A trait the sample lacks (it has email, name.first and
// name.last) must therefore be read with index, which yields nothing for a
// missing key: {{with index .Identity.Traits "nickname"}}{{.}}{{end}}.
type Config struct {
	Subject string // template.subject
	Text    string // template.text
	HTML    string // template.html
}

// Mail is a rendered mail.
type Mail struct {
	Subject string
	Text    string
	HTML    string
}

// Set is a parsed and checked set of templates. It is never changed after
// New, and text/template and html/template allow concurrent execution, so a
// Set is safe for concurrent use.
type Set struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

func funcs() map[string]any {
	return map[string]any{"formatTime": formatTime}
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// New parses the templates in cfg, falling back to the embedded defaults for
// empty fields, and renders them once with SampleData to reject templates
// that parse but cannot run.
func New(cfg Config) (*Set, error) {
	subjectSrc, err := source(cfg.Subject, "defaults/subject.txt")
	if err != nil {
		return nil, err
	}
	textSrc, err := source(cfg.Text, "defaults/body.txt")
	if err != nil {
		return nil, err
	}
	htmlSrc, err := source(cfg.HTML, "defaults/body.html")
	if err != nil {
		return nil, err
	}

	var s Set
	if s.subject, err = parseText("subject", subjectSrc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", keySubject, err)
	}
	if s.text, err = parseText("text", textSrc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", keyText, err)
	}
	s.html, err = htmltemplate.New("html").Option("missingkey=error").Funcs(funcs()).Parse(htmlSrc)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", keyHTML, err)
	}

	if _, err := s.Render(SampleData()); err != nil {
		return nil, fmt.Errorf("check templates with sample data: %w", err)
	}
	return &s, nil
}

func source(inline, file string) (string, error) {
	if inline != "" {
		return inline, nil
	}
	b, err := defaults.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read embedded default %s: %w", file, err)
	}
	return string(b), nil
}

func parseText(name, src string) (*texttemplate.Template, error) {
	return texttemplate.New(name).Option("missingkey=error").Funcs(funcs()).Parse(src)
}

// Render renders the mail for d. Errors name the config key of the template
// at fault.
func (s *Set) Render(d Data) (Mail, error) {
	var m Mail
	subject, err := execute(s.subject, d)
	if err != nil {
		return Mail{}, fmt.Errorf("render %s: %w", keySubject, err)
	}
	// Subject files usually end in a newline, which is not part of the
	// subject; a line break inside it, though, would let a trait value
	// inject mail headers.
	m.Subject = strings.TrimSpace(subject)
	if strings.ContainsAny(m.Subject, "\r\n") {
		return Mail{}, fmt.Errorf("render %s: subject contains a line break: %q", keySubject, m.Subject)
	}
	if m.Subject == "" {
		return Mail{}, fmt.Errorf("render %s: subject is empty", keySubject)
	}
	if m.Text, err = execute(s.text, d); err != nil {
		return Mail{}, fmt.Errorf("render %s: %w", keyText, err)
	}
	if m.HTML, err = execute(s.html, d); err != nil {
		return Mail{}, fmt.Errorf("render %s: %w", keyHTML, err)
	}
	return m, nil
}

// executor is what text/template and html/template templates have in common.
type executor interface {
	Execute(w io.Writer, data any) error
}

func execute(t executor, d Data) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// SampleData returns realistic Data for checking templates and previewing
// them. Each call returns a fresh value, so callers may change it.
func SampleData() Data {
	return Data{
		Password:  "Hk7#Zr2@Wm9_eT4q",
		ExpiresAt: time.Date(2026, time.November, 26, 22, 14, 0, 0, time.UTC),
		LoginURL:  "https://auth.example.com/login",
		Recipient: "jane.doe@example.com",
		Identity: Identity{
			ID: "9f425a8d-7efc-4768-8f23-7647a74fdf13",
			Traits: map[string]any{
				"email": "jane.doe@example.com",
				"name": map[string]any{
					"first": "Jane",
					"last":  "Doe",
				},
			},
		},
	}
}
