// Package plugin is the email gateway plugin: it generates temporary
// passwords, renders the password mail and sends every mail through the
// SMTP gateway the admin configured.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-viper/mapstructure/v2"
	kjson "github.com/knadh/koanf/parsers/json"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/mailtmpl"
	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/password"
	"github.com/kratos-email-gateway/kratos-email-gateway/plugin/smtpsend"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Config is the plugin's part of gateway.yaml.
type Config struct {
	Password struct {
		Length int `koanf:"length"`
	} `koanf:"password"`
	SMTP     smtpsend.Config `koanf:"smtp"`
	Template mailtmpl.Config `koanf:"template"`
}

// The plugin keeps a few authenticated SMTP connections open, so a mail
// costs the envelope and DATA (pipelined where the server allows) instead of
// connect + TLS + AUTH (about 12x less on loopback); 4 covers Kratos's one-at-a-time courier and a few admin resets
// without holding many connections on the operator's gateway, and idle ones
// close before typical server idle limits (often 60s-300s).
const (
	poolSize = 4
	poolIdle = 30 * time.Second
)

// state is one accepted config, built whole before it replaces the last one
// so a mail never sees half of a reload.
type state struct {
	gen    password.Generator
	sender *smtpsend.Sender
	tmpl   *mailtmpl.Set
}

// Gateway implements sdk.Gateway and both optional capabilities: Render
// (previews, and the host's check before a reset) and Probe (SMTP tracing).
type Gateway struct {
	cur atomic.Pointer[state]
}

var (
	_ sdk.Gateway  = (*Gateway)(nil)
	_ sdk.Renderer = (*Gateway)(nil)
	_ sdk.Prober   = (*Gateway)(nil)
)

// New returns an unconfigured Gateway; the host configures it right after launch.
func New() *Gateway { return &Gateway{} }

// Configure validates every key and reports all problems at once.
func (g *Gateway) Configure(_ context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	st, err := build(cfg)
	if err != nil {
		return nil, err
	}
	if old := g.cur.Swap(st); old != nil {
		// Idle connections of the old settings close now; busy ones close
		// when their send ends.
		_ = old.sender.Close()
	}
	return &sdk.ConfigureResponse{Warnings: cfg.SMTP.Warnings()}, nil
}

// ParseConfig reads the JSON config section. Values arrive as the host read
// them (environment overrides are strings), so types are converted weakly.
func ParseConfig(raw []byte) (Config, error) {
	var cfg Config
	cfg.Password.Length = password.DefaultLength
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(raw), kjson.Parser()); err != nil {
		return cfg, fmt.Errorf("%w: plugin config is not a JSON object: %v", sdk.ErrInvalidArgument, err)
	}
	// The host owns the other password keys (ttl, revoke_sessions).
	for _, key := range k.Keys() {
		if strings.HasPrefix(key, "password.") && key != "password.length" {
			k.Delete(key)
		}
	}
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
	}})
	if err != nil {
		return cfg, fmt.Errorf("%w: %v", sdk.ErrInvalidArgument, err)
	}
	return cfg, nil
}

func build(cfg Config) (*state, error) {
	var errs []error
	if err := password.Validate(cfg.Password.Length); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cfg.SMTP.Validate()...)
	tmpl, err := mailtmpl.New(cfg.Template)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", sdk.ErrInvalidArgument, errors.Join(errs...))
	}
	sender, err := smtpsend.New(cfg.SMTP, smtpsend.WithPool(poolSize, poolIdle))
	if err != nil {
		return nil, err
	}
	return &state{gen: password.Generator{Length: cfg.Password.Length}, sender: sender, tmpl: tmpl}, nil
}

func (g *Gateway) state() (*state, error) {
	st := g.cur.Load()
	if st == nil {
		return nil, sdk.ErrNotConfigured
	}
	return st, nil
}

