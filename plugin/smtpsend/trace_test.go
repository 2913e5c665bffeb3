package smtpsend

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
	"github.com/wneessen/go-mail/log"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// stages lists the Stage of each step.
func stages(trace []sdk.SMTPStep) []string {
	var out []string
	for _, st := range trace {
		out = append(out, st.Stage)
	}
	return out
}

// step returns the only step of stage in trace.
func step(t *testing.T, trace []sdk.SMTPStep, stage string) sdk.SMTPStep {
	t.Helper()
	i := slices.IndexFunc(trace, func(st sdk.SMTPStep) bool { return st.Stage == stage })
	if i < 0 {
		t.Fatalf("no %s step in %+v", stage, trace)
	}
	return trace[i]
}

// checkNoSecret fails if code shows up in any step, as is or in the base64
// forms AUTH PLAIN and LOGIN would send it in.
func checkNoSecret(t *testing.T, trace []sdk.SMTPStep, code string) {
	t.Helper()
	enc := base64.StdEncoding.EncodeToString
	forms := []string{code, enc([]byte(code)), enc([]byte("\x00" + testUser + "\x00" + code))}
	for _, st := range trace {
		for _, form := range forms {
			if strings.Contains(st.Detail, form) || strings.Contains(st.Err, form) {
				t.Errorf("%s step %+v contains the authorization code", st.Stage, st)
			}
		}
	}
}

// isCipherSuiteName reports whether name is a cipher suite crypto/tls knows,
// rather than the hex fallback of tls.CipherSuiteName.
func isCipherSuiteName(name string) bool {
	for _, suite := range slices.Concat(tls.CipherSuites(), tls.InsecureCipherSuites()) {
		if suite.Name == name {
			return true
		}
	}
	return false
}

