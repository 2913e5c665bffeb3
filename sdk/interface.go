package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
)

// Gateway is the core of the contract, what every channel implements (an
// email plugin, and one day an SMS or chat plugin): configure, issue a
// password, send a message, report health. Each method takes a request
// struct and returns a response struct so fields can be added later without
// breaking plugin authors.
//
// What only some channels can do is an optional capability, an interface of
// its own (Renderer, Prober) that a plugin implements or not; the host
// discovers it by calling, and a plugin without it answers ErrUnsupported
// (gRPC Unimplemented on the wire).
type Gateway interface {
	// Configure validates and applies the plugin's config section. A plugin
	// that refuses a config keeps the one it had.
	Configure(ctx context.Context, req *ConfigureRequest) (*ConfigureResponse, error)
	// IssuePassword returns a fresh random temporary password.
	IssuePassword(ctx context.Context, req *IssuePasswordRequest) (*IssuePasswordResponse, error)
	// SendMessage returns only once the SMTP server accepted the mail.
	SendMessage(ctx context.Context, req *SendMessageRequest) (*SendMessageResponse, error)
	// Health reports whether the plugin can work.
	Health(ctx context.Context, req *HealthRequest) (*HealthResponse, error)
}

// Renderer is the optional capability to render a password mail or a
// notice without sending it. The host uses it for `gateway template
// preview` and, before a reset changes an identity, as a check that the
// password mail can be built; with a plugin that lacks it the host skips
// that check (see package recovery).
type Renderer interface {
	Render(ctx context.Context, req *RenderRequest) (*RenderResponse, error)
}

// Prober is the optional capability to send a test mail and report each
// SMTP stage (`gateway smtp test`); an SMTP failure is reported in the
// response, not as an error.
type Prober interface {
	Probe(ctx context.Context, req *ProbeRequest) (*ProbeResponse, error)
}

// Remote is a plugin as a host holds it (Launch, sdktest.Connect, AsRemote):
// the core and every capability. A capability the plugin does not offer
// answers an error matching ErrUnsupported.
type Remote interface {
	Gateway
	Renderer
	Prober
}

// AsRemote gives an in-process gw the shape a host holds: gw itself when it
// has every capability, otherwise a view whose missing capabilities answer
// ErrUnsupported, as they do across the wire.
func AsRemote(gw Gateway) Remote {
	if r, ok := gw.(Remote); ok {
		return r
	}
	return partial{gw}
}

// partial is a Gateway that lacks a capability.
type partial struct{ Gateway }

func (p partial) Render(ctx context.Context, req *RenderRequest) (*RenderResponse, error) {
	if c, ok := p.Gateway.(Renderer); ok {
		return c.Render(ctx, req)
	}
	return nil, fmt.Errorf("Render: %w", ErrUnsupported)
}

func (p partial) Probe(ctx context.Context, req *ProbeRequest) (*ProbeResponse, error) {
	if c, ok := p.Gateway.(Prober); ok {
		return c.Probe(ctx, req)
	}
	return nil, fmt.Errorf("Probe: %w", ErrUnsupported)
}

// ConfigureRequest carries the plugin's config section as a JSON object.
type ConfigureRequest struct {
	Config json.RawMessage
}

// ConfigureResponse lists warnings the host logs; they never hold secrets.
type ConfigureResponse struct {
	Warnings []string
}

// IssuePasswordRequest names the identity the password is for.
type IssuePasswordRequest struct {
	IdentityID string
}

// IssuePasswordResponse holds the temporary password. It is a secret: never
// log it.
type IssuePasswordResponse struct {
	Password string
}

// SendMessageRequest is one mail to one recipient. Exactly one of Rendered,
// Password and Notice is set.
type SendMessageRequest struct {
	Recipient string
	Rendered  *RenderedMessage
	Password  *PasswordMessage
	// Notice was added after the first release: a plugin built before it
	// sees a message without content and answers ErrInvalidArgument.
	Notice *NoticeMessage
}

// RenderedMessage is a mail Kratos rendered; the plugin sends it unchanged.
type RenderedMessage struct {
	Subject  string
	TextBody string
	HTMLBody string
}

