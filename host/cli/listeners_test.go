package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
)

func TestGateListenerRouting(t *testing.T) {
	t.Parallel()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api "+r.URL.Path) })
	tests := []struct {
		handler      string
		method, path string
		want         int
	}{
		{"listen", "GET", "/gate", http.StatusNotFound},
		{"listen", "POST", "/gate", http.StatusNotFound},
		{"listen", "POST", "/courier", http.StatusOK},
		{"listen", "POST", "/hooks/password", http.StatusOK},
		{"listen", "GET", "/health/ready", http.StatusOK},
		{"listen", "GET", "/metrics", http.StatusOK},
		{"gate.listen", "GET", "/gate", http.StatusOK},
		{"gate.listen", "GET", "/health/alive", http.StatusOK},
		{"gate.listen", "GET", "/health/ready", http.StatusOK},
		{"gate.listen", "POST", "/courier", http.StatusNotFound},
		{"gate.listen", "POST", "/hooks/password", http.StatusNotFound},
		{"gate.listen", "GET", "/metrics", http.StatusNotFound},
		{"gate.listen", "GET", "/", http.StatusNotFound},
	}
	handlers := map[string]http.Handler{"listen": withoutGate(api), "gate.listen": gateOnly(api)}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		handlers[tt.handler].ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.want {
			t.Errorf("%s: %s %s = %d, want %d", tt.handler, tt.method, tt.path, rec.Code, tt.want)
		}
		if rec.Code == http.StatusOK && rec.Body.String() != "api "+tt.path {
			t.Errorf("%s: %s %s answered %q, want the API's answer", tt.handler, tt.method, tt.path, rec.Body)
		}
	}
}

// A listener that cannot bind stops the start with an error naming its key;
// the ones bound before it were warned about when they are off loopback
// without TLS.
func TestServeNamesTheListenerThatCannotBind(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var out testlog.Buffer
	code := Run(context.Background(), Env{Args: []string{"serve", "--config", shipped}, Stdout: io.Discard, Stderr: &out, Environ: []string{
		"GATEWAY_PLUGIN__PATH=" + pluginBin, "GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher,
		"GATEWAY_LISTEN=0.0.0.0:0", "GATEWAY_GATE__LISTEN=" + taken.Addr().String(),
	}})
	stderr := out.String()
	if want := "listen on " + taken.Addr().String() + " (gate.listen): "; code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 with %q", code, stderr, want)
	}
	if !strings.Contains(stderr, `"msg":"security warning","key":"listen","listen":"0.0.0.0:0"`) {
		t.Errorf("no security warning for listen on 0.0.0.0 without TLS:\n%s", stderr)
	}
	if strings.Contains(stderr, `"key":"gate.listen","listen"`) {
		t.Errorf("a warning for the listener that did not bind:\n%s", stderr)
	}
}