func TestSendTracedRecordsEachStage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		security string
		server   smtptest.Options
		cfg      func(*Config)
		// want
		stages     []string
		tlsVersion string // "" if there must be no tls step
		startTLS   bool
	}{
		{
			name:     "tls",
			security: SecurityTLS,
			server:   smtptest.Options{Mode: smtptest.ImplicitTLS},
			stages: []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth,
				StageMailFrom, StageRcptTo, StageData, StageResetClose},
			tlsVersion: "TLS 1.3",
		},
		{
			name:     "starttls",
			security: SecuritySTARTTLS,
			server:   smtptest.Options{Mode: smtptest.StartTLS},
			stages: []string{StageConnect, StageGreeting, StageHello, StageTLS, StageAuth,
				StageMailFrom, StageRcptTo, StageData, StageResetClose},
			tlsVersion: "TLS 1.3",
			startTLS:   true,
		},
		{
			name:     "ssl with a TLS 1.1-only server",
			security: SecuritySSL,
			server:   smtptest.Options{Mode: smtptest.ImplicitTLS, LegacyTLS: true},
			stages: []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth,
				StageMailFrom, StageRcptTo, StageData, StageResetClose},
			tlsVersion: "TLS 1.1",
		},
		{
			name:     "ssl with a modern server",
			security: SecuritySSL,
			server:   smtptest.Options{Mode: smtptest.ImplicitTLS},
			stages: []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth,
				StageMailFrom, StageRcptTo, StageData, StageResetClose},
			tlsVersion: "TLS 1.3",
		},
		{
			name:     "none",
			security: SecurityNone,
			server:   smtptest.Options{Mode: smtptest.Plaintext},
			stages: []string{StageConnect, StageGreeting, StageHello, StageAuth,
				StageMailFrom, StageRcptTo, StageData, StageResetClose},
		},
		{
			name:     "none without authorization code",
			security: SecurityNone,
			server:   smtptest.Options{Mode: smtptest.Plaintext},
			cfg:      func(c *Config) { c.AuthorizationCode = "" },
			stages: []string{StageConnect, StageGreeting, StageHello,
				StageMailFrom, StageRcptTo, StageData, StageResetClose},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, tt.server)
			cfg := config(srv, tt.security)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}

			res, err := newSender(t, cfg).SendTraced(testCtx(t, 10*time.Second),
				Mail{To: "user@example.org", Subject: "s", Text: "t"})
			if err != nil {
				t.Fatalf("SendTraced: %v", err)
			}
			if !strings.HasPrefix(res.Reply, "250 ") || !strings.Contains(res.Reply, "queued") {
				t.Errorf("Reply = %q, want the server's 250 reply to DATA", res.Reply)
			}
			for _, st := range res.Trace {
				t.Logf("%-11s %q", st.Stage, st.Detail)
				if st.Err != "" {
					t.Errorf("%s step has Err %q, want none", st.Stage, st.Err)
				}
				// Every stage waits for the network at least once.
				if st.Duration <= 0 {
					t.Errorf("%s step Duration = %v, want > 0", st.Stage, st.Duration)
				}
			}
			if diff := cmp.Diff(tt.stages, stages(res.Trace)); diff != "" {
				t.Fatalf("stages (-want +got):\n%s", diff)
			}

			type detailWant struct {
				stage, prefix string
				contains      []string
			}
			details := []detailWant{
				{StageConnect, srv.Addr, nil},
				{StageGreeting, "220 ", nil},
				{StageHello, "EHLO: 250 ", []string{"8BITMIME"}},
				{StageMailFrom, "MAIL FROM:<" + testUser + ">", []string{": 250 "}},
				{StageRcptTo, "RCPT TO:<user@example.org>", []string{": 250 "}},
				{StageData, res.Reply, nil},
				{StageResetClose, "QUIT: 221 ", nil},
			}
			if cfg.AuthorizationCode != "" {
				details = append(details, detailWant{StageAuth, "AUTH PLAIN as " + testUser, nil})
			}
			for _, d := range details {
				got := step(t, res.Trace, d.stage).Detail
				if !strings.HasPrefix(got, d.prefix) {
					t.Errorf("%s Detail = %q, want it to start with %q", d.stage, got, d.prefix)
				}
				for _, want := range d.contains {
					if !strings.Contains(got, want) {
						t.Errorf("%s Detail = %q, want it to mention %q", d.stage, got, want)
					}
				}
			}
			if got := step(t, res.Trace, StageData).Detail; got != res.Reply {
				t.Errorf("data Detail = %q, want the reply %q", got, res.Reply)
			}

			if tt.tlsVersion == "" {
				for _, st := range res.Trace {
					if strings.Contains(st.Detail, "TLS 1.") {
						t.Errorf("%s Detail = %q names a TLS version on a plaintext connection", st.Stage, st.Detail)
					}
				}
			} else {
				tlsDetail := step(t, res.Trace, StageTLS).Detail
				prefix := ""
				if tt.startTLS {
					prefix = "STARTTLS, "
				}
				rest, ok := strings.CutPrefix(tlsDetail, prefix+tt.tlsVersion+", ")
				suite, verified, _ := strings.Cut(rest, ", ")
				if !ok || !isCipherSuiteName(suite) || verified != "certificate for 127.0.0.1 verified" {
					t.Errorf("tls Detail = %q, want %q, a cipher suite name and the verified certificate",
						tlsDetail, prefix+tt.tlsVersion)
				}
			}
			checkNoSecret(t, res.Trace, testPassword)
		})
	}
}

