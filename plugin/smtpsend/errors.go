package smtpsend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"

	mail "github.com/wneessen/go-mail"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Stages of one delivery, as reported in StageError.Stage.
const (
	StageToken      = "token"       // an OAuth2 access token for smtp.auth: xoauth2
	StageConnect    = "connect"     // TCP connect, or the connection broke before MAIL FROM
	StageReuse      = "reuse"       // NOOP on a pooled connection, see WithPool
	StageTLS        = "tls"         // TLS handshake, implicit or after STARTTLS
	StageGreeting   = "greeting"    // the server's 220 banner
	StageHello      = "hello"       // EHLO/HELO
	StageAuth       = "auth"        // SMTP AUTH
	StageMailFrom   = "mail_from"   // MAIL FROM
	StageRcptTo     = "rcpt_to"     // RCPT TO
	StageData       = "data"        // DATA and the message content
	StageResetClose = "reset/close" // QUIT ending a delivery without WithPool
)

// StageError is a failed delivery: the SMTP stage that failed and whether a
// later retry may succeed. It matches sdk.ErrUnavailable when Temporary,
// otherwise sdk.ErrRejected (the server refused for good, or does not fit
// the config: see serverMisfit) or sdk.ErrInvalidArgument (the mail itself
// cannot be sent, or the client cannot be set up).
type StageError struct {
	Stage     string
	Temporary bool
	Err       error
	// Trace lists the stages up to and including the failed one, whose
	// Err is this error's text. It is nil for an error built outside a
	// delivery.
	Trace []sdk.SMTPStep

	// sentinel overrides the sdk sentinel implied by Temporary.
	sentinel error
	// unsent marks a failure before the body's final dot was written, on
	// the pipelined path (go-mail's path tells by mail.SendError.Reason):
	// the server cannot have the mail.
	unsent bool
}

func (e *StageError) Error() string { return "smtp " + e.Stage + ": " + e.Err.Error() }

// Unwrap returns the sdk sentinel and the cause, so errors.Is and errors.As
// see both (e.g. sdk.ErrUnavailable and *tls.CertificateVerificationError).
func (e *StageError) Unwrap() []error { return []error{e.kind(), e.Err} }

func (e *StageError) kind() error {
	switch {
	case e.sentinel != nil:
		return e.sentinel
	case e.Temporary:
		return sdk.ErrUnavailable
	default:
		return sdk.ErrRejected
	}
}

// failure classifies err by the server's reply: 5xx is final, while 4xx,
// network trouble and an expired ctx are worth a retry.
func failure(ctx context.Context, stage string, err error) *StageError {
	if ctxErr := context.Cause(ctx); ctxErr != nil {
		return &StageError{Stage: stage, Temporary: true, Err: fmt.Errorf("%w: %w", ctxErr, err)}
	}
	return &StageError{Stage: stage, Temporary: replyCode(err) < 500, Err: err}
}

// misconfigured is a failure on this side of the connection (the mail or
// the client setup) that repeats until the operator changes the config, so
// it must not be retried blindly.
func misconfigured(stage string, err error) *StageError {
	return &StageError{Stage: stage, Err: err, sentinel: sdk.ErrInvalidArgument}
}

// serverMisfit is a fault of the SMTP side that repeats until the operator
// changes the config or the server: a certificate that does not verify, a
// server that does not speak the configured TLS, no STARTTLS or AUTH
// offered. Final like a 5xx reply (sdk.ErrRejected), so Kratos gets the 502
// of every other SMTP-side fault, not the 422 of a message that was wrong.
func serverMisfit(stage string, err error) *StageError {
	return &StageError{Stage: stage, Err: err}
}

// replyCode is the SMTP reply code carried by err, or 0 if the server did not
// answer (the connection broke or timed out).
func replyCode(err error) int {
	if tpErr, ok := errors.AsType[*textproto.Error](err); ok {
		return tpErr.Code
	}
	if sendErr, ok := errors.AsType[*mail.SendError](err); ok {
		return sendErr.ErrorCode()
	}
	return 0
}

// tlsProblem explains TLS failures that no retry fixes; ok is false for
// anything else, such as a connection reset during the handshake.
func tlsProblem(security string, err error) (explained error, ok bool) {
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return fmt.Errorf("the server certificate did not verify: %w; set smtp.ca_file to the CA that issued it, "+
			"or fix the server certificate", err), true
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		if security == SecuritySTARTTLS {
			return fmt.Errorf("the server accepted STARTTLS but did not speak TLS: %w", err), true
		}
		return fmt.Errorf("the server did not speak TLS: %w; if it uses STARTTLS set smtp.security: starttls, "+
			"if it is a plaintext relay on this machine set smtp.security: none", err), true
	}
	// crypto/tls reports alerts from the server only as this OpError.
	if opErr, ok := errors.AsType[*net.OpError](err); ok && opErr.Op == "remote error" {
		hint := ""
		// ssl is implicit TLS, so it only helps servers configured for tls.
		if security == SecurityTLS && strings.Contains(err.Error(), "protocol version") {
			hint = "; if the server only supports TLS 1.0 or 1.1 set smtp.security: ssl"
		}
		return fmt.Errorf("the server refused the TLS handshake: %w%s", err, hint), true
	}
	return nil, false
}

