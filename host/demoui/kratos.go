package demoui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// maxKratosBody bounds what is read from Kratos: a flow is a few KiB, so
// anything near this size is not an answer worth rendering.
const maxKratosBody = 1 << 20

// flow is the part of a Kratos self-service flow the pages render. Only the
// fields the templates use are decoded, so newer Kratos versions that add
// fields keep working.
type flow struct {
	ID    string `json:"id"`
	State string `json:"state"`
	UI    flowUI `json:"ui"`
	// Identity is set on settings flows only.
	Identity *identity `json:"identity"`
}

// flowUI is what Kratos wants the browser to show and submit.
type flowUI struct {
	Action   string    `json:"action"`
	Method   string    `json:"method"`
	Messages []message `json:"messages"`
	Nodes    []node    `json:"nodes"`
}

// message is one of Kratos's UI texts (info, error or success).
type message struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
	Type string `json:"type"`
}

// node is one element of a flow's form.
type node struct {
	Type       string     `json:"type"`
	Group      string     `json:"group"`
	Attributes attributes `json:"attributes"`
	Messages   []message  `json:"messages"`
	Meta       struct {
		Label *message `json:"label"`
	} `json:"meta"`
}

// attributes are the union of the attribute sets of the node types the UI
// renders: input, text and a.
type attributes struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	Value        any    `json:"value"`
	Required     bool   `json:"required"`
	Disabled     bool   `json:"disabled"`
	Autocomplete string `json:"autocomplete"`
	// Text is the content of a text node.
	Text *message `json:"text"`
	// Href and Title describe an a node.
	Href  string   `json:"href"`
	Title *message `json:"title"`
}

// Label is the text shown with an input or on a button.
func (n node) Label() string {
	if n.Meta.Label != nil && n.Meta.Label.Text != "" {
		return n.Meta.Label.Text
	}
	return n.Attributes.Name
}

// ValueString is the input's value as HTML wants it. Kratos never sends a
// password back, but a password input is never prefilled even if it did.
func (a attributes) ValueString() string {
	if a.Value == nil || a.Type == "password" {
		return ""
	}
	if s, ok := a.Value.(string); ok {
		return s
	}
	return fmt.Sprint(a.Value)
}

// identity is the part of a Kratos identity the pages look at.
type identity struct {
	Traits         map[string]any `json:"traits"`
	MetadataPublic map[string]any `json:"metadata_public"`
}

// mustChangePassword reports the flag the gateway sets when the user logged
// in with a temporary password.
func (i *identity) mustChangePassword() bool {
	return i != nil && i.MetadataPublic["password_change_required"] == true
}

// email is the identity's email trait, or "" if the schema has none.
func (i *identity) email() string {
	if i == nil {
		return ""
	}
	s, _ := i.Traits["email"].(string)
	return s
}

// session is Kratos's answer to /sessions/whoami.
type session struct {
	Identity *identity `json:"identity"`
}

// logoutFlow is Kratos's answer to /self-service/logout/browser.
type logoutFlow struct {
	LogoutURL string `json:"logout_url"`
}

// flowError is Kratos's answer to /self-service/errors.
type flowError struct {
	ID    string `json:"id"`
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
}

// statusError is a Kratos answer other than 200; callers decide by Code
// whether to restart a flow, treat the user as logged out, or fail.
type statusError struct {
	Path string
	Code int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("kratos %s: HTTP %d", e.Path, e.Code)
}

// getJSON asks Kratos's public API for path and decodes a 200 answer into
// out. cookie is the browser's Cookie header: Kratos checks the CSRF cookie
// of a flow and finds the session in it, so it goes along unchanged (and is
// never logged).
func (u *ui) getJSON(ctx context.Context, path string, query url.Values, cookie string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	target := u.kratos + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	// JSON makes Kratos answer with a status instead of redirecting the
	// server to a UI page.
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return fmt.Errorf("kratos %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return &statusError{Path: path, Code: resp.StatusCode}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxKratosBody)).Decode(out); err != nil {
		return fmt.Errorf("kratos %s: decode: %w", path, err)
	}
	return nil
}