// IssuePassword draws a password from crypto/rand under the configured policy.
func (g *Gateway) IssuePassword(_ context.Context, _ *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
	st, err := g.state()
	if err != nil {
		return nil, err
	}
	pw, err := st.gen.Generate()
	if err != nil {
		return nil, fmt.Errorf("generate password: %w", err)
	}
	return &sdk.IssuePasswordResponse{Password: pw}, nil
}

// SendMessage renders a password mail or a notice, or takes a rendered mail
// as it is, and returns once the SMTP server accepted it.
func (g *Gateway) SendMessage(ctx context.Context, req *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
	st, err := g.state()
	if err != nil {
		return nil, err
	}
	var mail smtpsend.Mail
	switch {
	case req.Password != nil:
		m, err := renderPassword(st.tmpl, req.Recipient, req.Password)
		if err != nil {
			return nil, err
		}
		mail = smtpsend.Mail{To: req.Recipient, Subject: m.Subject, Text: m.Text, HTML: m.HTML}
	case req.Notice != nil:
		m, err := renderNotice(st.tmpl, req.Recipient, req.Notice)
		if err != nil {
			return nil, err
		}
		mail = smtpsend.Mail{To: req.Recipient, Subject: m.Subject, Text: m.Text, HTML: m.HTML}
	case req.Rendered != nil:
		mail = smtpsend.Mail{To: req.Recipient, Subject: req.Rendered.Subject, Text: req.Rendered.TextBody, HTML: req.Rendered.HTMLBody}
	default:
		return nil, fmt.Errorf("%w: message has no content", sdk.ErrInvalidArgument)
	}
	ctx, cancel := answerInTime(ctx)
	defer cancel()
	res, err := st.sender.SendTraced(ctx, mail)
	if err != nil {
		// The host knows the recipient and says it where it may; this
		// error goes to logs and to HTTP answers.
		return nil, fmt.Errorf("send mail to %s: %w", req.Recipient, err)
	}
	return &sdk.SendMessageResponse{ServerReply: res.Reply, Trace: res.Trace}, nil
}

// renderPassword renders the password mail for recipient. Its errors, which
// the host logs and returns to clients, name the problem and the template
// at fault but quote no value: not the password, the recipient nor a trait
// (mailtmpl.Set.Render keeps to the same rule).
func renderPassword(tmpl *mailtmpl.Set, recipient string, p *sdk.PasswordMessage) (mailtmpl.Mail, error) {
	traits, err := traitsOf(p.IdentityTraits)
	if err != nil {
		return mailtmpl.Mail{}, err
	}
	m, err := tmpl.Render(mailtmpl.Data{
		Password:  p.Password,
		ExpiresAt: p.ExpiresAt,
		LoginURL:  p.LoginURL,
		Recipient: recipient,
		Identity:  mailtmpl.Identity{ID: p.IdentityID, Traits: traits},
		// Kratos's own code or link, for a UI that waits for one.
		RecoveryCode: p.RecoveryCode,
		RecoveryURL:  p.RecoveryURL,
	})
	if err != nil {
		// A template that passed the check at Configure failed on this
		// identity's data; retrying will not help.
		return mailtmpl.Mail{}, fmt.Errorf("%w: render password mail: %v", sdk.ErrInvalidArgument, err)
	}
	return m, nil
}

// renderNotice renders the notice n for recipient; its errors follow
// renderPassword's rule.
func renderNotice(tmpl *mailtmpl.Set, recipient string, n *sdk.NoticeMessage) (mailtmpl.Mail, error) {
	traits, err := traitsOf(n.IdentityTraits)
	if err != nil {
		return mailtmpl.Mail{}, err
	}
	m, err := tmpl.RenderNotice(mailtmpl.Notice(n.Kind), mailtmpl.NoticeData{
		At:          n.At,
		Recipient:   recipient,
		Identity:    mailtmpl.Identity{ID: n.IdentityID, Traits: traits},
		LoginURL:    n.LoginURL,
		SettingsURL: n.SettingsURL,
	})
	if errors.Is(err, mailtmpl.ErrUnknownNotice) {
		// The kind comes from the host, not from a user: it is safe to name.
		return mailtmpl.Mail{}, fmt.Errorf("%w: notice kind %q: %v", sdk.ErrInvalidArgument, n.Kind, err)
	}
	if err != nil {
		return mailtmpl.Mail{}, fmt.Errorf("%w: render %s notice: %v", sdk.ErrInvalidArgument, n.Kind, err)
	}
	return m, nil
}

