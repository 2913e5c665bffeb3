// Package kratosadmin reads and writes identities through Kratos's admin API
// with kratos-client-go, returning errors the host can branch on.
package kratosadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	kratos "github.com/ory/kratos-client-go"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/internal/kratosapi"
)

var (
	// ErrNotFound means Kratos does not know the identity.
	ErrNotFound = errors.New("identity not found in Kratos")
	// ErrUnavailable means Kratos could not be reached or failed; retry later.
	ErrUnavailable = errors.New("kratos admin API unavailable")
	// ErrRejected means Kratos refused the request (4xx other than 404).
	ErrRejected = errors.New("kratos admin API refused the request")
)

// Identity is the part of a Kratos identity the gateway reads and writes back.
type Identity struct {
	ID                string
	SchemaID          string
	State             string
	Traits            map[string]any
	MetadataPublic    map[string]any
	MetadataAdmin     map[string]any
	RecoveryAddresses []string // those via email, as Kratos stores them
	// PasswordHash is the stored hash of the password credential (bcrypt,
	// argon2id or an imported format); empty without one.
	PasswordHash string
	// UsesMigrationHook says Kratos asks the password migration hook at the
	// next password login instead of checking PasswordHash.
	UsesMigrationHook bool
	// CreatedAt is when Kratos created the identity.
	CreatedAt time.Time
}

// Client talks to the Kratos admin endpoint it was last pointed at (New,
// Retarget). serve moves it when a reload changes kratos.admin_url or
// timeouts.kratos, so everything that holds the Client follows.
type Client struct {
	cur atomic.Pointer[endpoint]
}

// endpoint is one admin URL reached through one HTTP client, with the
// version its Kratos reported.
type endpoint struct {
	api *kratos.APIClient
	ver versionCache
}

// New returns a Client for adminURL using httpClient (which carries the
// transport settings and, in tests, nothing else special).
func New(adminURL string, httpClient *http.Client) *Client {
	c := &Client{}
	c.Retarget(adminURL, httpClient)
	return c
}

// Retarget sends the calls made from now on to adminURL through
// httpClient; calls under way finish where they started. The version the
// old endpoint reported is forgotten.
func (c *Client) Retarget(adminURL string, httpClient *http.Client) {
	c.cur.Store(&endpoint{api: kratosapi.New(adminURL, httpClient)})
}

// api is the endpoint's client in effect.
func (c *Client) api() *kratos.APIClient { return c.cur.Load().api }

// Identity fetches one identity with its password hash.
func (c *Client) Identity(ctx context.Context, id string) (*Identity, error) {
	ki, resp, err := c.api().IdentityAPI.GetIdentity(ctx, id).IncludeCredential([]string{"password"}).Execute()
	if err != nil {
		return nil, classify("get identity "+id, resp, err)
	}
	return fromKratos(ki)
}

// FindByIdentifier fetches the identity whose password credential has this
// identifier (what the user types at login). It does not read the hash.
func (c *Client) FindByIdentifier(ctx context.Context, identifier string) (*Identity, error) {
	list, resp, err := c.api().IdentityAPI.ListIdentities(ctx).CredentialsIdentifier(identifier).Execute()
	if err != nil {
		return nil, classify("find identity by identifier", resp, err)
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("find identity by identifier: %w", ErrNotFound)
	}
	return fromKratos(&list[0])
}

// ListIdentityIDs returns one page of identity ids and the token of the next
// page ("" after the last). Kratos paginates with a page token in the Link
// header (Ory's keyset pagination).
func (c *Client) ListIdentityIDs(ctx context.Context, pageToken string, pageSize int) ([]string, string, error) {
	req := c.api().IdentityAPI.ListIdentities(ctx).PageSize(int64(pageSize))
	if pageToken != "" {
		req = req.PageToken(pageToken)
	}
	list, resp, err := req.Execute()
	if err != nil {
		return nil, "", classify("list identities", resp, err)
	}
	ids := make([]string, 0, len(list))
	for _, i := range list {
		ids = append(ids, i.Id)
	}
	return ids, nextPageToken(resp.Header.Get("Link")), nil
}

var nextLink = regexp.MustCompile(`<([^>]*)>;\s*rel="next"`)

