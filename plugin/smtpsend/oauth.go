package smtpsend

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// AUTH mechanisms accepted in smtp.auth. Empty means whatever the server
// offers, best first (authMechs).
const (
	AuthPlain   = "plain"
	AuthLogin   = "login"
	AuthXOAUTH2 = "xoauth2"
)

// OAuth2Config is the smtp.oauth2 section, read only with smtp.auth: xoauth2.
// It takes one of two grants: client credentials (token_url, client_id,
// client_secret, scopes: Microsoft 365's app-only SMTP) or a Google service
// account's JWT grant (service_account_file and subject: the mailbox the
// account acts for, through domain-wide delegation).
type OAuth2Config struct {
	TokenURL string `koanf:"token_url"`
	ClientID string `koanf:"client_id"`
	// ClientSecret is a secret: it never appears in an error, a warning,
	// a trace or a log line. Prefer GATEWAY_SMTP__OAUTH2__CLIENT_SECRET.
	ClientSecret string   `koanf:"client_secret"`
	Scopes       []string `koanf:"scopes"`
	// ClientAuth is how the client credentials reach the token endpoint:
	// basic (an Authorization header, RFC 6749's default, and the default
	// here) or post (in the form body). One method, never a guess: x/oauth2's
	// auto-detection retries a refused request the other way, and the
	// endpoint's answer to that retry (often invalid_client) would hide
	// the real one, such as invalid_scope.
	ClientAuth string `koanf:"client_auth"`
	// ServiceAccountFile is a Google service account key (JSON). Its
	// private key is a secret; token_url, when set, overrides its token_uri.
	ServiceAccountFile string `koanf:"service_account_file"`
	Subject            string `koanf:"subject"`
}

// set reports whether any key of the section is set.
func (o OAuth2Config) set() bool {
	return o.TokenURL != "" || o.ClientID != "" || o.ClientSecret != "" || len(o.Scopes) > 0 || o.ClientAuth != "" ||
		o.ServiceAccountFile != "" || o.Subject != ""
}

// googleMailScope is what Gmail's SMTP server asks of an XOAUTH2 token.
const googleMailScope = "https://mail.google.com/"

// serviceAccount is the part of a Google service account key file the JWT
// grant needs.
type serviceAccount struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// check validates the section for smtp.auth: xoauth2 and returns the grant,
// reading the service account file once. security and host decide whether
// a plain http token endpoint is acceptable: only on this machine.
func (o OAuth2Config) check() (grant, []error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			add(invalid("smtp.oauth2.scopes", "scope %d is empty or contains a space or control character: list one scope per entry", i+1))
		}
	}
	if o.ServiceAccountFile != "" {
		if o.ClientID != "" || o.ClientSecret != "" || o.ClientAuth != "" {
			add(invalid("smtp.oauth2", "set either service_account_file (Google) or client_id, client_secret and client_auth "+
				"(client credentials), not both"))
		}
		if o.Subject == "" {
			add(invalid("smtp.oauth2.subject", "must be set to the mailbox the service account sends as (domain-wide delegation), "+
				"usually smtp.email_address"))
		} else if strings.ContainsFunc(o.Subject, unicode.IsControl) {
			add(invalid("smtp.oauth2.subject", "must not contain line breaks or other control characters"))
		}
		sa, err := loadServiceAccount(o.ServiceAccountFile)
		add(err)
		tokenURL := o.TokenURL
		if tokenURL == "" && sa != nil {
			tokenURL = sa.TokenURI
			if tokenURL == "" {
				add(invalid("smtp.oauth2.service_account_file", "%s has no token_uri: set smtp.oauth2.token_url", o.ServiceAccountFile))
			}
		}
		if tokenURL != "" {
			add(checkTokenURL(tokenURL))
		}
		if len(errs) > 0 {
			return nil, errs
		}
		scopes := o.Scopes
		if len(scopes) == 0 {
			scopes = []string{googleMailScope}
		}
		return &jwtGrant{conf: &jwt.Config{
			Email:        sa.ClientEmail,
			PrivateKey:   []byte(sa.PrivateKey),
			PrivateKeyID: sa.PrivateKeyID,
			Subject:      o.Subject,
			Scopes:       scopes,
			TokenURL:     tokenURL,
		}, file: o.ServiceAccountFile}, nil
	}

	if o.Subject != "" {
		add(invalid("smtp.oauth2.subject", "is only used with smtp.oauth2.service_account_file; remove it"))
	}
	switch {
	case o.TokenURL == "":
		add(invalid("smtp.oauth2.token_url", "must be set to the token endpoint, e.g. "+
			"https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token (Microsoft 365); "+
			"or set smtp.oauth2.service_account_file for Google"))
	default:
		add(checkTokenURL(o.TokenURL))
	}
	if o.ClientID == "" {
		add(invalid("smtp.oauth2.client_id", "must be set to the application (client) id registered at the token endpoint"))
	} else if strings.ContainsFunc(o.ClientID, unicode.IsControl) {
		add(invalid("smtp.oauth2.client_id", "must not contain line breaks or other control characters"))
	}
	if o.ClientSecret == "" {
		add(invalid("smtp.oauth2.client_secret", "must be set (prefer the environment variable GATEWAY_SMTP__OAUTH2__CLIENT_SECRET)"))
	}
	if len(o.Scopes) == 0 {
		add(invalid("smtp.oauth2.scopes", "must list the scopes to ask for, e.g. https://outlook.office365.com/.default (Microsoft 365)"))
	}
	style := oauth2.AuthStyleInHeader
	switch o.ClientAuth {
	case "", "basic":
	case "post":
		style = oauth2.AuthStyleInParams
	default:
		add(invalid("smtp.oauth2.client_auth", "%q is not a client authentication method: use basic (an Authorization header) "+
			"or post (in the form body)", truncate(o.ClientAuth, 40)))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &clientCredentialsGrant{conf: &clientcredentials.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		TokenURL:     o.TokenURL,
		Scopes:       o.Scopes,
		AuthStyle:    style,
	}}, nil
}

