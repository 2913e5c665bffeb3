package kratosadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	kratos "github.com/ory/kratos-client-go"
)

// stub is a Kratos admin API that answers every request with answer and
// keeps the last request it got.
type stub struct {
	answer http.HandlerFunc

	mu     sync.Mutex
	method string
	url    *url.URL
	body   string
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.method, s.url, s.body = r.Method, r.URL, string(raw)
	s.mu.Unlock()
	s.answer(w, r)
}

// last is the last request's method, URL and body.
func (s *stub) last() (string, *url.URL, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.method, s.url, s.body
}

// newStub serves answer as a Kratos admin API and returns a Client of it.
func newStub(t *testing.T, answer http.HandlerFunc) (*Client, *stub) {
	t.Helper()
	s := &stub{answer: answer}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return New(srv.URL, srv.Client()), s
}

// answerJSON answers with status and body as Kratos does.
func answerJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// kratosError is Kratos's error body (herodot's DefaultError) with fields a
// refusal carries besides its reason: the request id, details echoing what
// was sent, and debug. None of them may reach the gateway's error text.
func kratosError(code int, reason, message string) string {
	body := map[string]any{"error": map[string]any{
		"id":      "bad_request_secret-id",
		"code":    code,
		"status":  http.StatusText(code),
		"request": "req-secret-5f1c",
		"reason":  reason,
		"message": message,
		"details": map[string]any{"traits": map[string]any{"email": "echoed-secret@example.com"}, "password": "Echoed-Secret-1"},
		"debug":   "sql: connection to secret-db.internal:5432 refused",
	}}
	raw, _ := json.Marshal(body)
	return string(raw)
}

// secrets are the parts of kratosError's body other than reason and message.
var secrets = []string{"bad_request_secret-id", "req-secret-5f1c", "echoed-secret", "Echoed-Secret-1", "secret-db"}

// Each answer of Kratos becomes one sentinel, so the host picks the status
// Kratos's courier gets (404, 422, 503) and the text names the operation and
// HTTP status, adds Kratos's reason only for a refusal, and never quotes the
// rest of the body.
func TestClassifyKratosAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  http.HandlerFunc
		is, not []error
		want    string
	}{
		{
			name:   "404",
			answer: answerJSON(404, kratosError(404, "", "Unable to locate the resource")),
			is:     []error{ErrNotFound}, not: []error{ErrRejected, ErrUnavailable},
			want: "get identity id-1: identity not found in Kratos",
		},
		{
			name:   "500",
			answer: answerJSON(500, kratosError(500, "database down", "An internal server error occurred, please contact the system administrator")),
			is:     []error{ErrUnavailable}, not: []error{ErrRejected, ErrNotFound, context.DeadlineExceeded},
			want: "get identity id-1: kratos admin API unavailable: HTTP 500",
		},
		{
			name: "502 from a proxy",
			answer: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, "<html>upstream secret-db refused</html>")
			},
			is: []error{ErrUnavailable}, not: []error{ErrRejected, context.DeadlineExceeded},
			want: "get identity id-1: kratos admin API unavailable: HTTP 502",
		},
		{
			name:   "503",
			answer: answerJSON(503, kratosError(503, "", "")),
			is:     []error{ErrUnavailable}, not: []error{ErrRejected, context.DeadlineExceeded},
			want: "get identity id-1: kratos admin API unavailable: HTTP 503",
		},
		{
			name:   "400 with a reason",
			answer: answerJSON(400, kratosError(400, "I[#/traits/email] S[#/properties/traits/properties/email/format] \"x\" is not valid \"email\"", "The request was malformed or contained invalid parameters")),
			is:     []error{ErrRejected}, not: []error{ErrUnavailable, ErrNotFound},
			want: "get identity id-1: kratos admin API refused the request: HTTP 400: I[#/traits/email] S[#/properties/traits/properties/email/format] \"x\" is not valid \"email\"",
		},
		{
			name:   "409 without a reason: the message",
			answer: answerJSON(409, kratosError(409, "", "The resource could not be created due to a conflict")),
			is:     []error{ErrRejected}, not: []error{ErrUnavailable},
			want: "get identity id-1: kratos admin API refused the request: HTTP 409: The resource could not be created due to a conflict",
		},
		{
			name:   "403 without reason or message",
			answer: answerJSON(403, kratosError(403, "", "")),
			is:     []error{ErrRejected},
			want:   "get identity id-1: kratos admin API refused the request: HTTP 403",
		},
		{
			name: "401 from a proxy, not JSON",
			answer: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, "token req-secret-5f1c is not valid")
			},
			is:   []error{ErrRejected},
			want: "get identity id-1: kratos admin API refused the request: HTTP 401",
		},
		{
			name:   "422 with JSON of another shape",
			answer: answerJSON(422, `{"message":"Echoed-Secret-1","reason":"Echoed-Secret-1"}`),
			is:     []error{ErrRejected},
			want:   "get identity id-1: kratos admin API refused the request: HTTP 422",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := newStub(t, tt.answer)
			_, err := c.Identity(context.Background(), "id-1")
			checkClassified(t, err, tt.is, tt.not, tt.want)
		})
	}
}

