package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runScript runs one of scripts/ against the suite's Kratos.
func runScript(t *testing.T, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.root, "scripts", name), args...)
	cmd.Env = append(os.Environ(), "KRATOS_PUBLIC_URL="+env.kratosPublic)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// The README's shell journey: recover.sh, then login.sh with the mailed
// password shows the flag the migration hook set (read from whoami: Kratos's
// login answer still has the identity from before the hook). login.sh sends
// any password as it is, and exits 1 when Kratos refuses.
func TestDemoScripts(t *testing.T) {
	startHost(t, hostOptions{enabled: true})
	email := uniqueEmail(t)
	const odd = `Quote"Back\slash-Pass-51`
	createIdentity(t, email, odd)

	code, stdout, stderr := runScript(t, "login.sh", email, odd)
	if code != 0 || !strings.Contains(stdout, "logged in as "+email) || !strings.Contains(stdout, "session token") {
		t.Fatalf("login.sh with a password holding \" and \\: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, stderr = runScript(t, "login.sh", email, "Wrong-Password-51")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "login refused by Kratos (HTTP 400)") || !strings.Contains(stderr, "credentials are invalid") {
		t.Errorf("login.sh with a wrong password: exit %d, want 1 with Kratos's message\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	if code, stdout, stderr := runScript(t, "recover.sh", email); code != 0 {
		t.Fatalf("recover.sh: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	temp := temporaryPassword(t, waitMails(t, email, 1)[0])
	code, stdout, stderr = runScript(t, "login.sh", email, temp)
	if code != 0 || !strings.Contains(stdout, `"password_change_required":true`) {
		t.Errorf("login.sh with the temporary password: exit %d, want 0 showing password_change_required\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, temp) {
		t.Errorf("login.sh printed the password")
	}
}