// checkTokenURL insists on https, since the client secret or the signed
// assertion travels to it; plain http only to this machine.
func checkTokenURL(raw string) error {
	const key = "smtp.oauth2.token_url"
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return invalid(key, "%q is not an http(s) URL: give the token endpoint's full URL", raw)
	}
	if u.User != nil {
		return invalid(key, "must not hold credentials: set smtp.oauth2.client_id and client_secret")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return invalid(key, "%q is plain http to another machine, where the client secret would travel unencrypted: use https", raw)
	}
	return nil
}

// loadServiceAccount reads a Google service account key file. Its errors
// name the file and the problem, never anything read from it.
func loadServiceAccount(path string) (*serviceAccount, error) {
	const key = "smtp.oauth2.service_account_file"
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, invalid(key, "cannot read the service account file: %v", err)
	}
	var sa serviceAccount
	if err := json.Unmarshal(data, &sa); err != nil {
		return nil, invalid(key, "%s is not a service account key: it is not JSON; download the key "+
			"(IAM, service account, Keys, Add key, JSON) and point this at it", path)
	}
	if sa.Type != "service_account" {
		return nil, invalid(key, "%s is not a service account key: its \"type\" is %q, not \"service_account\" "+
			"(an OAuth client or user credential file does not work here)", path, truncate(sa.Type, 40))
	}
	if sa.ClientEmail == "" {
		return nil, invalid(key, "%s has no client_email: download the JSON key again", path)
	}
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		return nil, invalid(key, "%s: private_key is not a PEM key: download the JSON key again", path)
	}
	// x/oauth2/jwt signs with RS256 and accepts PKCS#8 or PKCS#1 RSA.
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, invalid(key, "%s: private_key does not parse as a private key: download the JSON key again", path)
	}
	if _, ok := parsed.(*rsa.PrivateKey); !ok {
		return nil, invalid(key, "%s: private_key is not an RSA key, which the JWT grant (RS256) needs", path)
	}
	return &sa, nil
}

// grant fetches one access token from the token endpoint, every call.
type grant interface {
	fetch(ctx context.Context) (*oauth2.Token, error)
	// describe says where tokens come from, for the trace; no secret.
	describe() string
	// fix says which keys to check when the endpoint refuses the client.
	fix() string
	endpoint() string
}

type clientCredentialsGrant struct{ conf *clientcredentials.Config }

func (g *clientCredentialsGrant) fetch(ctx context.Context) (*oauth2.Token, error) {
	return g.conf.Token(ctx)
}

func (g *clientCredentialsGrant) describe() string {
	return fmt.Sprintf("client credentials of %s from %s, scopes %s", g.conf.ClientID, g.conf.TokenURL, strings.Join(g.conf.Scopes, " "))
}

func (g *clientCredentialsGrant) fix() string {
	return "check smtp.oauth2.client_id, smtp.oauth2.client_secret (it may have expired) and smtp.oauth2.scopes"
}

func (g *clientCredentialsGrant) endpoint() string { return g.conf.TokenURL }

type jwtGrant struct {
	conf *jwt.Config
	file string
}

func (g *jwtGrant) fetch(ctx context.Context) (*oauth2.Token, error) {
	return g.conf.TokenSource(ctx).Token()
}

