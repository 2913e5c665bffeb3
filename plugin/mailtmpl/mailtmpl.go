// Package mailtmpl renders the gateway's mails, the one that hands a user
// their temporary password and the notices that carry no secret (the
// password was changed; a pending reset was voided), each as a subject, a
// plain-text body and an HTML body, from a template folder with per-locale
// variants, inline templates in the config or the embedded defaults.
//
// Templates see a Data value (the password mail) or a NoticeData value (a
// notice, which has no field for a secret) and one function, formatTime,
// which writes a time in UTC as "2006-01-02 15:04 UTC". The subject and
// text body use text/template; the HTML body uses html/template, so the
// password, the traits and every other value are escaped for the place
// they appear in.
package mailtmpl

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"maps"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"
)

// keyDir is the config key of the template folder, used in errors so that
// an operator can find the template at fault in their config file; the
// keys of the inline templates are built by kind.key.
const keyDir = "template.dir"

// defaultLocaleTrait is the trait read when Config.LocaleTrait is empty.
const defaultLocaleTrait = "locale"

// timeLayout is what formatTime writes: unambiguous and readable anywhere,
// since the mail cannot know the reader's time zone.
const timeLayout = "2006-01-02 15:04 UTC"

// defaults is read-only: embed.FS has no way to change its files.
//
//go:embed defaults/subject.txt defaults/body.txt defaults/body.html
//go:embed defaults/password_changed.subject.txt defaults/password_changed.body.txt defaults/password_changed.body.html
//go:embed defaults/reset_void.subject.txt defaults/reset_void.body.txt defaults/reset_void.body.html
var defaults embed.FS

// Notice names a notice: a mail that tells users about their account and
// carries no secret. The names are those of sdk.NoticeMessage.Kind.
type Notice string

const (
	// NoticePasswordChanged: the user's password was changed.
	NoticePasswordChanged Notice = "password_changed"
	// NoticeResetVoid: someone asked to recover the account, but the user
	// signed in with their current password, so nothing changed.
	NoticeResetVoid Notice = "reset_void"
)

// Notices lists every notice, in a fixed order.
func Notices() []Notice { return []Notice{NoticePasswordChanged, NoticeResetVoid} }

// ErrUnknownNotice means RenderNotice was asked for a notice it does not
// know.
var ErrUnknownNotice = errors.New("unknown notice kind: password_changed or reset_void")

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

// NoticeData is what the templates of a notice see. It has no field for a
// secret: a notice holds no password, no code and no link that logs in.
type NoticeData struct {
	At          time.Time // when it happened
	Recipient   string    // the address the mail goes to
	Identity    Identity
	LoginURL    string // where the user signs in, or starts a recovery if it was not them
	SettingsURL string // where the user changes their password
}

// Inline holds the inline templates of one notice in the config.
type Inline struct {
	Subject string `koanf:"subject"`
	Text    string `koanf:"text"`
	HTML    string `koanf:"html"`
}

// Config says where the templates come from. For each template of each
// mail the most specific source wins: <Dir>/<locale>/<file>, then
// <Dir>/<file>, then the inline field, then the embedded default.
//
// Dir holds subject.txt, body.txt and body.html for the password mail and,
// for each notice, the same names behind the notice's name
// (password_changed.subject.txt, reset_void.body.html, ...), each
// optional, and locale folders such as de or pt-br holding any of the same
// files. Render and RenderNotice pick the folder from the identity's
// LocaleTrait trait, falling back from pt-br to pt to the templates outside
// any locale folder; a mail takes a locale folder only if the folder holds
// one of its files. A relative Dir is relative to the working directory.
// New reads the folder once; later changes to it need a new Set.
//
// Templates run with missingkey=error, and New tries each one on SampleData
// or SampleNoticeData (for a locale folder, with the locale trait set to
// its locale), so a typo
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
	// PasswordChanged and ResetVoid are the notices' inline templates,
	// template.password_changed.{subject,text,html} and
	// template.reset_void.{subject,text,html}.
	PasswordChanged Inline `koanf:"password_changed"`
	ResetVoid       Inline `koanf:"reset_void"`
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
	trait string // the identity trait that names the locale
	mails [numKinds]mailSet
}

// mailSet is the templates of one kind of mail.
type mailSet struct {
	base    *variant            // the templates outside any locale folder
	locales map[string]*variant // by normalised locale
}

// kind is one of the mails: the password mail or a notice.
type kind int

const (
	passwordKind kind = iota
	passwordChangedKind
	resetVoidKind
	numKinds
)

