package mailtmpl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"unicode/utf8"
)

// maxFileSize bounds a template file, so that a template.dir pointing at
// the wrong folder cannot load a huge file into memory.
const maxFileSize = 256 << 10

// readDir reads the template folder dir: the template files at its root and
// those of each locale folder, by normalised locale. Anything else there is
// an error, so that a misspelt file name cannot be silently ignored.
func readDir(dir string) (folder, map[string]folder, error) {
	fsys := os.DirFS(dir)
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		// os.DirFS calls its root "."; the operator needs the real path.
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = &fs.PathError{Op: pe.Op, Path: dir, Err: pe.Err}
		}
		return folder{}, nil, fmt.Errorf("%s: %w", keyDir, err)
	}

	var root folder
	locales := map[string]folder{}
	folderNames := map[string]string{} // normalised locale → folder name
	for _, e := range entries {
		name := e.Name()
		if isHidden(name) {
			continue
		}
		if k, p, ok := partOf(name); ok {
			if root[k][p], err = readTemplate(fsys, name); err != nil {
				return folder{}, nil, err
			}
			continue
		}
		locale := normalizeLocale(name)
		if !isLocale(locale) {
			return folder{}, nil, fmt.Errorf("%s: %s: neither a template file (%s) nor a locale folder (such as de or pt-br)", keyDir, name, fileNames())
		}
		if other, dup := folderNames[locale]; dup {
			return folder{}, nil, fmt.Errorf("%s: %s and %s are both folders for locale %s", keyDir, other, name, locale)
		}
		folderNames[locale] = name
		if locales[locale], err = readLocale(fsys, name); err != nil {
			return folder{}, nil, err
		}
	}
	return root, locales, nil
}

// readLocale reads the template files of the locale folder dir.
func readLocale(fsys fs.FS, dir string) (folder, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return folder{}, fmt.Errorf("%s: %w", keyDir, err)
	}
	var f folder
	found := false
	for _, e := range entries {
		name := e.Name()
		if isHidden(name) {
			continue
		}
		file := path.Join(dir, name)
		k, p, ok := partOf(name)
		if !ok {
			return folder{}, fmt.Errorf("%s: %s: not a template file (%s)", keyDir, file, fileNames())
		}
		if f[k][p], err = readTemplate(fsys, file); err != nil {
			return folder{}, err
		}
		found = true
	}
	if !found {
		// Most likely the files were meant to be there; an empty folder would
		// only make Mail.Locale claim a translation that does not exist.
		return folder{}, fmt.Errorf("%s: %s: locale folder holds no template file (%s)", keyDir, dir, fileNames())
	}
	return f, nil
}

// readTemplate reads the template file name, refusing what cannot be a
// template: something other than a regular file (a FIFO would block New),
// a file over maxFileSize, and text that is not UTF-8 or holds a NUL byte.
func readTemplate(fsys fs.FS, name string) (*source, error) {
	text, err := readFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyDir, err)
	}
	return &source{origin: origin{key: keyDir, file: name}, text: text}, nil
}

func readFile(fsys fs.FS, name string) (string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxFileSize {
		return "", fmt.Errorf("%s: larger than the limit of %d KiB", name, maxFileSize>>10)
	}
	line := 0
	for l := range bytes.Lines(b) {
		line++
		if !utf8.Valid(l) {
			return "", fmt.Errorf("%s:%d: not valid UTF-8", name, line)
		}
		if bytes.IndexByte(l, 0) >= 0 {
			return "", fmt.Errorf("%s:%d: contains a NUL byte", name, line)
		}
	}
	return string(b), nil
}

// isHidden reports whether a folder entry is hidden, such as .gitkeep or
// .DS_Store, which are not templates and not mistakes either.
func isHidden(name string) bool { return strings.HasPrefix(name, ".") }

// normalizeLocale brings a locale to the form of the folder names it is
// compared with: pt_BR, PT-br and pt-br are all pt-br.
func normalizeLocale(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", "-"))
}

// isLocale reports whether a normalised name has the shape of a BCP 47
// language tag, ^[a-z]{2,3}(-[a-z0-9]{2,8})*$: de, pt-br, zh-hant-tw, es-419.
func isLocale(name string) bool {
	subtags := strings.Split(name, "-")
	if !isSubtag(subtags[0], 2, 3, false) {
		return false
	}
	for _, s := range subtags[1:] {
		if !isSubtag(s, 2, 8, true) {
			return false
		}
	}
	return true
}

// isSubtag reports whether s is minLen to maxLen ASCII lower-case letters,
// or also digits if digits is set.
func isSubtag(s string, minLen, maxLen int, digits bool) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || digits && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