func nextPageToken(link string) string {
	m := nextLink.FindStringSubmatch(link)
	if m == nil {
		return ""
	}
	u, err := url.Parse(m[1])
	if err != nil {
		return ""
	}
	return u.Query().Get("page_token")
}

// PasswordUpdate is one write of a new password and the metadata that goes
// with it. Metadata maps replace the stored ones entirely (Kratos's PUT
// semantics), so callers pass the merged result.
type PasswordUpdate struct {
	// Password is set as the new password, unless UseMigrationHook is true:
	// then the stored hash is dropped and Kratos asks the password migration
	// hook at the next login.
	Password         string
	UseMigrationHook bool
	MetadataPublic   map[string]any
	MetadataAdmin    map[string]any
}

// SetPassword replaces the identity's password and metadata in one PUT, so
// Kratos never holds a new password without its flags. Kratos hashes the
// password, which is the slow part of this call.
//
// On Kratos v26.2.0 and newer, the switch to the migration hook is a JSON
// Patch instead, which cannot undo a concurrent trait change (version.go).
func (c *Client) SetPassword(ctx context.Context, id *Identity, u PasswordUpdate) error {
	if u.UseMigrationHook && c.patchesPassword(ctx) {
		return c.patchToMigrationHook(ctx, id, u)
	}
	pw := &kratos.IdentityWithCredentialsPasswordConfig{Password: &u.Password}
	if u.UseMigrationHook {
		pw = &kratos.IdentityWithCredentialsPasswordConfig{UsePasswordMigrationHook: &u.UseMigrationHook}
	}
	body := kratos.UpdateIdentityBody{
		SchemaId:       id.SchemaID,
		State:          id.State,
		Traits:         id.Traits,
		MetadataPublic: u.MetadataPublic,
		MetadataAdmin:  u.MetadataAdmin,
		Credentials:    &kratos.IdentityWithCredentials{Password: &kratos.IdentityWithCredentialsPassword{Config: pw}},
	}
	_, resp, err := c.api().IdentityAPI.UpdateIdentity(ctx, id.ID).UpdateIdentityBody(body).Execute()
	if err != nil {
		return classify("update identity "+id.ID, resp, err)
	}
	return nil
}

// Op is one JSON Patch operation (RFC 6902) on an identity.
type Op struct {
	Op    string // add | remove | replace
	Path  []string
	Value any
}

// Patch applies ops with one JSON Patch, so the write cannot undo a
// concurrent change to fields it does not name.
func (c *Client) Patch(ctx context.Context, id string, ops ...Op) error {
	patch := make([]kratos.JsonPatch, 0, len(ops))
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	for _, o := range ops {
		var pointer strings.Builder
		for _, p := range o.Path {
			pointer.WriteString("/" + escape.Replace(p))
		}
		patch = append(patch, kratos.JsonPatch{Op: o.Op, Path: pointer.String(), Value: o.Value})
	}
	_, resp, err := c.api().IdentityAPI.PatchIdentity(ctx, id).JsonPatch(patch).Execute()
	if err != nil {
		return classify("patch identity "+id, resp, err)
	}
	return nil
}

// CreateIdentity creates an identity with the given traits and
// metadata_admin, without credentials.
func (c *Client) CreateIdentity(ctx context.Context, schemaID string, traits, metadataAdmin map[string]any) (*Identity, error) {
	body := kratos.NewCreateIdentityBody(schemaID, traits)
	if metadataAdmin != nil {
		body.MetadataAdmin = metadataAdmin
	}
	ki, resp, err := c.api().IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(*body).Execute()
	if err != nil {
		return nil, classify("create identity", resp, err)
	}
	return fromKratos(ki)
}

// DeleteIdentity deletes an identity; one that is already gone is not an
// error.
func (c *Client) DeleteIdentity(ctx context.Context, id string) error {
	resp, err := c.api().IdentityAPI.DeleteIdentity(ctx, id).Execute()
	if err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound) {
		return classify("delete identity "+id, resp, err)
	}
	return nil
}

// CourierMessage is the part of a message in Kratos's courier queue that
// tells whether and how it was delivered.
type CourierMessage struct {
	TemplateType string
	// Status is queued, processing, sent or abandoned.
	Status    string
	SendCount int64
}

