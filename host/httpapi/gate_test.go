package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

const (
	loginUI    = "http://127.0.0.1:4455/login"
	settingsUI = "http://127.0.0.1:4455/settings"
)

// The gate answers only what nginx's auth_request accepts (2xx, 401, 403;
// 503 when Kratos is down) unless the proxy asks for browser redirects with
// ?browser=redirect (Traefik's ForwardAuth passes the answer through).
func TestGate(t *testing.T) {
	t.Parallel()
	const html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" // Chromium's navigation
	tests := []struct {
		name   string
		query  string
		header http.Header
		status int
		// error is the JSON body's "error" ("" for a 200 or a 303).
		error string
		// redirect is X-Gate-Redirect, location the 303's Location.
		redirect, location string
		identity           string
	}{
		{"no session", "", http.Header{}, 401, "no_session", "", "", ""},
		{"unknown session", "", http.Header{"Cookie": {"ory_kratos_session=stale"}}, 401, "no_session", "", "", ""},
		{"browser without a session", "", http.Header{"Accept": {html}}, 401, "no_session", loginUI, "", ""},
		{"browser must change", "", http.Header{"Cookie": {"ory_kratos_session=must-change"}, "Accept": {html}}, 403, "password_change_required", settingsUI, "", ""},
		{"Accept in capitals", "", http.Header{"Cookie": {"ory_kratos_session=must-change"}, "Accept": {"TEXT/HTML"}}, 403, "password_change_required", settingsUI, "", ""},
		{"API client must change", "", http.Header{"Authorization": {"Bearer tok-must-change"}}, 403, "password_change_required", "", "", ""},
		{"X-Session-Token must change", "", http.Header{"X-Session-Token": {"tok-must-change"}, "Accept": {"application/json"}}, 403, "password_change_required", "", "", ""},
		{"script's fetch must change", "", http.Header{"Cookie": {"ory_kratos_session=must-change"}, "Accept": {"*/*"}}, 403, "password_change_required", "", "", ""},
		{"browser fine", "", http.Header{"Cookie": {"ory_kratos_session=fine"}, "Accept": {html}}, 200, "", "", "", "id-2"},
		{"API client fine", "", http.Header{"Authorization": {"bearer tok-fine"}}, 200, "", "", "", "id-2"},
		{"Kratos down", "", http.Header{"X-Session-Token": {"kratos-down"}}, 503, "cannot check the session: Kratos is unavailable", "", "", ""},

		// ?browser=redirect: browsers get 303s, API clients the same JSON.
		{"redirect: browser without a session", "?browser=redirect", http.Header{"Accept": {html}}, 303, "", "", loginUI, ""},
		{"redirect: browser must change", "?browser=redirect", http.Header{"Cookie": {"ory_kratos_session=must-change"}, "Accept": {html}}, 303, "", "", settingsUI, ""},
		{"redirect: browser fine", "?browser=redirect", http.Header{"Cookie": {"ory_kratos_session=fine"}, "Accept": {html}}, 200, "", "", "", "id-2"},
		{"redirect: API client without a session", "?browser=redirect", http.Header{"Accept": {"application/json"}}, 401, "no_session", "", "", ""},
		{"redirect: API client must change", "?browser=redirect", http.Header{"X-Session-Token": {"tok-must-change"}}, 403, "password_change_required", "", "", ""},
		{"redirect: Kratos down", "?browser=redirect", http.Header{"X-Session-Token": {"kratos-down"}, "Accept": {html}}, 503, "cannot check the session: Kratos is unavailable", "", "", ""},

		// A misspelt mode fails closed and at once, for every caller.
		{"unknown mode", "?browser=redirects", http.Header{"Cookie": {"ory_kratos_session=fine"}, "Accept": {html}}, 400, `the query parameter "browser" takes one value, "redirect" (303 for browsers, for Traefik's ForwardAuth); leave it out for nginx's auth_request`, "", "", ""},
		{"empty mode", "?browser=", http.Header{"Cookie": {"ory_kratos_session=fine"}}, 400, `the query parameter "browser" takes one value, "redirect" (303 for browsers, for Traefik's ForwardAuth); leave it out for nginx's auth_request`, "", "", ""},
		{"two modes", "?browser=redirect&browser=redirect", http.Header{"Cookie": {"ory_kratos_session=fine"}}, 400, `the query parameter "browser" takes one value, "redirect" (303 for browsers, for Traefik's ForwardAuth); leave it out for nginx's auth_request`, "", "", ""},
		{"other parameters ignored", "?rd=/x", http.Header{"Cookie": {"ory_kratos_session=fine"}}, 200, "", "", "", "id-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newServer(t, true, &recorder{})
			req := httptest.NewRequest(http.MethodGet, "/gate"+tt.query, nil)
			req.Header = tt.header
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			got := w.Header()
			if w.Code != tt.status || got.Get(HeaderGateRedirect) != tt.redirect || got.Get("Location") != tt.location || got.Get(HeaderIdentityID) != tt.identity {
				t.Fatalf("HTTP %d, %s %q, Location %q, %s %q; want %d, %q, %q, %q\n%s", w.Code,
					HeaderGateRedirect, got.Get(HeaderGateRedirect), got.Get("Location"), HeaderIdentityID, got.Get(HeaderIdentityID),
					tt.status, tt.redirect, tt.location, tt.identity, w.Body)
			}
			if got.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store: the answer depends on the session", got.Get("Cache-Control"))
			}
			if w.Code == http.StatusSeeOther {
				return
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || got.Get("Content-Type") != "application/json" {
				t.Fatalf("body is not JSON (%s, %v): %s", got.Get("Content-Type"), err, w.Body)
			}
			if body["error"] != tt.error {
				t.Errorf("error %q, want %q", body["error"], tt.error)
			}
			// The JSON names the page for every 401 and 403, browser or not.
			want := map[int]string{401: loginUI, 403: settingsUI}[w.Code]
			if body["redirect_to"] != want {
				t.Errorf("redirect_to %q, want %q", body["redirect_to"], want)
			}
		})
	}
}

// The only statuses a gate without ?browser=redirect gives, whatever the
// Accept header: those nginx's auth_request understands, plus 503.
func TestGateAnswersWhatNginxAccepts(t *testing.T) {
	t.Parallel()
	h, _ := newServer(t, true, &recorder{})
	accepts := []string{"", "*/*", "text/html", "application/json", "text/html;q=0.1, application/json", "TEXT/HTML", "image/webp,*/*"}
	creds := []http.Header{
		{}, {"Cookie": {"ory_kratos_session=must-change"}}, {"Cookie": {"ory_kratos_session=fine"}},
		{"X-Session-Token": {"tok-must-change"}}, {"Authorization": {"Bearer tok-fine"}}, {"Cookie": {"ory_kratos_session=stale"}},
	}
	for _, accept := range accepts {
		for _, c := range creds {
			req := httptest.NewRequest(http.MethodGet, "/gate", nil)
			req.Header = c.Clone()
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 && w.Code != 401 && w.Code != 403 {
				t.Errorf("Accept %q, %v: HTTP %d, which nginx's auth_request turns into a 500", accept, c, w.Code)
			}
		}
	}
}
