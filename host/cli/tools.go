package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/pluginhost"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// configuredPlugin loads the config and starts a plugin configured with it,
// as serve would; the caller must Kill it.
func configuredPlugin(ctx context.Context, env Env, path string) (*config.Config, *sdk.Client, []string, error) {
	cfg, err := config.Load(path, env.Environ)
	if err != nil {
		return nil, nil, nil, err
	}
	proc, warnings, err := pluginhost.Launch(ctx, launchConfig(cfg, env.Environ, env.Stderr), cfg.PluginConfig)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, proc, warnings, nil
}

// smtpTest sends a test mail and prints each SMTP stage, like the "test
// connection" button of an admin console.
func smtpTest(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("smtp test", flag.ContinueOnError)
	path := fs.String("config", "", "path of gateway.yaml")
	to := fs.String("to", "", "address that receives the test mail")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if *path == "" || *to == "" {
		fmt.Fprintln(env.Stderr, "smtp test: --config FILE and --to ADDR are required")
		return errUsage
	}
	cfg, proc, warnings, err := configuredPlugin(ctx, env, *path)
	if err != nil {
		return err
	}
	defer proc.Kill()
	for _, w := range warnings {
		fmt.Fprintf(env.Stdout, "warning: %s\n", w)
	}
	// The same deadline as a real delivery (timeouts.smtp).
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeouts.SMTP)
	defer cancel()
	resp, err := proc.Probe(ctx, &sdk.ProbeRequest{Recipient: *to})
	if err != nil {
		return err
	}
	for _, s := range resp.Trace {
		status := "ok"
		if s.Err != "" {
			status = "FAILED: " + s.Err
		}
		fmt.Fprintf(env.Stdout, "  %-11s %-60s %8s  %s\n", s.Stage, s.Detail, s.Duration.Round(10*time.Microsecond), status)
	}
	if !resp.Delivered {
		return fmt.Errorf("test mail to %s not delivered: %s", *to, resp.Err)
	}
	fmt.Fprintf(env.Stdout, "accepted: the test mail to %s was delivered to the SMTP server\n", *to)
	return nil
}

// templatePreview renders the temporary password mail, or a notice, with
// sample data.
func templatePreview(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("template preview", flag.ContinueOnError)
	path := fs.String("config", "", "path of gateway.yaml")
	locale := fs.String("locale", "", "the identity's locale trait, e.g. de")
	to := fs.String("to", "alice@example.com", "sample recipient")
	part := fs.String("part", "text", "what to print: text, html or all")
	out := fs.String("out", "", "write to this file instead of stdout")
	method := fs.String("method", "code", "what asked for the reset: code or link (a Kratos recovery, whose code or link the template sees as .RecoveryCode or .RecoveryURL) or admin (neither)")
	notice := fs.String("notice", "", "render this notice instead of the password mail: "+sdk.NoticePasswordChanged+" or "+sdk.NoticeResetVoid)
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	methodSet := false
	fs.Visit(func(f *flag.Flag) { methodSet = methodSet || f.Name == "method" })
	if *path == "" || (*part != "text" && *part != "html" && *part != "all") || (*method != "code" && *method != "link" && *method != "admin") ||
		(*notice != "" && *notice != sdk.NoticePasswordChanged && *notice != sdk.NoticeResetVoid) || (*notice != "" && methodSet) {
		fmt.Fprintln(env.Stderr, "template preview: --config FILE is required; --part is text, html or all; --method is code, link or admin; --notice is "+
			sdk.NoticePasswordChanged+" or "+sdk.NoticeResetVoid+", and a notice has no --method (it carries no code or link)")
		return errUsage
	}
	cfg, proc, _, err := configuredPlugin(ctx, env, *path)
	if err != nil {
		return err
	}
	defer proc.Kill()
	traits := map[string]any{"email": *to, "name": map[string]any{"first": "Alice", "last": "Example"}}
	if *locale != "" {
		traits["locale"] = *locale
	}
	rawTraits, _ := json.Marshal(traits)
	req := &sdk.RenderRequest{Recipient: *to}
	if *notice != "" {
		req.Notice = &sdk.NoticeMessage{
			Kind:           *notice,
			At:             time.Now(),
			IdentityID:     "00000000-0000-4000-8000-000000000000",
			IdentityTraits: rawTraits,
			LoginURL:       cfg.Kratos.LoginUIURL,
			SettingsURL:    cfg.Kratos.SettingsUIURL,
		}
	} else {
		req.Password = &sdk.PasswordMessage{
			Password:       "Sample-Pass-4711",
			ExpiresAt:      time.Now().Add(cfg.Password.TTL),
			LoginURL:       cfg.Kratos.LoginUIURL,
			IdentityID:     "00000000-0000-4000-8000-000000000000",
			IdentityTraits: rawTraits,
		}
		switch *method {
		case "code":
			req.Password.RecoveryCode = "482913"
		case "link":
			req.Password.RecoveryURL = strings.TrimRight(cfg.Kratos.PublicURL, "/") + "/self-service/recovery?flow=00000000-0000-4000-8000-000000000001&token=sample-token"
		}
	}
	resp, err := proc.Render(ctx, req)
	if err != nil {
		return err
	}
	var b strings.Builder
	switch *part {
	case "html":
		b.WriteString(resp.HTMLBody)
	case "text":
		fmt.Fprintf(&b, "Subject: %s\n\n%s", resp.Subject, resp.TextBody)
	default:
		fmt.Fprintf(&b, "Subject: %s\nLocale: %s\n\n--- text ---\n%s\n--- html ---\n%s", resp.Subject, orDefault(resp.Locale), resp.TextBody, resp.HTMLBody)
	}
	if *out == "" {
		_, err = fmt.Fprint(env.Stdout, b.String())
		return err
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write preview: %w", err)
	}
	fmt.Fprintf(env.Stdout, "preview written to %s\n", *out)
	return nil
}

func orDefault(locale string) string {
	if locale == "" {
		return "default"
	}
	return locale
}
