package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// configs/gateway.yaml and the README name the same secrets to keep in the
// environment, and mark the same keys secret.
func TestSecretsDocumentedAlike(t *testing.T) {
	t.Parallel()
	yamlRaw, err := os.ReadFile(filepath.Join(repoRoot, "configs", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	list := func(re *regexp.Regexp, text string) []string {
		m := re.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("%v not found", re)
		}
		keys := strings.Split(strings.ReplaceAll(m[1], "`", ""), ",")
		for i := range keys {
			keys[i] = strings.TrimSpace(keys[i])
		}
		slices.Sort(keys)
		return keys
	}

	// The YAML's comments as one text, and the keys whose comment says
	// "Secret: prefer GATEWAY_<KEY>".
	preferEnv := regexp.MustCompile(`Secret: prefer (GATEWAY_[A-Z0-9_]+)`)
	var comments, block, marked, path []string
	for _, line := range strings.Split(string(yamlRaw), "\n") {
		trimmed := strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(trimmed, "#"); ok {
			comments = append(comments, strings.TrimSpace(rest))
			block = append(block, strings.TrimSpace(rest))
			continue
		}
		if trimmed == "" {
			block = nil
			continue
		}
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 2
		key, _, _ := strings.Cut(trimmed, ":")
		path = append(path[:min(depth, len(path))], key)
		if m := preferEnv.FindStringSubmatch(strings.Join(block, " ")); m != nil {
			dotted := strings.Join(path, ".")
			if want := "GATEWAY_" + strings.ToUpper(strings.Join(path, "__")); m[1] != want {
				t.Errorf("gateway.yaml: %s says to prefer %s, want %s", dotted, m[1], want)
			}
			marked = append(marked, dotted)
		}
		block = nil
	}
	slices.Sort(marked)
	yamlList := list(regexp.MustCompile(`Keep secrets \(([^)]*)\)`), strings.Join(comments, " "))
	readmeList := list(regexp.MustCompile(`Keep the secrets \(([^)]*)\)`), strings.Join(strings.Fields(string(readme)), " "))

	var readmeMarked []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\|.*[;,] secret\\b").FindAllStringSubmatch(string(readme), -1) {
		readmeMarked = append(readmeMarked, m[1])
	}
	slices.Sort(readmeMarked)

	for name, got := range map[string][]string{
		"the README's list": readmeList, "the keys gateway.yaml marks secret": marked, "the keys the README's table marks secret": readmeMarked,
	} {
		if !slices.Equal(got, yamlList) {
			t.Errorf("%s = %q, gateway.yaml's list = %q", name, got, yamlList)
		}
	}
}