// PasswordMessage is the data of a temporary password mail; the plugin renders
// it with its templates.
//
// RecoveryCode and RecoveryURL are Kratos's own recovery code (code method)
// and recovery link (link method) from the message that asked for the
// reset, for deployments whose UI waits for them; at most one is set, and
// both are empty for admin resets. Like Password, they are secrets: never
// log them or put them in an error.
type PasswordMessage struct {
	Password       string
	ExpiresAt      time.Time
	LoginURL       string
	IdentityID     string
	IdentityTraits json.RawMessage
	RecoveryCode   string
	RecoveryURL    string
}

// The kinds of NoticeMessage.
const (
	// NoticePasswordChanged tells the user that their password was changed
	// (the forced change after a temporary password, or any change through
	// Kratos's settings flow).
	NoticePasswordChanged = "password_changed"
	// NoticeResetVoid tells the user that someone asked to recover their
	// account, but they signed in with their current password, so the
	// temporary password no longer works and nothing changed.
	NoticeResetVoid = "reset_void"
)

// NoticeMessage is the data of a notice: a mail that tells the user about
// their account and carries no secret (no password, no code, no link that
// logs in). The plugin renders it with the templates of its Kind.
type NoticeMessage struct {
	// Kind is NoticePasswordChanged or NoticeResetVoid.
	Kind string
	// At is when it happened.
	At             time.Time
	IdentityID     string
	IdentityTraits json.RawMessage
	// LoginURL is where the user signs in, and starts a recovery if it was
	// not them; SettingsURL is where they change their password.
	LoginURL    string
	SettingsURL string
}

// SendMessageResponse holds the SMTP server's reply to the accepted mail
// and the stages of the delivery.
type SendMessageResponse struct {
	ServerReply string
	Trace       []SMTPStep
}

// SMTPStep is one stage of an SMTP delivery as it happened. It never holds
// a secret. It is the one step type from the plugin's sender to the wire:
// plugin/smtpsend records its trace in it.
type SMTPStep struct {
	// Stage is connect, reuse, tls, greeting, hello, auth, mail_from,
	// rcpt_to, data or reset/close.
	Stage string
	// Detail says what happened, e.g. "127.0.0.1:465", "TLS 1.3,
	// TLS_AES_128_GCM_SHA256, certificate for localhost verified",
	// "AUTH PLAIN as noreply@example.com" or the server's reply.
	Detail string
	// Duration runs from the stage's first command (or dial) until the next
	// stage began or the stage failed.
	Duration time.Duration
	// Err is empty when the stage succeeded, otherwise why it failed.
	Err string
}

// RenderRequest asks for the mail a recipient would get: the password mail
// or a notice, exactly one of Password and Notice.
type RenderRequest struct {
	Recipient string
	Password  *PasswordMessage
	Notice    *NoticeMessage
}

// RenderResponse is a rendered mail; Locale names the template variant.
type RenderResponse struct {
	Subject  string
	TextBody string
	HTMLBody string
	Locale   string
}

// ProbeRequest asks for a test mail to Recipient.
type ProbeRequest struct {
	Recipient string
}

// ProbeResponse reports how a test delivery went, stage by stage.
type ProbeResponse struct {
	Delivered bool
	Trace     []SMTPStep
	Err       string
}

// HealthRequest is empty today; it is a struct so fields can be added.
type HealthRequest struct{}

// HealthResponse says whether the plugin has a working config.
type HealthResponse struct {
	Configured bool
	Detail     string
}

// PluginName is the name under which the gateway is dispensed from go-plugin.
const PluginName = "gateway"

// Handshake makes sure host and plugin were built for the same contract. It is
// a user-experience check that stops a wrong binary from being launched by
// mistake, not a security measure: the plugin's checksum (SecureConfig) is.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "KRATOS_EMAIL_GATEWAY_PLUGIN",
	MagicCookieValue: "0b8f3c1e-temporary-password-gateway",
}

// PluginMap is the go-plugin map serving impl; hosts pass nil. It is exported
// for tools such as sdktest that connect to a plugin without a subprocess.
func PluginMap(impl Gateway) goplugin.PluginSet {
	return goplugin.PluginSet{PluginName: &grpcPlugin{impl: impl}}
}
