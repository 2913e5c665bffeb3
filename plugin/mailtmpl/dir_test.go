package mailtmpl_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/mailtmpl"
)

// maxFileSize mirrors the limit in dir.go.
const maxFileSize = 256 << 10

// writeDir creates a template folder from files, keyed by slash-separated
// path; a key ending in "/" makes an empty folder.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withTrait returns SampleData with the trait key set to v, or without it
// for a nil v.
func withTrait(key string, v any) mailtmpl.Data {
	d := mailtmpl.SampleData()
	if v != nil {
		d.Identity.Traits[key] = v
	}
	return d
}

// localeTree has root templates, a complete de variant and a pt variant
// with only a subject.
func localeTree() map[string]string {
	return map[string]string{
		"subject.txt":    "Password for {{.Identity.Traits.name.first}}\n",
		"body.txt":       "Use {{.Password}}.\n",
		"body.html":      "<p>Use {{.Password}}.</p>\n",
		"de/subject.txt": "Passwort für {{.Identity.Traits.name.first}}\n",
		"de/body.txt":    "Nutze {{.Password}}.\n",
		"de/body.html":   "<p>Nutze {{.Password}}.</p>\n",
		"pt/subject.txt": "Senha para {{.Identity.Traits.name.first}}\n",
	}
}

func TestLocaleVariants(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{Dir: writeDir(t, localeTree())})
	root := mailtmpl.Mail{
		Subject: "Password for Jane",
		Text:    "Use Hk7#Zr2@Wm9_eT4q.\n",
		HTML:    "<p>Use Hk7#Zr2@Wm9_eT4q.</p>\n",
	}
	de := mailtmpl.Mail{
		Subject: "Passwort für Jane",
		Text:    "Nutze Hk7#Zr2@Wm9_eT4q.\n",
		HTML:    "<p>Nutze Hk7#Zr2@Wm9_eT4q.</p>\n",
		Locale:  "de",
	}
	// pt has only a subject; the bodies fall back to the root files.
	pt := root
	pt.Subject = "Senha para Jane"
	pt.Locale = "pt"

	tests := []struct {
		name   string
		locale any // the locale trait; nil for none
		want   mailtmpl.Mail
	}{
		{"exact", "de", de},
		{"region falls back to language", "de-CH", de},
		{"underscore and upper case", "pt_BR", pt},
		{"upper case", "PT", pt},
		{"surrounding space", " de ", de},
		{"no folder", "fr", root},
		{"empty", "", root},
		{"not a string", 42, root},
		{"object", map[string]any{"code": "de"}, root},
		{"absent", nil, root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustRender(t, s, withTrait("locale", tt.locale))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render with locale %#v mismatch (-want +got):\n%s", tt.locale, diff)
			}
		})
	}
}

func TestLocaleLookup(t *testing.T) {
	t.Parallel()
	// Folder names are normalised like the trait: pt_BR is pt-br.
	s := mustNew(t, mailtmpl.Config{Dir: writeDir(t, map[string]string{
		"pt/subject.txt":      "pt",
		"pt_BR/subject.txt":   "pt-br",
		"zh-Hant/subject.txt": "zh-hant",
	})})
	if diff := cmp.Diff([]string{"pt", "pt-br", "zh-hant"}, s.Locales()); diff != "" {
		t.Errorf("Locales mismatch (-want +got):\n%s", diff)
	}
	tests := []struct {
		locale string
		want   string // Mail.Locale, which the subject repeats
	}{
		{"pt-BR", "pt-br"},
		{"pt_br", "pt-br"},
		{"pt-PT", "pt"},
		{"pt", "pt"},
		{"zh-Hant-TW", "zh-hant"},
		{"zh-Hans", ""},
		{"zh", ""},
		{"p", ""},
		{"-pt", ""},
	}
	for _, tt := range tests {
		t.Run(tt.locale, func(t *testing.T) {
			t.Parallel()
			m := mustRender(t, s, withTrait("locale", tt.locale))
			if m.Locale != tt.want {
				t.Errorf("Locale = %q, want %q", m.Locale, tt.want)
			}
			if tt.want != "" && m.Subject != tt.want {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.want)
			}
		})
	}
}

func TestLocaleTrait(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{Dir: writeDir(t, localeTree()), LocaleTrait: "language"})
	tests := []struct {
		name       string
		trait      string
		want       string
		wantLocale string
	}{
		{"configured trait", "language", "Passwort für Jane", "de"},
		{"default trait ignored", "locale", "Password for Jane", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := mustRender(t, s, withTrait(tt.trait, "de"))
			if m.Subject != tt.want || m.Locale != tt.wantLocale {
				t.Errorf("Render with %s=de: Subject %q, Locale %q; want %q, %q", tt.trait, m.Subject, m.Locale, tt.want, tt.wantLocale)
			}
		})
	}
}