func TestSendTracedFailureCarriesTrace(t *testing.T) {
	t.Parallel()
	const wrongPassword = "wrong-authorization-code-42"
	rcpt550 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}

	tests := []struct {
		name     string
		server   *smtptest.Options // nil: nothing listens on the port
		security string
		cfg      func(*Config)
		canceled bool // cancel the Send context up front
		// want
		stages     []string // the last one failed
		lastDetail string   // prefix of the failed step's Detail
	}{
		{
			name:       "connection refused",
			security:   SecurityTLS,
			stages:     []string{StageConnect},
			lastDetail: "127.0.0.1:",
		},
		{
			name:       "context canceled before the dial",
			server:     &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security:   SecurityTLS,
			canceled:   true,
			stages:     []string{StageConnect},
			lastDetail: "127.0.0.1:",
		},
		{
			name:     "tls with a certificate no trusted CA issued",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security: SecurityTLS,
			cfg:      func(c *Config) { c.CAFile = "" },
			stages:   []string{StageConnect, StageTLS},
		},
		{
			name:       "starttls with a certificate no trusted CA issued",
			server:     &smtptest.Options{Mode: smtptest.StartTLS},
			security:   SecuritySTARTTLS,
			cfg:        func(c *Config) { c.CAFile = "" },
			stages:     []string{StageConnect, StageGreeting, StageHello, StageTLS},
			lastDetail: "STARTTLS",
		},
		{
			name:     "starttls against a server without STARTTLS",
			server:   &smtptest.Options{Mode: smtptest.Plaintext},
			security: SecuritySTARTTLS,
			stages:   []string{StageConnect, StageGreeting, StageHello, StageTLS},
		},
		{
			name:       "wrong authorization code over tls",
			server:     &smtptest.Options{Mode: smtptest.ImplicitTLS},
			security:   SecurityTLS,
			cfg:        func(c *Config) { c.AuthorizationCode = wrongPassword },
			stages:     []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth},
			lastDetail: "AUTH PLAIN as " + testUser,
		},
		{
			name:       "wrong authorization code over starttls",
			server:     &smtptest.Options{Mode: smtptest.StartTLS},
			security:   SecuritySTARTTLS,
			cfg:        func(c *Config) { c.AuthorizationCode = wrongPassword },
			stages:     []string{StageConnect, StageGreeting, StageHello, StageTLS, StageAuth},
			lastDetail: "AUTH PLAIN as " + testUser,
		},
		{
			name:       "wrong authorization code in plaintext",
			server:     &smtptest.Options{Mode: smtptest.Plaintext},
			security:   SecurityNone,
			cfg:        func(c *Config) { c.AuthorizationCode = wrongPassword },
			stages:     []string{StageConnect, StageGreeting, StageHello, StageAuth},
			lastDetail: "AUTH PLAIN as " + testUser,
		},
		{
			name:     "550 on RCPT TO",
			server:   &smtptest.Options{Mode: smtptest.ImplicitTLS, RcptErr: rcpt550},
			security: SecurityTLS,
			stages: []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth,
				StageMailFrom, StageRcptTo},
			lastDetail: "RCPT TO:<user@example.org>",
		},
		{
			name:     "connection dropped during DATA",
			server:   &smtptest.Options{Mode: smtptest.Plaintext, DropInData: true},
			security: SecurityNone,
			stages: []string{StageConnect, StageGreeting, StageHello, StageAuth,
				StageMailFrom, StageRcptTo, StageData},
			lastDetail: "DATA",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var cfg Config
			if tt.server != nil {
				cfg = config(smtptest.Start(t, *tt.server), tt.security)
			} else {
				cfg = closedPortConfig(t, tt.security)
			}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if tt.canceled {
				cancel()
			}

			res, err := newSender(t, cfg).SendTraced(ctx, Mail{To: "user@example.org", Subject: "s", Text: "t"})

			stageErr, ok := errors.AsType[*StageError](err)
			if !ok {
				t.Fatalf("SendTraced error = %v (%T), want a *StageError", err, err)
			}
			if res.Reply != "" || res.Trace != nil {
				t.Errorf("Result = %+v, want it empty on failure", res)
			}
			trace := stageErr.Trace
			for _, st := range trace {
				t.Logf("%-11s %q %q", st.Stage, st.Detail, st.Err)
				if st.Duration < 0 {
					t.Errorf("%s step Duration = %v, want >= 0", st.Stage, st.Duration)
				}
			}
			if diff := cmp.Diff(tt.stages, stages(trace)); diff != "" {
				t.Fatalf("stages (-want +got):\n%s", diff)
			}
			last := trace[len(trace)-1]
			if last.Stage != stageErr.Stage || last.Err != stageErr.Error() {
				t.Errorf("failed step %+v, want stage %q with Err %q", last, stageErr.Stage, stageErr.Error())
			}
			if !strings.HasPrefix(last.Detail, tt.lastDetail) {
				t.Errorf("failed step Detail = %q, want it to start with %q", last.Detail, tt.lastDetail)
			}
			for _, st := range trace[:len(trace)-1] {
				if st.Err != "" {
					t.Errorf("%s step before the failure has Err %q", st.Stage, st.Err)
				}
			}
			checkNoSecret(t, trace, cfg.AuthorizationCode)
			checkNoSecret(t, trace, testPassword)
		})
	}
}

