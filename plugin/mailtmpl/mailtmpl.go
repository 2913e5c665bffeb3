// Package mailtmpl renders the mail that hands a user their temporary
// password: a subject, a plain-text body and an HTML body, from a template
// folder with per-locale variants, inline templates in the config or the
// embedded defaults.
//
// Templates see a Data value and one function, formatTime, which writes a
// time in UTC as "2006-01-02 15:04 UTC". The subject and text body use
// text/template; the HTML body uses html/template, so the password, the
// traits and every other value are escaped for the place they appear in.
package mailtmpl

import (
	"bytes"
	"cmp"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	"maps"
	"slices"
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
	keyDir     = "template.dir"
)

// defaultLocaleTrait is the trait read when Config.LocaleTrait is empty.
const defaultLocaleTrait = "locale"

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
	// RecoveryCode and RecoveryURL are Kratos's own recovery code (code
	// method) and recovery link (link method) of the message that asked for
	// the reset, for a UI that waits for them; at most one is set, and both
	// are empty for admin resets (read them with {{with .RecoveryCode}}).
	// Secrets, like Password.
	RecoveryCode string
	RecoveryURL  string
}

// Config says where the templates come from. For each of the three
// templates the most specific source wins: <Dir>/<locale>/<file>, then
// <Dir>/<file>, then the inline field, then the embedded default.
//
// Dir holds subject.txt, body.txt and body.html, each optional, and locale
// folders such as de or pt-br holding any of the same three files. Render
// picks the folder from the identity's LocaleTrait trait, falling back from
// pt-br to pt to the templates outside any locale folder. A relative Dir is
// relative to the working directory. New reads the folder once; later
// changes to it need a new Set.
//
// Templates run with missingkey=error, and New tries each one on SampleData
// (for a locale folder, with the locale trait set to its locale), so a typo
// such as {{.Identity.Traits.emial}} fails at startup rather than on the
// first mail. A trait the sample lacks (it has email, name.first and
// name.last) must therefore be read with index, which yields nothing for a
// missing key: {{with index .Identity.Traits "nickname"}}{{.}}{{end}}.
type Config struct {
	Subject     string `koanf:"subject"`      // template.subject
	Text        string `koanf:"text"`         // template.text
	HTML        string `koanf:"html"`         // template.html
	Dir         string `koanf:"dir"`          // template.dir; empty means no folder
	LocaleTrait string `koanf:"locale_trait"` // template.locale_trait; empty means "locale"
}

// Mail is a rendered mail.
type Mail struct {
	Subject string
	Text    string
	HTML    string
	Locale  string // the locale folder the mail came from, "" for none
}

// Set is a parsed and checked set of templates. It is never changed after
// New, and text/template and html/template allow concurrent execution, so a
// Set is safe for concurrent use.
type Set struct {
	trait   string              // the identity trait that names the locale
	base    *variant            // the templates outside any locale folder
	locales map[string]*variant // by normalised locale
}

// part is one of the three templates of a mail.
type part int

const (
	subjectPart part = iota
	textPart
	htmlPart
	numParts
)

// file is the part's file name in the template folder and in defaults/.
func (p part) file() string {
	return [numParts]string{"subject.txt", "body.txt", "body.html"}[p]
}

// key is the config key of the part's inline template.
func (p part) key() string {
	return [numParts]string{keySubject, keyText, keyHTML}[p]
}

// name is the name of the part's inline or default template, which
// text/template and html/template put in their errors.
func (p part) name() string {
	return [numParts]string{"subject", "text", "html"}[p]
}

// inline is the part's inline template in cfg.
func (p part) inline(cfg Config) string {
	return [numParts]string{cfg.Subject, cfg.Text, cfg.HTML}[p]
}

// partOf returns the part that file holds, if it is a template file name.
func partOf(file string) (part, bool) {
	for p := range numParts {
		if p.file() == file {
			return p, true
		}
	}
	return 0, false
}

// origin tells where a template came from, for errors.
type origin struct {
	key  string // the config key
	file string // the path inside template.dir; "" outside it
}

func (o origin) String() string {
	if o.file == "" {
		return o.key
	}
	return o.key + ": " + o.file
}

// source is the text of a template before parsing.
type source struct {
	origin
	text string
}

// folder holds the sources found in one folder, by part; nil for a file the
// folder lacks.
type folder [numParts]*source

// executor is what text/template and html/template templates have in common.
type executor interface {
	Execute(w io.Writer, data any) error
}

// tmpl is a parsed template.
type tmpl struct {
	origin
	exec executor
	name string // the name text/template puts in its errors
	text string // the source, to quote the action at fault in errors
}

// variant is the three templates for one locale.
type variant struct {
	locale string // "" outside any locale folder
	parts  [numParts]tmpl
}