func (g *jwtGrant) describe() string {
	return fmt.Sprintf("JWT grant of service account %s for %s from %s, scopes %s",
		g.conf.Email, g.conf.Subject, g.conf.TokenURL, strings.Join(g.conf.Scopes, " "))
}

func (g *jwtGrant) fix() string {
	return "check that the key in smtp.oauth2.service_account_file is still active, that the service account has " +
		"domain-wide delegation for smtp.oauth2.scopes, and smtp.oauth2.subject"
}

func (g *jwtGrant) endpoint() string { return g.conf.TokenURL }

// Token cache timing. A token is refreshed in the background once it has
// less than refreshLead of its life left (a quarter of it, at most 5
// minutes), so a send rarely waits for the token endpoint; it is not used
// with less than staleLead left (a tenth, at most 30 s), since the server
// checks it a little later than we send it.
const (
	maxRefreshLead = 5 * time.Minute
	maxStaleLead   = 30 * time.Second
	// unknownLifetime is assumed for a token without expires_in: short,
	// since a refusal costs a second connection.
	unknownLifetime = 5 * time.Minute
	// fetchTimeout bounds one request to the token endpoint, whoever waits.
	fetchTimeout = 10 * time.Second
	// retryAfterFailure keeps a failed background refresh from hammering
	// the endpoint; a send that needs a token still tries at once.
	retryAfterFailure = 30 * time.Second
	// maxDescription bounds what the endpoint's error_description adds to
	// an error.
	maxDescription = 200
)

// token is an access token and what the cache knows of it.
type token struct {
	value   string // the secret itself; never printed
	fetched time.Time
	expiry  time.Time
	// known is false when the endpoint sent no expires_in.
	known bool
	gen   uint64 // identifies the token without comparing secrets
}

func (t *token) lifetime() time.Duration { return t.expiry.Sub(t.fetched) }

func (t *token) refreshAt() time.Time {
	return t.expiry.Add(-min(t.lifetime()/4, maxRefreshLead))
}

func (t *token) staleAt() time.Time {
	return t.expiry.Add(-min(t.lifetime()/10, maxStaleLead))
}

// tokens is the plugin's only store of access tokens: memory, one per
// config. Concurrent sends share one fetch.
type tokens struct {
	grant grant
	now   func() time.Time
	// secret is redacted from anything the endpoint echoes.
	secret string
	// base ends with Close, ending background fetches.
	base   context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	cur       *token
	inflight  *fetchCall
	gen       uint64
	noRefresh time.Time // no background refresh before this, after a failure
}

// fetchCall is one request to the token endpoint that several callers wait for.
type fetchCall struct {
	done chan struct{}
	tok  *token
	err  error
}

func newTokens(g grant, secret string, now func() time.Time) *tokens {
	base, cancel := context.WithCancel(context.Background())
	return &tokens{grant: g, now: now, secret: secret, base: base, cancel: cancel}
}

func (c *tokens) close() { c.cancel() }

// get returns a token good for a new session. fresh is true when this call
// waited for a fetch. A token past its refresh time is returned as it is
// while a background fetch replaces it.
func (c *tokens) get(ctx context.Context) (tok *token, fresh bool, err error) {
	c.mu.Lock()
	now := c.now()
	if cur := c.cur; cur != nil && now.Before(cur.staleAt()) {
		if !now.Before(cur.refreshAt()) && c.inflight == nil && !now.Before(c.noRefresh) {
			c.start()
		}
		c.mu.Unlock()
		return cur, false, nil
	}
	call := c.inflight
	if call == nil {
		call = c.start()
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.tok, true, call.err
	case <-ctx.Done():
		return nil, false, &StageError{Stage: StageToken, Temporary: true,
			Err: fmt.Errorf("%w while waiting for the token endpoint %s; check that it is up and reachable from here",
				context.Cause(ctx), c.grant.endpoint())}
	}
}

// invalidate drops tok after the server refused it, so the next get fetches.
func (c *tokens) invalidate(tok *token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && c.cur.gen == tok.gen {
		c.cur = nil
	}
}

// start begins a fetch; c.mu is held. The fetch runs on its own deadline so
// that one impatient caller does not fail it for the others.
func (c *tokens) start() *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	c.inflight = call
	go func() {
		ctx, cancel := context.WithTimeout(c.base, fetchTimeout)
		defer cancel()
		started := c.now()
		tok, err := c.fetch(ctx)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.inflight = nil
		if err != nil {
			call.err = err
			c.noRefresh = c.now().Add(retryAfterFailure)
		} else {
			c.gen++
			tok.gen = c.gen
			tok.fetched = started
			if !tok.known {
				tok.expiry = started.Add(unknownLifetime)
			}
			c.cur, call.tok = tok, tok
		}
		close(call.done)
	}()
	return call
}