func checkClassified(t *testing.T, err error, is, not []error, want string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	for _, s := range is {
		if !errors.Is(err, s) {
			t.Errorf("%v is not %v", err, s)
		}
	}
	for _, s := range not {
		if errors.Is(err, s) {
			t.Errorf("%v is %v", err, s)
		}
	}
	if err.Error() != want {
		t.Errorf("error text\n got %q\nwant %q", err.Error(), want)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q quotes %q from the body", err, s)
		}
	}
}

// No answer in time is a deadline as well as ErrUnavailable, so the host
// answers 504; a refused connection is ErrUnavailable alone, named without
// the admin URL.
func TestClassifyNoAnswer(t *testing.T) {
	t.Parallel()
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		c, _ := newStub(t, hang)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Identity(ctx, "id-1")
		checkClassified(t, err, []error{ErrUnavailable, context.DeadlineExceeded}, []error{ErrRejected, ErrNotFound},
			"get identity id-1: kratos admin API unavailable: context deadline exceeded")
	})
	t.Run("http.Client timeout", func(t *testing.T) {
		t.Parallel()
		s := &stub{answer: hang}
		srv := httptest.NewServer(s)
		defer srv.Close()
		hc := srv.Client()
		hc.Timeout = 50 * time.Millisecond
		_, err := New(srv.URL, hc).Identity(context.Background(), "id-1")
		checkClassified(t, err, []error{ErrUnavailable, context.DeadlineExceeded}, []error{ErrRejected},
			"get identity id-1: kratos admin API unavailable: context deadline exceeded")
	})
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		adminURL := srv.URL
		srv.Close()
		_, err := New(adminURL, &http.Client{}).Identity(context.Background(), "id-1")
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrRejected) {
			t.Fatalf("refused connection = %v, want ErrUnavailable without a deadline", err)
		}
		if !strings.HasPrefix(err.Error(), "get identity id-1: kratos admin API unavailable: dial tcp ") || !strings.Contains(err.Error(), "refused") {
			t.Errorf("error %q does not name the refused dial", err)
		}
		if strings.Contains(err.Error(), adminURL) || strings.Contains(err.Error(), "/admin/identities") {
			t.Errorf("error %q repeats the admin URL", err)
		}
	})
}

// timeoutError is a transport error that says it timed out, as a
// connection's read deadline does.
type timeoutError struct{ timeout bool }

func (e timeoutError) Error() string   { return "read tcp 127.0.0.1:1->127.0.0.1:4434: i/o timeout" }
func (e timeoutError) Timeout() bool   { return e.timeout }
func (e timeoutError) Temporary() bool { return false }