// CourierMessages lists the messages Kratos's courier holds for recipient.
func (c *Client) CourierMessages(ctx context.Context, recipient string) ([]CourierMessage, error) {
	list, resp, err := c.api().CourierAPI.ListCourierMessages(ctx).Recipient(recipient).Execute()
	if err != nil {
		return nil, classify("list courier messages", resp, err)
	}
	out := make([]CourierMessage, 0, len(list))
	for _, m := range list {
		out = append(out, CourierMessage{TemplateType: m.TemplateType, Status: string(m.Status), SendCount: m.SendCount})
	}
	return out, nil
}

// RevokeSessions ends every session of the identity.
func (c *Client) RevokeSessions(ctx context.Context, id string) error {
	resp, err := c.api().IdentityAPI.DeleteIdentitySessions(ctx, id).Execute()
	if err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound) {
		// Kratos answers 404 when the identity has no sessions: nothing to end.
		return classify("revoke sessions of "+id, resp, err)
	}
	return nil
}

// Ready reports whether Kratos's admin API answers its readiness probe.
func (c *Client) Ready(ctx context.Context) error {
	_, resp, err := c.api().MetadataAPI.IsReady(ctx).Execute()
	if err != nil {
		return classify("kratos readiness", resp, err)
	}
	return nil
}

// classify turns a kratos-client-go failure into one of the sentinels. The
// response body is not quoted: Kratos echoes request fields in some errors.
func classify(op string, resp *http.Response, err error) error {
	switch {
	case resp == nil && isTimeout(err):
		// Kept as a deadline so the host answers 504, not a generic 503.
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, context.DeadlineExceeded)
	case resp == nil:
		return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, unwrapTransport(err))
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s: %w: HTTP %d", op, ErrUnavailable, resp.StatusCode)
	default:
		return fmt.Errorf("%s: %w: HTTP %d%s", op, ErrRejected, resp.StatusCode, kratosReason(err))
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// unwrapTransport keeps the transport error (refused, deadline) without the
// URL, which would only repeat the configured admin URL.
func unwrapTransport(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// kratosReason extracts Kratos's error reason from its JSON error body.
func kratosReason(err error) string {
	var oe *kratos.GenericOpenAPIError
	if !errors.As(err, &oe) {
		return ""
	}
	var body struct {
		Error struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(oe.Body(), &body) != nil {
		return ""
	}
	if body.Error.Reason != "" {
		return ": " + body.Error.Reason
	}
	if body.Error.Message != "" {
		return ": " + body.Error.Message
	}
	return ""
}

func fromKratos(ki *kratos.Identity) (*Identity, error) {
	out := &Identity{ID: ki.Id, SchemaID: ki.SchemaId, State: ki.GetState(), CreatedAt: ki.GetCreatedAt()}
	var err error
	if out.Traits, err = asObject(ki.Traits); err != nil {
		return nil, fmt.Errorf("identity %s traits: %w", ki.Id, err)
	}
	if out.MetadataPublic, err = asObject(ki.MetadataPublic); err != nil {
		return nil, fmt.Errorf("identity %s metadata_public: %w", ki.Id, err)
	}
	if out.MetadataAdmin, err = asObject(ki.MetadataAdmin); err != nil {
		return nil, fmt.Errorf("identity %s metadata_admin: %w", ki.Id, err)
	}
	for _, a := range ki.RecoveryAddresses {
		// Kratos may recover through other channels too (via sms from
		// v26 on); the gateway only mails.
		if a.Via == "" || a.Via == "email" {
			out.RecoveryAddresses = append(out.RecoveryAddresses, a.Value)
		}
	}
	if ki.Credentials != nil {
		if pw, ok := (*ki.Credentials)["password"]; ok {
			out.PasswordHash, _ = pw.Config["hashed_password"].(string)
			out.UsesMigrationHook, _ = pw.Config["use_password_migration_hook"].(bool)
		}
	}
	return out, nil
}

// asObject accepts Kratos's null or JSON object; anything else is an error
// because writing it back as an object would lose data. null stays nil, so
// a write that passes it back leaves it null rather than turning it into {}.
func asObject(v any) (map[string]any, error) {
	switch m := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return m, nil
	default:
		return nil, fmt.Errorf("is %T, not a JSON object", v)
	}
}