func funcs() map[string]any {
	return map[string]any{"formatTime": formatTime}
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// New reads and parses the templates cfg names and renders every variant
// once with SampleData, to reject templates that parse but cannot run.
func New(cfg Config) (*Set, error) {
	var root folder
	var localeFolders map[string]folder
	if cfg.Dir != "" {
		var err error
		if root, localeFolders, err = readDir(cfg.Dir); err != nil {
			return nil, err
		}
	}
	for p := range numParts {
		if root[p] != nil {
			continue
		}
		src, err := fallback(p, cfg)
		if err != nil {
			return nil, err
		}
		root[p] = &src
	}

	base, err := compile("", root, nil)
	if err != nil {
		return nil, err
	}
	s := &Set{
		trait:   cmp.Or(cfg.LocaleTrait, defaultLocaleTrait),
		base:    base,
		locales: make(map[string]*variant, len(localeFolders)),
	}
	for locale, f := range localeFolders {
		if s.locales[locale], err = compile(locale, f, base); err != nil {
			return nil, err
		}
	}

	if _, err := base.render(SampleData(), true); err != nil {
		return nil, fmt.Errorf("check templates with sample data: %w", err)
	}
	for _, locale := range s.Locales() {
		d := SampleData()
		// Render picks this variant only for an identity whose trait names
		// its locale, so the sample gets that trait too.
		d.Identity.Traits[s.trait] = locale
		if _, err := s.locales[locale].render(d, true); err != nil {
			return nil, fmt.Errorf("check templates with sample data for locale %s: %w", locale, err)
		}
	}
	return s, nil
}

// fallback returns the inline template of p in cfg, or else its default.
func fallback(p part, cfg Config) (source, error) {
	src := source{origin: origin{key: p.key()}, text: p.inline(cfg)}
	if src.text != "" {
		return src, nil
	}
	b, err := defaults.ReadFile("defaults/" + p.file())
	if err != nil {
		return source{}, fmt.Errorf("read embedded default %s: %w", p.file(), err)
	}
	src.text = string(b)
	return src, nil
}

// compile parses the sources in f and takes the parts f lacks from parent.
func compile(locale string, f folder, parent *variant) (*variant, error) {
	v := &variant{locale: locale}
	for p, src := range f {
		if src == nil {
			v.parts[p] = parent.parts[p]
			continue
		}
		name := templateName(part(p), *src)
		exec, err := parse(part(p), name, src.text)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", src.key, err)
		}
		v.parts[p] = tmpl{origin: src.origin, exec: exec, name: name, text: src.text}
	}
	return v, nil
}

// templateName is the name of the template for p from src. A template from
// the folder is named by its path there, which text/template and
// html/template put in their errors along with the line.
func templateName(p part, src source) string {
	return cmp.Or(src.file, p.name())
}

// parse parses text as the template for p.
func parse(p part, name, text string) (executor, error) {
	if p == htmlPart {
		t, err := htmltemplate.New(name).Option("missingkey=error").Funcs(funcs()).Parse(text)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	t, err := texttemplate.New(name).Option("missingkey=error").Funcs(funcs()).Parse(text)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Render renders the mail for d in the locale its identity's locale trait
// names, if there is a folder for it.
//
// Errors name the config key of the template at fault (and its file in
// template.dir), the line and the action, and describe the problem in
// fixed words; they never quote a value of d, nor anything rendered from
// one, since callers log them and return them to clients: see
// describeFailure.
func (s *Set) Render(d Data) (Mail, error) {
	return s.pick(d.Identity.Traits).render(d, false)
}

// Locales returns the locales that have a folder, sorted.
func (s *Set) Locales() []string {
	return slices.Sorted(maps.Keys(s.locales))
}

// pick returns the variant for the locale trait in traits. Like a BCP 47
// lookup (RFC 4647), it drops subtags from the end until a folder matches,
// so pt-br falls back to pt; a trait that is missing or not a string, or a
// locale without a folder, gets the base variant.
func (s *Set) pick(traits map[string]any) *variant {
	locale, _ := traits[s.trait].(string)
	locale = normalizeLocale(strings.TrimSpace(locale))
	for locale != "" {
		if v, ok := s.locales[locale]; ok {
			return v
		}
		i := strings.LastIndexByte(locale, '-')
		if i < 0 {
			break
		}
		locale = locale[:i]
	}
	return s.base
}

// render renders the mail for d. With sample set, d is SampleData (New's
// check): its values are fixed and public, so errors carry the full message
// of text/template and html/template, whose types and keys help most while
// an operator writes a template. Otherwise d is a real identity's, and
// errors must not quote any of its values: see describeFailure.
func (v *variant) render(d Data, sample bool) (Mail, error) {
	fail := func(t tmpl, err error) error {
		if sample {
			return fmt.Errorf("render %s: %w", t.key, err)
		}
		return describeFailure(t, err)
	}
	m := Mail{Locale: v.locale}
	t := v.parts[subjectPart]
	subject, err := execute(t.exec, d)
	if err != nil {
		return Mail{}, fail(t, err)
	}
	// Subject files usually end in a newline, which is not part of the
	// subject; a line break inside it, though, would let a trait value
	// inject mail headers. The subject is not quoted: it may hold the
	// password.
	m.Subject = strings.TrimSpace(subject)
	if strings.ContainsAny(m.Subject, "\r\n") {
		if sample {
			return Mail{}, fmt.Errorf("render %s: the template puts a line break into the subject", t.origin)
		}
		return Mail{}, fmt.Errorf("render %s: the rendered subject contains a line break (most likely a trait value holds one); nothing was sent", t.origin)
	}
	if m.Subject == "" {
		if sample {
			return Mail{}, fmt.Errorf("render %s: the subject is empty", t.origin)
		}
		return Mail{}, fmt.Errorf("render %s: the rendered subject is empty (the values it shows are empty for this identity); nothing was sent", t.origin)
	}
	t = v.parts[textPart]
	if m.Text, err = execute(t.exec, d); err != nil {
		return Mail{}, fail(t, err)
	}
	t = v.parts[htmlPart]
	if m.HTML, err = execute(t.exec, d); err != nil {
		return Mail{}, fail(t, err)
	}
	return m, nil
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
		RecoveryCode: "482913",
		RecoveryURL:  "https://auth.example.com/self-service/recovery?flow=2c9c1d5e-8f3a-4b7e-9d21-6a0f4e8b7c13&token=q7Xk2Lm9Pw4Rt8Vz",
	}
}