// classify without an answer, for transport errors an httptest server
// cannot produce on demand.
func TestClassifyTransportErrors(t *testing.T) {
	t.Parallel()
	const adminURL = "http://kratos:4434/admin/identities/id-1"
	tests := []struct {
		name     string
		err      error
		deadline bool
		want     string
	}{
		{"read deadline", &url.Error{Op: "Get", URL: adminURL, Err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}, true,
			"op: kratos admin API unavailable: context deadline exceeded"},
		{"net.Error timeout", &url.Error{Op: "Get", URL: adminURL, Err: timeoutError{timeout: true}}, true,
			"op: kratos admin API unavailable: context deadline exceeded"},
		{"not a timeout", &url.Error{Op: "Get", URL: adminURL, Err: timeoutError{timeout: false}}, false,
			"op: kratos admin API unavailable: read tcp 127.0.0.1:1->127.0.0.1:4434: i/o timeout"},
		{"refused", &url.Error{Op: "Get", URL: adminURL, Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}}, false,
			"op: kratos admin API unavailable: dial tcp: connect: connection refused"},
		{"canceled", &url.Error{Op: "Get", URL: adminURL, Err: context.Canceled}, false,
			"op: kratos admin API unavailable: context canceled"},
		{"bare error", errors.New("no such host"), false,
			"op: kratos admin API unavailable: no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := classify("op", nil, tt.err)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) != tt.deadline {
				t.Errorf("classify = %v: ErrUnavailable %t, deadline %t; want deadline %t",
					err, errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded), tt.deadline)
			}
			if err.Error() != tt.want {
				t.Errorf("error text\n got %q\nwant %q", err, tt.want)
			}
		})
	}
}