// traitsOf reads an identity's traits, a JSON object or nothing.
func traitsOf(raw json.RawMessage) (map[string]any, error) {
	traits := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &traits); err != nil {
			return nil, fmt.Errorf("%w: identity traits are not a JSON object%s", sdk.ErrInvalidArgument, jsonProblem(err))
		}
	}
	return traits, nil
}

// jsonProblem describes a failure of json.Unmarshal without its message,
// which can quote the input ("invalid character 'x' ...", "number 4711").
func jsonProblem(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf(" (invalid JSON at byte %d)", se.Offset)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		// Value is the kind of JSON value, followed by the number itself
		// for some numbers; only a known kind is shown.
		switch kind, _, _ := strings.Cut(te.Value, " "); kind {
		case "string", "number", "array", "bool":
			return " (it is a JSON " + kind + ")"
		}
	}
	return ""
}

// Render renders the password mail or a notice as SendMessage would,
// without sending.
func (g *Gateway) Render(_ context.Context, req *sdk.RenderRequest) (*sdk.RenderResponse, error) {
	st, err := g.state()
	if err != nil {
		return nil, err
	}
	var m mailtmpl.Mail
	switch {
	case req.Password != nil && req.Notice != nil:
		return nil, fmt.Errorf("%w: render needs one message: a password message or a notice, not both", sdk.ErrInvalidArgument)
	case req.Password != nil:
		m, err = renderPassword(st.tmpl, req.Recipient, req.Password)
	case req.Notice != nil:
		m, err = renderNotice(st.tmpl, req.Recipient, req.Notice)
	default:
		return nil, fmt.Errorf("%w: render needs a password message or a notice", sdk.ErrInvalidArgument)
	}
	if err != nil {
		return nil, err
	}
	return &sdk.RenderResponse{Subject: m.Subject, TextBody: m.Text, HTMLBody: m.HTML, Locale: m.Locale}, nil
}

// Probe sends a short test mail and reports how far the delivery got.
func (g *Gateway) Probe(ctx context.Context, req *sdk.ProbeRequest) (*sdk.ProbeResponse, error) {
	st, err := g.state()
	if err != nil {
		return nil, err
	}
	mail := smtpsend.Mail{
		To:      req.Recipient,
		Subject: "kratos-email-gateway test message",
		Text:    "This is a test message from kratos-email-gateway (gateway smtp test). The SMTP settings work.\n",
	}
	ctx, cancel := answerInTime(ctx)
	defer cancel()
	res, err := st.sender.SendTraced(ctx, mail)
	if err != nil {
		var se *smtpsend.StageError
		if !errors.As(err, &se) {
			// Not an SMTP stage: the request itself is wrong (e.g. the address).
			return nil, err
		}
		return &sdk.ProbeResponse{Err: err.Error(), Trace: se.Trace}, nil
	}
	return &sdk.ProbeResponse{Delivered: true, Trace: res.Trace}, nil
}

// answerMargin is kept back from the caller's deadline so that a slow SMTP
// server ends in an error that names the stage, sent before the host's call
// is cancelled, rather than in a bare gRPC cancellation.
const answerMargin = 250 * time.Millisecond

func answerInTime(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) > 2*answerMargin {
		return context.WithDeadline(ctx, d.Add(-answerMargin))
	}
	return context.WithCancel(ctx)
}

// Health reports whether a config was accepted.
func (g *Gateway) Health(_ context.Context, _ *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	if g.cur.Load() == nil {
		return &sdk.HealthResponse{Detail: "waiting for Configure"}, nil
	}
	return &sdk.HealthResponse{Configured: true, Detail: "ok"}, nil
}
