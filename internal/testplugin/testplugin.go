// Package testplugin builds the real gateway-email-plugin once per test
// binary, for the tests that run it over go-plugin.
package testplugin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// pluginPkg is built by its import path, so Main works from any package of
// the module.
const pluginPkg = "github.com/kratos-email-gateway/kratos-email-gateway/plugin/cmd/gateway-email-plugin"

// Main is a TestMain: it builds the plugin into a temporary folder, sets
// *bin to its path, runs m, removes the folder and exits with m's code.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "gateway-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "gateway-email-plugin")
	if out, err := exec.Command("go", "build", "-o", *bin, pluginPkg).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build plugin: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