// identityJSON is an identity as Kratos's admin API answers GET
// /admin/identities/{id}?include_credential=password, with fields replaced.
func identityJSON(t *testing.T, edit func(m map[string]any)) string {
	t.Helper()
	const base = `{
		"id": "id-1",
		"schema_id": "default",
		"schema_url": "http://127.0.0.1:4433/schemas/ZGVmYXVsdA",
		"state": "active",
		"state_changed_at": "2026-11-26T21:14:29.069807908Z",
		"traits": {"email": "alice@example.com", "name": "Alice"},
		"metadata_public": {"plan": "pro"},
		"metadata_admin": {"email_gateway": {"pending": "v1.k.x"}},
		"organization_id": null,
		"recovery_addresses": [
			{"id": "fea3cf63-ccc7-4862-b39b-8e8c03f31393", "value": "alice@example.com", "via": "email",
			 "created_at": "2026-11-26T21:14:29.072587Z", "updated_at": "2026-11-26T21:14:29.072587Z"},
			{"id": "1b2c3d4e-ccc7-4862-b39b-8e8c03f31393", "value": "alice@work.example", "via": "email",
			 "created_at": "2026-11-26T21:14:29.072587Z", "updated_at": "2026-11-26T21:14:29.072587Z"}
		],
		"verifiable_addresses": [],
		"credentials": {
			"password": {"type": "password", "identifiers": ["alice@example.com"], "version": 0,
				"config": {"hashed_password": "$2a$12$Sd7FNf0.DXFqNq9m1dpm0.abcdefghijklmnopqrstuvwxyz01234"},
				"created_at": "2026-11-26T21:14:29.07Z", "updated_at": "2026-11-26T21:14:29.07Z"},
			"code": {"type": "code", "identifiers": ["alice@example.com"], "version": 0, "config": {"addresses": []},
				"created_at": "2026-11-26T21:14:29.07Z", "updated_at": "2026-11-26T21:14:29.07Z"}
		},
		"created_at": "2026-11-26T21:14:29.071746Z",
		"updated_at": "2026-11-26T21:14:29.071746Z"
	}`
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func passwordConfig(m map[string]any) map[string]any {
	return m["credentials"].(map[string]any)["password"].(map[string]any)["config"].(map[string]any)
}

// fromKratos reads what the gateway writes back: metadata null stays nil
// (so a write passes null back rather than {}), an object stays an object,
// the password hash and the migration hook's flag come from the password
// credential, created_at is read.
func TestFromKratos(t *testing.T) {
	t.Parallel()
	full := &Identity{
		ID:                "id-1",
		SchemaID:          "default",
		State:             "active",
		Traits:            map[string]any{"email": "alice@example.com", "name": "Alice"},
		MetadataPublic:    map[string]any{"plan": "pro"},
		MetadataAdmin:     map[string]any{"email_gateway": map[string]any{"pending": "v1.k.x"}},
		RecoveryAddresses: []string{"alice@example.com", "alice@work.example"},
		PasswordHash:      "$2a$12$Sd7FNf0.DXFqNq9m1dpm0.abcdefghijklmnopqrstuvwxyz01234",
		CreatedAt:         time.Date(2026, 11, 26, 21, 14, 29, 71746000, time.UTC),
	}
	with := func(edit func(i *Identity)) *Identity {
		i := *full
		edit(&i)
		return &i
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
		want *Identity
	}{
		{"everything", nil, full},
		{"metadata null", func(m map[string]any) { m["metadata_public"], m["metadata_admin"] = nil, nil },
			with(func(i *Identity) { i.MetadataPublic, i.MetadataAdmin = nil, nil })},
		{"metadata absent", func(m map[string]any) { delete(m, "metadata_public"); delete(m, "metadata_admin") },
			with(func(i *Identity) { i.MetadataPublic, i.MetadataAdmin = nil, nil })},
		{"metadata empty objects", func(m map[string]any) { m["metadata_public"], m["metadata_admin"] = map[string]any{}, map[string]any{} },
			with(func(i *Identity) { i.MetadataPublic, i.MetadataAdmin = map[string]any{}, map[string]any{} })},
		{"migration hook", func(m map[string]any) {
			cfg := passwordConfig(m)
			cfg["hashed_password"], cfg["use_password_migration_hook"] = "", true
		}, with(func(i *Identity) { i.PasswordHash, i.UsesMigrationHook = "", true })},
		{"migration hook off", func(m map[string]any) { passwordConfig(m)["use_password_migration_hook"] = false }, full},
		{"no password credential", func(m map[string]any) { delete(m["credentials"].(map[string]any), "password") },
			with(func(i *Identity) { i.PasswordHash = "" })},
		{"no credentials", func(m map[string]any) { delete(m, "credentials") },
			with(func(i *Identity) { i.PasswordHash = "" })},
		{"hash of another type", func(m map[string]any) { passwordConfig(m)["hashed_password"] = 7 },
			with(func(i *Identity) { i.PasswordHash = "" })},
		{"no recovery address", func(m map[string]any) { m["recovery_addresses"] = []any{} },
			with(func(i *Identity) { i.RecoveryAddresses = nil })},
		{"a recovery address via sms", func(m map[string]any) {
			addrs := m["recovery_addresses"].([]any)
			addrs[0].(map[string]any)["value"], addrs[0].(map[string]any)["via"] = "+15550100", "sms"
		}, with(func(i *Identity) { i.RecoveryAddresses = []string{"alice@work.example"} })},
		{"no state, no created_at", func(m map[string]any) { delete(m, "state"); delete(m, "created_at") },
			with(func(i *Identity) { i.State, i.CreatedAt = "", time.Time{} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, s := newStub(t, answerJSON(200, identityJSON(t, tt.edit)))
			got, err := c.Identity(context.Background(), "id-1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
			if (got.MetadataPublic == nil) != (tt.want.MetadataPublic == nil) || (got.MetadataAdmin == nil) != (tt.want.MetadataAdmin == nil) {
				t.Errorf("metadata nil-ness: public %t admin %t, want %t %t",
					got.MetadataPublic == nil, got.MetadataAdmin == nil, tt.want.MetadataPublic == nil, tt.want.MetadataAdmin == nil)
			}
			if _, u, _ := s.last(); u.Path != "/admin/identities/id-1" || u.Query().Get("include_credential") != "password" {
				t.Errorf("asked %s, want /admin/identities/id-1?include_credential=password", u)
			}
		})
	}
}

// metadata or traits that are not a JSON object are refused: writing them
// back as an object would lose them.
func TestFromKratosRefusesNonObjects(t *testing.T) {
	t.Parallel()
	for _, field := range []string{"metadata_public", "metadata_admin", "traits"} {
		for _, v := range []any{"x", []any{1.0}, 7.0, true} {
			t.Run(fmt.Sprintf("%s %v", field, v), func(t *testing.T) {
				t.Parallel()
				c, _ := newStub(t, answerJSON(200, identityJSON(t, func(m map[string]any) { m[field] = v })))
				got, err := c.Identity(context.Background(), "id-1")
				want := fmt.Sprintf("identity id-1 %s: is %T, not a JSON object", field, v)
				if err == nil || err.Error() != want {
					t.Errorf("Identity = %+v, %v; want error %q", got, err, want)
				}
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
					t.Errorf("%v is taken for an answer of Kratos", err)
				}
			})
		}
	}
}

// A null metadata read stays null in the PUT that writes it back: the
// gateway never turns it into {}.
func TestNullMetadataIsWrittenBackNull(t *testing.T) {
	t.Parallel()
	c, s := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/version":
			answerJSON(200, `{"version":"v1.3.1"}`)(w, r)
		case r.Method == http.MethodPut:
			answerJSON(200, identityJSON(t, nil))(w, r)
		default:
			answerJSON(200, identityJSON(t, func(m map[string]any) { m["metadata_public"] = nil }))(w, r)
		}
	})
	id, err := c.Identity(context.Background(), "id-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPassword(context.Background(), id, PasswordUpdate{UseMigrationHook: true,
		MetadataPublic: id.MetadataPublic, MetadataAdmin: id.MetadataAdmin}); err != nil {
		t.Fatal(err)
	}
	method, _, put := s.last()
	if method != http.MethodPut {
		t.Fatalf("the write was a %s, want the PUT of v1.3.1", method)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal([]byte(put), &body); err != nil {
		t.Fatalf("PUT body %q: %v", put, err)
	}
	if got := string(body["metadata_public"]); got != "null" {
		t.Errorf("PUT metadata_public = %s, want null as read", got)
	}
	if got := string(body["metadata_admin"]); got != `{"email_gateway":{"pending":"v1.k.x"}}` {
		t.Errorf("PUT metadata_admin = %s, want the object as read", got)
	}
}