// notice is the kind's notice name, "" for the password mail.
func (k kind) notice() Notice {
	return [numKinds]Notice{"", NoticePasswordChanged, NoticeResetVoid}[k]
}

// kindOf returns the kind of the notice n.
func kindOf(n Notice) (kind, bool) {
	for k := passwordChangedKind; k < numKinds; k++ {
		if k.notice() == n {
			return k, true
		}
	}
	return 0, false
}

// prefix starts the kind's file names, config keys and template names.
func (k kind) prefix() string {
	if k == passwordKind {
		return ""
	}
	return string(k.notice()) + "."
}

// inline is the kind's inline templates in cfg, by part.
func (k kind) inline(cfg Config) [numParts]string {
	in := [numKinds]Inline{{cfg.Subject, cfg.Text, cfg.HTML}, cfg.PasswordChanged, cfg.ResetVoid}[k]
	return [numParts]string{in.Subject, in.Text, in.HTML}
}

// sample is the data New checks the kind's templates with, the locale
// trait set to locale unless it is empty.
func (k kind) sample(trait, locale string) any {
	if k == passwordKind {
		d := SampleData()
		if locale != "" {
			d.Identity.Traits[trait] = locale
		}
		return d
	}
	d := SampleNoticeData()
	if locale != "" {
		d.Identity.Traits[trait] = locale
	}
	return d
}

