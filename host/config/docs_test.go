package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository, seen from this package.
const repoRoot = "../.."

// Error texts and docs send operators to files of the repository: each one
// must exist (a log line once sent them to a login hook's own jsonnet file,
// while the login and settings hooks share identity-hook.jsonnet).
func TestNamedRepositoryFilesExist(t *testing.T) {
	t.Parallel()
	path := regexp.MustCompile(`\b(?:configs|scripts|deploy)/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
	// A Kratos file named on its own, as kratos.yml's hooks do.
	kratosFile := regexp.MustCompile(`\b[a-z-]+\.jsonnet\b`)
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || d.Name() == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, ".sh") &&
			!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml") && d.Name() != "Makefile" && d.Name() != "Dockerfile" {
			return nil
		}
		if strings.HasSuffix(p, ".pb.go") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range path.FindAllString(string(data), -1) {
			if _, err := os.Stat(filepath.Join(repoRoot, m)); err != nil {
				t.Errorf("%s names %s, which does not exist", rel, m)
			}
		}
		for _, m := range kratosFile.FindAllString(string(data), -1) {
			if _, err := os.Stat(filepath.Join(repoRoot, "configs", "kratos", m)); err != nil {
				t.Errorf("%s names %s, which is not in configs/kratos", rel, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