// FindByIdentifier asks for the credential identifier and takes exactly one
// identity; none or several are ErrNotFound.
func TestFindByIdentifier(t *testing.T) {
	t.Parallel()
	for n, wantErr := range map[int]bool{0: true, 1: false, 2: true} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			list := make([]json.RawMessage, n)
			for i := range list {
				list[i] = json.RawMessage(identityJSON(t, func(m map[string]any) {
					m["id"] = fmt.Sprintf("id-%d", i+1)
					delete(m, "credentials")
				}))
			}
			raw, _ := json.Marshal(list)
			c, s := newStub(t, answerJSON(200, string(raw)))
			got, err := c.FindByIdentifier(context.Background(), "alice@example.com")
			if wantErr {
				if !errors.Is(err, ErrNotFound) || err.Error() != "find identity by identifier: identity not found in Kratos" {
					t.Errorf("%d identities: %v, %v; want ErrNotFound", n, got, err)
				}
			} else if err != nil || got.ID != "id-1" || got.Traits["email"] != "alice@example.com" {
				t.Errorf("one identity: %+v, %v", got, err)
			}
			if _, u, _ := s.last(); u.Path != "/admin/identities" || u.Query().Get("credentials_identifier") != "alice@example.com" {
				t.Errorf("asked %s, want /admin/identities?credentials_identifier=alice@example.com", u)
			}
		})
	}
}