// fetch asks the endpoint once and turns its failures into a token-stage
// error that names the endpoint, its answer and what to fix.
func (c *tokens) fetch(ctx context.Context) (*token, error) {
	rec := &responseRecorder{next: http.DefaultTransport}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: rec})
	got, err := c.grant.fetch(ctx)
	if err != nil {
		return nil, c.explain(ctx, rec, err)
	}
	tok := &token{value: got.AccessToken, expiry: got.Expiry, known: !got.Expiry.IsZero()}
	return tok, nil
}

// explain builds the error of a failed fetch from the endpoint's answer:
// its status, its RFC 6749 error code and a cleaned, bounded description.
// x/oauth2's own message is not used: it quotes the response body.
func (c *tokens) explain(ctx context.Context, rec *responseRecorder, err error) error {
	endpoint := c.grant.endpoint()
	if rErr, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		status := 0
		if rErr.Response != nil {
			status = rErr.Response.StatusCode
		}
		answer := fmt.Sprintf("HTTP %d", status)
		code, desc := rErr.ErrorCode, rErr.ErrorDescription
		if code == "" {
			// x/oauth2/jwt leaves the RFC 6749 error in the body.
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(rErr.Body, &body) == nil {
				code, desc = body.Error, body.Description
			}
		}
		if code != "" {
			answer += " " + c.clean(code, 60)
			if desc != "" {
				answer += fmt.Sprintf(" (%s)", c.clean(desc, maxDescription))
			}
		} else {
			answer += rec.describe()
		}
		temporary := status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
		what := c.grant.fix()
		if temporary {
			what = "the endpoint has trouble of its own; the mail is retried"
		}
		return &StageError{Stage: StageToken, Temporary: temporary,
			Err: fmt.Errorf("the token endpoint %s refused: %s; %s", endpoint, answer, what)}
	}
	if cause := context.Cause(ctx); cause != nil {
		return &StageError{Stage: StageToken, Temporary: true,
			Err: fmt.Errorf("the token endpoint %s did not answer in time: %w; check that it is up and reachable from here", endpoint, cause)}
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return &StageError{Stage: StageToken, Temporary: true,
			Err: fmt.Errorf("cannot reach the token endpoint %s: %s; check smtp.oauth2.token_url and that it is up", endpoint, c.clean(netProblem(err), maxDescription))}
	}
	if rec.status != 0 {
		// A 2xx answer x/oauth2 could not read as a token.
		return &StageError{Stage: StageToken, Err: fmt.Errorf("the token endpoint %s answered HTTP %d%s, not a token; "+
			"check that smtp.oauth2.token_url is the token endpoint", endpoint, rec.status, rec.describe())}
	}
	// Reached before any request: the signing of a JWT assertion, or a URL
	// the HTTP client refuses.
	return misconfigured(StageToken, fmt.Errorf("cannot ask the token endpoint %s for a token: %s", endpoint, c.clean(err.Error(), maxDescription)))
}

// clean makes text from the endpoint safe for an error line: one line, no
// control characters, bounded, and never the client secret, should an
// endpoint echo what it was sent.
func (c *tokens) clean(s string, n int) string {
	if c.secret != "" {
		s = strings.ReplaceAll(s, c.secret, "[client secret]")
	}
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	return truncate(s, n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut at a rune boundary.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// netProblem describes a network error without the URL x/oauth2's client
// puts in front (it is the token URL, named separately).
func netProblem(err error) string {
	if uErr, ok := errors.AsType[*url.Error](err); ok {
		return uErr.Err.Error()
	}
	return err.Error()
}

// responseRecorder notes the status and content type of the token
// endpoint's answer, which x/oauth2 does not report for a 2xx it cannot parse.
type responseRecorder struct {
	next        http.RoundTripper
	status      int
	contentType string
}

func (r *responseRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if resp != nil {
		r.status = resp.StatusCode
		r.contentType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	}
	return resp, err
}

func (r *responseRecorder) describe() string {
	if r.contentType == "" || r.contentType == "application/json" {
		return ""
	}
	return " with " + truncate(r.contentType, 60) + " instead of JSON"
}

// detail is the token step of a trace: where the token came from, when it
// expires; never the token.
func (c *tokens) detail(tok *token, fresh bool) string {
	how := "cached"
	if fresh {
		how = "fetched"
	}
	left := tok.expiry.Sub(c.now()).Round(time.Second)
	expiry := fmt.Sprintf("expires %s (in %s)", tok.expiry.UTC().Format(time.RFC3339), left)
	if !tok.known {
		expiry = fmt.Sprintf("no expires_in from the endpoint: used for %s, until %s", unknownLifetime, tok.expiry.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s: %s, %s", c.grant.describe(), how, expiry)
}