// handshakeFailure classifies an error of go-mail's dial phase (greeting,
// EHLO, STARTTLS, AUTH) given how far the dialogue got.
func (s *Sender) handshakeFailure(ctx context.Context, t *tracer, err error) *StageError {
	if stageErr, ok := errors.AsType[*StageError](err); ok {
		return stageErr // from our dialer: connect or implicit TLS
	}
	if explained, ok := tlsProblem(s.security, err); ok {
		return serverMisfit(StageTLS, explained)
	}
	stage := t.stage()
	if stage == "" {
		stage = StageGreeting
	}
	if isLocal(err) {
		// go-mail gave up on its own after the server answered: before
		// STARTTLS that is a missing STARTTLS, otherwise a missing AUTH.
		if s.security == SecuritySTARTTLS && !t.startTLS {
			return serverMisfit(StageTLS, fmt.Errorf("%w; if the server speaks TLS from the first byte "+
				"set smtp.security: tls", err))
		}
		return serverMisfit(StageAuth, s.missingAuth(t.authOffer, err))
	}
	switch code := replyCode(err); {
	case stage == StageAuth && code >= 500 && s.tokens != nil:
		err = fmt.Errorf("the server refused the access token for %q: %w", s.username, err)
	case stage == StageAuth && code >= 500:
		err = fmt.Errorf("the server refused the login of %q: %w; check smtp.username and smtp.authorization_code",
			s.username, err)
	case stage == StageGreeting && code == 0 && (s.security == SecuritySTARTTLS || s.security == SecurityNone) &&
		(isTimeout(err) || ctx.Err() != nil):
		err = fmt.Errorf("the server sent no greeting: %w; if it expects TLS from the first byte (usually port 465) "+
			"set smtp.security: tls", err)
	}
	return failure(ctx, stage, err)
}

// missingAuth explains go-mail's refusal to sign in: the server offered no
// AUTH, or not the mechanism smtp.auth asks for.
func (s *Sender) missingAuth(offer string, err error) error {
	offered := "no AUTH at all"
	if offer != "" {
		offered = "AUTH " + offer
	}
	switch {
	case s.tokens != nil:
		return fmt.Errorf("%w: the server offers %s, not XOAUTH2; check smtp.host and smtp.port "+
			"(Microsoft 365: smtp.office365.com, 587, starttls; Google: smtp.gmail.com, 465, tls) and smtp.security", err, offered)
	case len(s.mechs) == 1:
		return fmt.Errorf("%w: the server offers %s; set smtp.auth to a mechanism it offers, or leave smtp.auth out "+
			"to use the best one (many servers offer AUTH only over TLS: check smtp.security)", err, offered)
	}
	return fmt.Errorf("%w; check smtp.security (many servers offer AUTH only over TLS), "+
		"or leave smtp.authorization_code empty if the server needs no login", err)
}

// tokenRefused reports whether the server refused an XOAUTH2 sign-in in a
// way a fresh token may cure: 535, or an enhanced status 5.7.x (Google
// 535 5.7.8, Microsoft 535 5.7.3 or 5.7.139).
func tokenRefused(err *StageError) bool {
	if err.Stage != StageAuth {
		return false
	}
	code := replyCode(err.Err)
	if code == 535 {
		return true
	}
	if tpErr, ok := errors.AsType[*textproto.Error](err.Err); ok && code >= 500 {
		return strings.HasPrefix(strings.TrimSpace(tpErr.Msg), "5.7.")
	}
	return false
}

// isLocal reports whether err is go-mail's own refusal rather than a server
// reply or a network failure.
func isLocal(err error) bool {
	if _, ok := errors.AsType[*textproto.Error](err); ok {
		return false
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return false
	}
	return !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed)
}

func isTimeout(err error) bool {
	netErr, ok := errors.AsType[net.Error](err)
	return ok && netErr.Timeout()
}

// sendFailure classifies an error of the MAIL FROM / RCPT TO / DATA phase,
// where go-mail reports a *mail.SendError naming the failed command.
func sendFailure(ctx context.Context, err error) *StageError {
	sendErr, ok := errors.AsType[*mail.SendError](err)
	if !ok {
		return failure(ctx, StageData, err)
	}
	stage := StageData
	switch sendErr.Reason {
	case mail.ErrConnCheck:
		stage = StageConnect
	case mail.ErrGetSender, mail.ErrSMTPMailFrom:
		stage = StageMailFrom
	case mail.ErrGetRcpts, mail.ErrSMTPRcptTo:
		stage = StageRcptTo
	case mail.ErrSMTPReset:
		stage = StageResetClose
	}
	if context.Cause(ctx) != nil {
		return failure(ctx, stage, sendErr)
	}
	// Without a reply code the connection broke mid-command: worth a retry,
	// although go-mail's IsTemp only looks at 4xx replies.
	return &StageError{Stage: stage, Temporary: sendErr.IsTemp() || sendErr.ErrorCode() == 0, Err: sendErr}
}