// Kratos's keyset pagination puts the next page's token in the Link header
// (ory/x keysetpagination.Header: "first" and, unless the page is the last,
// "next", joined by a comma; the URL is the request's, relative).
func TestNextPageToken(t *testing.T) {
	t.Parallel()
	// A map page token is base64 (StdEncoding): + and / are escaped in the
	// query.
	const token = "aWQ9MDFK+/4bQ"
	for link, want := range map[string]string{
		`</admin/identities?page_size=2&page_token=MDAwMDAwMDA>; rel="first",</admin/identities?page_size=2&page_token=aWQ9MDFK%2B%2F4bQ>; rel="next"`:  token,
		`</admin/identities?page_size=2&page_token=aWQ9MDFK%2B%2F4bQ>; rel="next", </admin/identities?page_size=2&page_token=MDAwMDAwMDA>; rel="first"`: token,
		`<http://kratos:4434/admin/identities?page_token=aWQ9MDFK%2B%2F4bQ&page_size=2>;rel="next"`:                                                     token,
		// The last page: "first" only, whose token is not the next one.
		`</admin/identities?page_size=2&page_token=MDAwMDAwMDA>; rel="first"`: "",
		// No header.
		"": "",
		// Malformed.
		`</admin/identities?page_size=2&page_token=%zz>; rel="next"`:                        "",
		`<http://[::1/admin/identities?page_token=abc>; rel="next"`:                         "",
		`</admin/identities?page_size=2>; rel="next"`:                                       "",
		`/admin/identities?page_size=2&page_token=abc; rel="next"`:                          "",
		`</admin/identities?page_size=2&page_token=abc>; rel="prev"`:                        "",
		`</admin/identities?page_size=2&page_token=abc`:                                     "",
		`</admin/identities?page_size=2&page_token=abc>; rel="first"; title="rel=\"next\""`: "",
	} {
		if got := nextPageToken(link); got != want {
			t.Errorf("nextPageToken(%q) = %q, want %q", link, got, want)
		}
	}
}

// ListIdentityIDs sends the page size and the token it is given, and returns
// the ids and the next page's token from the Link header.
func TestListIdentityIDs(t *testing.T) {
	t.Parallel()
	const token = "aWQ9MDFK+/4bQ"
	c, s := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		ids := []string{"id-3"}
		link := `</admin/identities?page_size=2&page_token=MDAwMDAwMDA>; rel="first"`
		if r.URL.Query().Get("page_token") == "" {
			ids = []string{"id-1", "id-2"}
			link += `,</admin/identities?page_size=2&page_token=` + url.QueryEscape(token) + `>; rel="next"`
		}
		list := make([]json.RawMessage, 0, len(ids))
		for _, id := range ids {
			list = append(list, json.RawMessage(identityJSON(t, func(m map[string]any) { m["id"] = id })))
		}
		raw, _ := json.Marshal(list)
		w.Header().Set("Link", link)
		answerJSON(200, string(raw))(w, r)
	})

	ids, next, err := c.ListIdentityIDs(context.Background(), "", 2)
	if err != nil || !cmp.Equal(ids, []string{"id-1", "id-2"}) || next != token {
		t.Fatalf("first page = %v, %q, %v; want [id-1 id-2], %q", ids, next, err, token)
	}
	if _, u, _ := s.last(); u.Path != "/admin/identities" || u.Query().Get("page_size") != "2" || u.Query().Has("page_token") {
		t.Errorf("first page asked %s, want page_size=2 and no page_token", u)
	}
	ids, next, err = c.ListIdentityIDs(context.Background(), next, 2)
	if err != nil || !cmp.Equal(ids, []string{"id-3"}) || next != "" {
		t.Fatalf("last page = %v, %q, %v; want [id-3] and no next", ids, next, err)
	}
	if _, u, _ := s.last(); u.Query().Get("page_token") != token {
		t.Errorf("second page asked %s, want page_token %q", u, token)
	}

	down, _ := newStub(t, answerJSON(503, kratosError(503, "", "")))
	if _, _, err := down.ListIdentityIDs(context.Background(), "", 2); !errors.Is(err, ErrUnavailable) || err.Error() != "list identities: kratos admin API unavailable: HTTP 503" {
		t.Errorf("503 = %v, want ErrUnavailable", err)
	}
}