// TestPrecedence checks, for each of the three templates, that
// <dir>/<locale>/<file> beats <dir>/<file> beats the inline field beats the
// embedded default.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	def := mustRender(t, mustNew(t, mailtmpl.Config{}), mailtmpl.SampleData())
	parts := []struct {
		file   string
		inline func(*mailtmpl.Config, string)
		get    func(mailtmpl.Mail) string
	}{
		{"subject.txt", func(c *mailtmpl.Config, s string) { c.Subject = s }, func(m mailtmpl.Mail) string { return m.Subject }},
		{"body.txt", func(c *mailtmpl.Config, s string) { c.Text = s }, func(m mailtmpl.Mail) string { return m.Text }},
		{"body.html", func(c *mailtmpl.Config, s string) { c.HTML = s }, func(m mailtmpl.Mail) string { return m.HTML }},
	}
	tests := []struct {
		name                 string
		inline, root, locale bool   // which sources exist
		want, wantDE         string // "default" for the embedded default
	}{
		{"default only", false, false, false, "default", "default"},
		{"inline beats default", true, false, false, "inline", "inline"},
		{"root file beats inline", true, true, false, "root", "root"},
		{"root file beats default", false, true, false, "root", "root"},
		{"locale file beats root file", true, true, true, "root", "de"},
		{"locale file beats inline", true, false, true, "inline", "de"},
		{"locale file beats default", false, false, true, "default", "de"},
	}
	for _, p := range parts {
		for _, tt := range tests {
			t.Run(p.file+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				var cfg mailtmpl.Config
				if tt.inline {
					p.inline(&cfg, "inline")
				}
				files := map[string]string{}
				if tt.root {
					files[p.file] = "root"
				}
				if tt.locale {
					files["de/"+p.file] = "de"
				}
				if len(files) > 0 {
					cfg.Dir = writeDir(t, files)
				}
				s := mustNew(t, cfg)
				for _, c := range []struct{ locale, want string }{{"", tt.want}, {"de", tt.wantDE}} {
					want := c.want
					if want == "default" {
						want = p.get(def)
					}
					if got := p.get(mustRender(t, s, withTrait("locale", c.locale))); got != want {
						t.Errorf("locale %q: %s = %q, want %q", c.locale, p.file, got, want)
					}
				}
			})
		}
	}
}

func TestDirHiddenEntriesIgnored(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{Dir: writeDir(t, map[string]string{
		".DS_Store":      "\x00\x01\xff binary",
		".git/":          "",
		"de/.gitkeep":    "",
		"de/subject.txt": "Hallo",
	})})
	if diff := cmp.Diff([]string{"de"}, s.Locales()); diff != "" {
		t.Errorf("Locales mismatch (-want +got):\n%s", diff)
	}
}

func TestLocalesWithoutDir(t *testing.T) {
	t.Parallel()
	if got := mustNew(t, mailtmpl.Config{Subject: "Hi"}).Locales(); len(got) != 0 {
		t.Errorf("Locales = %q, want none", got)
	}
}

// TestDirReadOnceAtNew changes the folder after New: Render must keep
// rendering what New read.
func TestDirReadOnceAtNew(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, localeTree())
	s := mustNew(t, mailtmpl.Config{Dir: dir})
	want := mustRender(t, s, withTrait("locale", "de"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, mustRender(t, s, withTrait("locale", "de"))); diff != "" {
		t.Errorf("Render changed after the folder was removed (-want +got):\n%s", diff)
	}
}

func TestDirFileSizeLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"at the limit", maxFileSize, false},
		{"one byte over", maxFileSize + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"de/body.txt": strings.Repeat("x", tt.size)})
			_, err := mailtmpl.New(mailtmpl.Config{Dir: dir})
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			for _, want := range []string{"template.dir", "de/body.txt", "larger than"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("New error = %v, want one containing %q", err, want)
				}
			}
		})
	}
}

func TestDirErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		sub   string   // appended to the folder to give template.dir
		want  []string // in the error, besides template.dir
	}{
		{
			name: "missing folder",
			sub:  "nope",
			want: []string{"open ", "nope: no such file or directory"},
		},
		{
			name:  "file, not a folder",
			files: map[string]string{"subject.txt": "Hi"},
			sub:   "subject.txt",
			want:  []string{"subject.txt: not a directory"},
		},
		{
			name:  "parse error in a locale file",
			files: map[string]string{"de/body.html": "<p>\nHallo\n{{.Password)}}</p>\n"},
			want:  []string{"parse", "de/body.html:3:"},
		},
		{
			name:  "parse error in a root file",
			files: map[string]string{"body.txt": "one\n{{nope .Password}}\n"},
			want:  []string{"body.txt:2:", "nope"},
		},
		{
			name: "execution error in one locale only",
			files: map[string]string{
				"body.txt":    "Use {{.Password}}.",
				"de/body.txt": "Nutze {{.Password}}.",
				"pt/body.txt": "Use\n{{.Nope}}.",
			},
			want: []string{"locale pt", "pt/body.txt:2:", "Nope"},
		},
		{
			name:  "HTML escaping error in one locale",
			files: map[string]string{"de/body.html": `<a href="{{.LoginURL}}`},
			want:  []string{"locale de", "de/body.html"},
		},
		{
			name:  "line break in a locale subject",
			files: map[string]string{"de/subject.txt": "Hallo\nBcc: evil@example.com\n"},
			want:  []string{"de/subject.txt", "line break"},
		},
		{
			name:  "blank root subject",
			files: map[string]string{"subject.txt": " \n"},
			want:  []string{"subject.txt", "empty"},
		},
		{
			name:  "not UTF-8",
			files: map[string]string{"de/body.txt": "Hallo\nGr\xfc\xdfe\n"},
			want:  []string{"de/body.txt:2:", "UTF-8"},
		},
		{
			name:  "NUL byte",
			files: map[string]string{"body.html": "<p>\x00</p>"},
			want:  []string{"body.html:1:", "NUL"},
		},
		{
			name:  "unknown file in root",
			files: map[string]string{"body.htm": "<p>Hi</p>"},
			want:  []string{"body.htm:", "neither a template file"},
		},
		{
			name:  "unknown file in a locale folder",
			files: map[string]string{"de/body.htm": "<p>Hallo</p>"},
			want:  []string{"de/body.htm:", "not a template file"},
		},
		{
			name:  "folder in a locale folder",
			files: map[string]string{"de/ch/subject.txt": "Grüezi"},
			want:  []string{"de/ch:", "not a template file"},
		},
		{
			name:  "template name is a folder",
			files: map[string]string{"body.txt/": ""},
			want:  []string{"body.txt: not a regular file"},
		},
		{
			name:  "locale name is a file",
			files: map[string]string{"de": "Hallo"},
			want:  []string{"de: not a directory"},
		},
		{
			name:  "locale folder name too long",
			files: map[string]string{"deutsch/subject.txt": "Hallo"},
			want:  []string{"deutsch:", "locale folder"},
		},
		{
			name:  "locale folder name with a dot",
			files: map[string]string{"de.old/subject.txt": "Hallo"},
			want:  []string{"de.old:"},
		},
		{
			name:  "locale folder name with an empty subtag",
			files: map[string]string{"pt_/subject.txt": "Olá"},
			want:  []string{"pt_:"},
		},
		{
			name: "two folders for one locale",
			files: map[string]string{
				"pt-br/subject.txt": "Olá",
				"pt_BR/subject.txt": "Olá",
			},
			want: []string{"pt-br", "pt_BR", "locale pt-br"},
		},
		{
			name:  "empty locale folder",
			files: map[string]string{"de/.gitkeep": ""},
			want:  []string{"de:", "no template file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(writeDir(t, tt.files), tt.sub)
			s, err := mailtmpl.New(mailtmpl.Config{Dir: dir})
			if err == nil {
				t.Fatalf("New accepted the folder %v", tt.files)
			}
			if s != nil {
				t.Errorf("New returned a Set alongside the error %v", err)
			}
			for _, want := range append([]string{"template.dir"}, tt.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// TestRenderConcurrentLocales renders for identities of several locales at
// once; under -race it would report shared mutable state, and the comparison
// catches output mixed between calls or variants.
func TestRenderConcurrentLocales(t *testing.T) {
	t.Parallel()
	s := mustNew(t, mailtmpl.Config{Dir: writeDir(t, localeTree())})
	locales := []any{"de", "pt-BR", "fr", nil, "de_AT", 7}
	const goroutines, renders = 12, 50

	data := make([]mailtmpl.Data, goroutines)
	want := make([]mailtmpl.Mail, goroutines)
	for i := range data {
		data[i] = withTrait("locale", locales[i%len(locales)])
		data[i].Password = fmt.Sprintf("Pw%02d#Kq9!mRp2@Vt", i)
		want[i] = mustRender(t, s, data[i])
	}
	// The goroutines must cover distinct variants for a mix-up to show.
	seen := map[string]bool{}
	for _, m := range want {
		seen[m.Locale] = true
	}
	if diff := cmp.Diff(map[string]bool{"": true, "de": true, "pt": true}, seen); diff != "" {
		t.Fatalf("variants rendered (-want +got):\n%s", diff)
	}

	renderConcurrently(t, s, data, want, renders)
}
