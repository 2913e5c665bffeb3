// Package timing splits the time of one request into the parts spent
// waiting on Kratos and on the plugin, so that the host's own share can be
// measured (BENCHMARKS.md) and logged.
package timing

import (
	"context"
	"sync"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Split accumulates the time a request spent in outside calls.
type Split struct {
	mu     sync.Mutex
	kratos time.Duration
	plugin time.Duration
}

type key struct{}

// Start attaches a fresh Split to ctx.
func Start(ctx context.Context) (context.Context, *Split) {
	s := &Split{}
	return context.WithValue(ctx, key{}, s), s
}

// Parts returns the time spent in Kratos calls and in plugin calls.
func (s *Split) Parts() (kratos, plugin time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kratos, s.plugin
}

func add(ctx context.Context, kratos, plugin time.Duration) {
	if s, ok := ctx.Value(key{}).(*Split); ok {
		s.mu.Lock()
		s.kratos += kratos
		s.plugin += plugin
		s.mu.Unlock()
	}
}

// Identities times calls to Kratos's admin API.
type Identities struct {
	Inner *kratosadmin.Client
}

func since(ctx context.Context, start time.Time) { add(ctx, time.Since(start), 0) }

// Identity forwards and times.
func (i Identities) Identity(ctx context.Context, id string) (*kratosadmin.Identity, error) {
	defer since(ctx, time.Now())
	return i.Inner.Identity(ctx, id)
}

// FindByIdentifier forwards and times.
func (i Identities) FindByIdentifier(ctx context.Context, identifier string) (*kratosadmin.Identity, error) {
	defer since(ctx, time.Now())
	return i.Inner.FindByIdentifier(ctx, identifier)
}

// SetPassword forwards and times.
func (i Identities) SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error {
	defer since(ctx, time.Now())
	return i.Inner.SetPassword(ctx, id, u)
}

// Patch forwards and times.
func (i Identities) Patch(ctx context.Context, id string, ops ...kratosadmin.Op) error {
	defer since(ctx, time.Now())
	return i.Inner.Patch(ctx, id, ops...)
}

// RevokeSessions forwards and times.
func (i Identities) RevokeSessions(ctx context.Context, id string) error {
	defer since(ctx, time.Now())
	return i.Inner.RevokeSessions(ctx, id)
}

// Gateway times the plugin calls on a request's path.
type Gateway struct {
	sdk.Gateway
}

func pluginSince(ctx context.Context, start time.Time) { add(ctx, 0, time.Since(start)) }

// IssuePassword forwards and times.
func (g Gateway) IssuePassword(ctx context.Context, r *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
	defer pluginSince(ctx, time.Now())
	return g.Gateway.IssuePassword(ctx, r)
}

// SendMessage forwards and times.
func (g Gateway) SendMessage(ctx context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
	defer pluginSince(ctx, time.Now())
	return g.Gateway.SendMessage(ctx, r)
}

// Render forwards and times: a reset renders its mail as a check before it
// changes the identity.
func (g Gateway) Render(ctx context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
	defer pluginSince(ctx, time.Now())
	return g.Gateway.Render(ctx, r)
}