// TestTracerKeepsNothingOfAuth feeds the tracer an AUTH exchange that go-mail
// failed to redact: the tracer must not rely on that redaction.
func TestTracerKeepsNothingOfAuth(t *testing.T) {
	t.Parallel()
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPassword))
	tests := []struct {
		name   string
		offer  string // AUTH line of the EHLO reply
		events []log.Log
		mech   string
	}{
		{
			name:  "AUTH PLAIN with initial response",
			offer: "AUTH LOGIN PLAIN",
			mech:  "PLAIN",
			events: []log.Log{
				{Direction: log.DirClientToServer, Format: "%s", Messages: []any{"AUTH PLAIN " + plain}},
				{Direction: log.DirServerToClient, Format: "%d %s", Messages: []any{535, "5.7.8 bad " + testPassword}},
				{Direction: log.DirClientToServer, Format: "*"},
				{Direction: log.DirServerToClient, Format: "%d %s", Messages: []any{501, testPassword}},
				{Direction: log.DirClientToServer, Format: "QUIT"},
				{Direction: log.DirServerToClient, Format: "%d %s", Messages: []any{221, testPassword}},
			},
		},
		{
			name:  "AUTH LOGIN challenges",
			offer: "AUTH LOGIN",
			mech:  "LOGIN",
			events: []log.Log{
				{Direction: log.DirClientToServer, Format: "%s", Messages: []any{"AUTH LOGIN"}},
				{Direction: log.DirServerToClient, Format: "%d %s", Messages: []any{334, "VXNlcm5hbWU6"}},
				{Direction: log.DirClientToServer, Format: "%s", Messages: []any{testUser}},
				{Direction: log.DirServerToClient, Format: "%d %s", Messages: []any{334, testPassword}},
				{Direction: log.DirClientToServer, Format: "%s", Messages: []any{testPassword}},
				{Direction: log.DirServerToClient, Format: "%d %s", Messages: []any{535, testPassword}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := &tracer{username: testUser, authMechs: authMechs(SecurityTLS)}
			tr.begin(StageGreeting, "")
			tr.Debugf(log.Log{Direction: log.DirClientToServer, Format: "EHLO %s", Messages: []any{"client"}})
			tr.Debugf(log.Log{Direction: log.DirServerToClient, Format: "%d %s",
				Messages: []any{250, "localhost\n" + tt.offer}})
			for _, l := range tt.events {
				tr.Debugf(l)
			}
			stageErr := &StageError{Stage: StageAuth, Err: errors.New("refused")}
			tr.fail(stageErr)

			if diff := cmp.Diff([]string{StageGreeting, StageHello, StageAuth}, stages(stageErr.Trace)); diff != "" {
				t.Fatalf("stages (-want +got):\n%s", diff)
			}
			if got, want := step(t, stageErr.Trace, StageAuth).Detail, "AUTH "+tt.mech+" as "+testUser; got != want {
				t.Errorf("auth Detail = %q, want %q", got, want)
			}
			checkNoSecret(t, stageErr.Trace, testPassword)
		})
	}
}
