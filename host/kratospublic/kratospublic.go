// Package kratospublic asks Kratos's public API who a browser or API
// client is, from the session cookie or token the client sent.
package kratospublic

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	kratos "github.com/ory/kratos-client-go"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/internal/kratosapi"
)

var (
	// ErrNoSession means the caller has no valid session.
	ErrNoSession = errors.New("no valid Kratos session")
	// ErrUnavailable means Kratos could not answer.
	ErrUnavailable = errors.New("kratos public API unavailable")
)

// Session is the part of a Kratos session the gate decides on.
type Session struct {
	IdentityID     string
	MetadataPublic map[string]any
}

// Client talks to the Kratos public endpoint it was last pointed at (New,
// Retarget). serve moves it when a reload changes kratos.public_url or
// timeouts.kratos.
type Client struct {
	api atomic.Pointer[kratos.APIClient]
}

// New returns a Client for publicURL.
func New(publicURL string, httpClient *http.Client) *Client {
	c := &Client{}
	c.Retarget(publicURL, httpClient)
	return c
}

// Retarget sends the calls made from now on to publicURL through
// httpClient; calls under way finish where they started.
func (c *Client) Retarget(publicURL string, httpClient *http.Client) {
	c.api.Store(kratosapi.New(publicURL, httpClient))
}

// Session resolves a session from a Cookie header or a session token;
// either may be empty.
func (c *Client) Session(ctx context.Context, cookie, token string) (*Session, error) {
	if cookie == "" && token == "" {
		return nil, ErrNoSession
	}
	req := c.api.Load().FrontendAPI.ToSession(ctx)
	if cookie != "" {
		req = req.Cookie(cookie)
	}
	if token != "" {
		req = req.XSessionToken(token)
	}
	s, resp, err := req.Execute()
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return nil, ErrNoSession
		}
		if resp != nil {
			return nil, fmt.Errorf("%w: whoami: HTTP %d", ErrUnavailable, resp.StatusCode)
		}
		return nil, fmt.Errorf("%w: whoami: %v", ErrUnavailable, err)
	}
	out := &Session{}
	if id, ok := s.GetIdentityOk(); ok && id != nil {
		out.IdentityID = id.Id
		out.MetadataPublic, _ = id.MetadataPublic.(map[string]any)
	}
	if out.IdentityID == "" {
		return nil, ErrNoSession
	}
	return out, nil
}