// what names the kind's mail in errors.
func (k kind) what() string {
	if k == passwordKind {
		return "password mail"
	}
	return string(k.notice()) + " notice"
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
func (p part) file(k kind) string {
	return k.prefix() + [numParts]string{"subject.txt", "body.txt", "body.html"}[p]
}

// key is the config key of the part's inline template.
func (p part) key(k kind) string {
	return "template." + k.prefix() + [numParts]string{"subject", "text", "html"}[p]
}

// name is the name of the part's inline or default template, which
// text/template and html/template put in their errors.
func (p part) name(k kind) string {
	return k.prefix() + [numParts]string{"subject", "text", "html"}[p]
}

// partOf returns the kind and part that file holds, if it is a template
// file name.
func partOf(file string) (kind, part, bool) {
	for k := range numKinds {
		for p := range numParts {
			if p.file(k) == file {
				return k, p, true
			}
		}
	}
	return 0, 0, false
}

// fileNames lists every template file name, for errors.
func fileNames() string {
	var names []string
	for k := range numKinds {
		for p := range numParts {
			names = append(names, p.file(k))
		}
	}
	return strings.Join(names, ", ")
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

// folder holds the sources found in one folder, by kind and part; nil for
// a file the folder lacks.
type folder [numKinds]files

// files holds the sources of one kind of mail, by part.
type files [numParts]*source

// has reports whether f holds any file.
func (f files) has() bool {
	for _, src := range f {
		if src != nil {
			return true
		}
	}
	return false
}

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

// variant is the three templates of one kind of mail for one locale.
type variant struct {
	locale string // "" outside any locale folder
	parts  [numParts]tmpl
}

func funcs() map[string]any {
	return map[string]any{"formatTime": formatTime}
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// New reads and parses the templates cfg names and renders every variant
// of every mail once with SampleData or SampleNoticeData, to reject
// templates that parse but cannot run.
func New(cfg Config) (*Set, error) {
	var root folder
	var localeFolders map[string]folder
	if cfg.Dir != "" {
		var err error
		if root, localeFolders, err = readDir(cfg.Dir); err != nil {
			return nil, err
		}
	}
	s := &Set{trait: cmp.Or(cfg.LocaleTrait, defaultLocaleTrait)}
	for k := range numKinds {
		ms, err := newMailSet(k, cfg, root[k], localeFolders, s.trait)
		if err != nil {
			return nil, err
		}
		s.mails[k] = ms
	}
	return s, nil
}

// newMailSet compiles and checks the templates of kind k: those of the
// root folder and of each locale folder that holds a file of k.
func newMailSet(k kind, cfg Config, root files, localeFolders map[string]folder, trait string) (mailSet, error) {
	for p := range numParts {
		if root[p] != nil {
			continue
		}
		src, err := fallback(k, p, cfg)
		if err != nil {
			return mailSet{}, err
		}
		root[p] = &src
	}
	base, err := compile(k, "", root, nil)
	if err != nil {
		return mailSet{}, err
	}
	ms := mailSet{base: base, locales: map[string]*variant{}}
	for locale, f := range localeFolders {
		if !f[k].has() {
			continue
		}
		if ms.locales[locale], err = compile(k, locale, f[k], base); err != nil {
			return mailSet{}, err
		}
	}

	// The names of the checks keep to what they said before notices came:
	// "check templates with sample data" is the password mail's.
	check := "check templates"
	if k != passwordKind {
		check = "check " + k.what() + " templates"
	}
	if _, err := base.render(k.sample(trait, ""), true); err != nil {
		return mailSet{}, fmt.Errorf("%s with sample data: %w", check, err)
	}
	for _, locale := range slices.Sorted(maps.Keys(ms.locales)) {
		// Render picks this variant only for an identity whose trait names
		// its locale, so the sample gets that trait too.
		if _, err := ms.locales[locale].render(k.sample(trait, locale), true); err != nil {
			return mailSet{}, fmt.Errorf("%s with sample data for locale %s: %w", check, locale, err)
		}
	}
	return ms, nil
}

// fallback returns the inline template of part p of kind k in cfg, or else
// its default.
func fallback(k kind, p part, cfg Config) (source, error) {
	src := source{origin: origin{key: p.key(k)}, text: k.inline(cfg)[p]}
	if src.text != "" {
		return src, nil
	}
	b, err := defaults.ReadFile("defaults/" + p.file(k))
	if err != nil {
		return source{}, fmt.Errorf("read embedded default %s: %w", p.file(k), err)
	}
	src.text = string(b)
	return src, nil
}

// compile parses the sources of kind k in f and takes the parts f lacks
// from parent.
func compile(k kind, locale string, f files, parent *variant) (*variant, error) {
	v := &variant{locale: locale}
	for p, src := range f {
		if src == nil {
			v.parts[p] = parent.parts[p]
			continue
		}
		name := cmp.Or(src.file, part(p).name(k))
		exec, err := parse(part(p), name, src.text)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", src.key, err)
		}
		v.parts[p] = tmpl{origin: src.origin, exec: exec, name: name, text: src.text}
	}
	return v, nil
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
	return s.pick(passwordKind, d.Identity.Traits).render(d, false)
}

// RenderNotice renders the notice n for d, like Render: in the locale the
// identity's locale trait names, if a folder for it holds a file of n, and
// with errors that quote no value of d. A notice it does not know is
// ErrUnknownNotice.
func (s *Set) RenderNotice(n Notice, d NoticeData) (Mail, error) {
	k, ok := kindOf(n)
	if !ok {
		return Mail{}, ErrUnknownNotice
	}
	return s.pick(k, d.Identity.Traits).render(d, false)
}

// Locales returns the locales that have a folder, sorted.
func (s *Set) Locales() []string {
	var out []string
	for _, ms := range s.mails {
		for locale := range ms.locales {
			if !slices.Contains(out, locale) {
				out = append(out, locale)
			}
		}
	}
	slices.Sort(out)
	return out
}

// pick returns the variant of kind k for the locale trait in traits. Like
// a BCP 47 lookup (RFC 4647), it drops subtags from the end until a folder
// matches, so pt-br falls back to pt; a trait that is missing or not a
// string, or a locale without a folder holding a file of k, gets the base
// variant.
func (s *Set) pick(k kind, traits map[string]any) *variant {
	ms := s.mails[k]
	locale, _ := traits[s.trait].(string)
	locale = normalizeLocale(strings.TrimSpace(locale))
	for locale != "" {
		if v, ok := ms.locales[locale]; ok {
			return v
		}
		i := strings.LastIndexByte(locale, '-')
		if i < 0 {
			break
		}
		locale = locale[:i]
	}
	return ms.base
}

// render renders the mail for d, a Data or a NoticeData. With sample set,
// d is SampleData or SampleNoticeData (New's check): its values are fixed
// and public, so errors carry the full message of text/template and
// html/template, whose types and keys help most while an operator writes a
// template. Otherwise d is a real identity's, and errors must not quote any
// of its values: see describeFailure.
func (v *variant) render(d any, sample bool) (Mail, error) {
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

func execute(t executor, d any) (string, error) {
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

// SampleNoticeData returns realistic NoticeData for checking the notices'
// templates and previewing them, with the identity of SampleData. Each call
// returns a fresh value, so callers may change it.
func SampleNoticeData() NoticeData {
	d := SampleData()
	return NoticeData{
		At:          time.Date(2026, time.November, 26, 21, 14, 0, 0, time.UTC),
		Recipient:   d.Recipient,
		Identity:    d.Identity,
		LoginURL:    d.LoginURL,
		SettingsURL: "https://auth.example.com/settings",
	}
}