// Patch writes each path as a JSON pointer (RFC 6901): "~" becomes "~0" and
// "/" becomes "~1" in every segment, "~" first, so a key holding "~1" is
// not read back as "/".
func TestPatchEscapesPointerSegments(t *testing.T) {
	t.Parallel()
	c, s := newStub(t, answerJSON(200, identityJSON(t, nil)))
	ops := []Op{
		{Op: "add", Path: []string{"metadata_admin", "email_gateway", "mailed_at"}, Value: "2026-11-26T21:30:00Z"},
		{Op: "add", Path: []string{"metadata_admin", "a/b~c"}, Value: map[string]any{"k": "v"}},
		{Op: "remove", Path: []string{"metadata_public", "~1"}},
		{Op: "replace", Path: []string{"traits", "~/"}, Value: "x"},
		{Op: "remove", Path: []string{"metadata_public", ""}},
	}
	if err := c.Patch(context.Background(), "id-1", ops...); err != nil {
		t.Fatal(err)
	}
	method, u, body := s.last()
	if method != http.MethodPatch || u.Path != "/admin/identities/id-1" {
		t.Errorf("sent %s %s, want PATCH /admin/identities/id-1", method, u.Path)
	}
	const want = `[{"op":"add","path":"/metadata_admin/email_gateway/mailed_at","value":"2026-11-26T21:30:00Z"},` +
		`{"op":"add","path":"/metadata_admin/a~1b~0c","value":{"k":"v"}},` +
		`{"op":"remove","path":"/metadata_public/~01"},` +
		`{"op":"replace","path":"/traits/~0~1","value":"x"},` +
		`{"op":"remove","path":"/metadata_public/"}]`
	var got, wantV any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("patch body %q: %v", body, err)
	}
	_ = json.Unmarshal([]byte(want), &wantV)
	if diff := cmp.Diff(wantV, got); diff != "" {
		t.Errorf("patch (-want +got):\n%s", diff)
	}
	// Each pointer reads back (RFC 6901 section 4) as the segments given.
	var sent []kratos.JsonPatch
	_ = json.Unmarshal([]byte(body), &sent)
	unescape := strings.NewReplacer("~1", "/", "~0", "~")
	for i, p := range sent {
		var segs []string
		for _, seg := range strings.Split(p.Path, "/")[1:] {
			segs = append(segs, unescape.Replace(seg))
		}
		if i < len(ops) && !cmp.Equal(segs, ops[i].Path) {
			t.Errorf("%s reads back as %q, want %q", p.Path, segs, ops[i].Path)
		}
	}
}

// A refused patch is classified as every other call.
func TestPatchFailures(t *testing.T) {
	t.Parallel()
	op := Op{Op: "remove", Path: []string{"metadata_admin", "email_gateway", "pending"}}
	for _, tt := range []struct {
		answer http.HandlerFunc
		is     error
		want   string
	}{
		{answerJSON(404, kratosError(404, "", "Unable to locate the resource")), ErrNotFound, "patch identity id-1: identity not found in Kratos"},
		{answerJSON(400, kratosError(400, "remove operation does not apply: doc is missing path: /metadata_admin/email_gateway/pending", "The request was malformed or contained invalid parameters")),
			ErrRejected, "patch identity id-1: kratos admin API refused the request: HTTP 400: remove operation does not apply: doc is missing path: /metadata_admin/email_gateway/pending"},
		{answerJSON(500, kratosError(500, "", "")), ErrUnavailable, "patch identity id-1: kratos admin API unavailable: HTTP 500"},
	} {
		c, _ := newStub(t, tt.answer)
		err := c.Patch(context.Background(), "id-1", op)
		if !errors.Is(err, tt.is) || err.Error() != tt.want {
			t.Errorf("Patch = %v, want %q (%v)", err, tt.want, tt.is)
		}
	}
}
