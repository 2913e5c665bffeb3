package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// A reload tells the truth: kratos.admin_url moves the running host's
// Kratos client (readiness asks the new address), and an edit of a
// restart-only key keeps the running value while the log and readiness name
// the key, until the file agrees again.
func TestReloadMovesKratosAndNamesRestartOnlyKeys(t *testing.T) {
	h := startHost(t, hostOptions{enabled: true})
	ready := func() (int, map[string]any) {
		t.Helper()
		var body map[string]any
		status := call(t, "GET", "http://"+env.hostAddr+"/health/ready", nil, nil, &body)
		return status, body
	}

	edit(t, h, "listen: "+env.hostAddr, "listen: 127.0.0.1:9", "applied")
	if !strings.Contains(h.String(), `"msg":"config key changed on disk applies only after a restart; keeping the running value","key":"listen"`) {
		t.Errorf("no warning names listen:\n%s", h)
	}
	if status, body := ready(); status != http.StatusOK || body["restart_needed"] != "listen" {
		t.Errorf("readiness after an edit of listen = %d %v, want 200 with restart_needed listen", status, body)
	}

	// Nothing listens on port 9: a host that follows the edit is unready
	// naming Kratos; one that ignored it would stay ready.
	edit(t, h, "admin_url: "+env.kratosAdmin, "admin_url: http://127.0.0.1:9", "applied")
	if status, body := ready(); status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body["errors"]), "kratos") {
		t.Errorf("readiness with kratos.admin_url on a dead port = %d %v, want 503 naming kratos", status, body)
	}
	edit(t, h, "admin_url: http://127.0.0.1:9", "admin_url: "+env.kratosAdmin, "applied")
	edit(t, h, "listen: 127.0.0.1:9", "listen: "+env.hostAddr, "applied")
	if status, body := ready(); status != http.StatusOK || body["restart_needed"] != nil {
		t.Errorf("readiness once the file agrees again = %d %v, want 200 without restart_needed", status, body)
	}
	assertNoSecrets(t, h.String())
}
