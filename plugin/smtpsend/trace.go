package smtpsend

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/log"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// Result is what a delivery returns.
type Result struct {
	// Reply is the server's answer to the accepted DATA, e.g.
	// "250 2.0.0 OK: queued as 1234".
	Reply string
	// Trace lists the stages in the order they happened. Its last step is
	// the QUIT, whose failure carries an Err but does not fail the
	// delivery, because the server already owns the mail; with WithPool it
	// is the DATA step, and the connection goes back to the pool. A failed
	// step's Err is the text of the *StageError the delivery returned. Only
	// on a pooled connection can a step fail without failing the delivery:
	// a failed reuse step, or a failed step after it, is followed by the
	// steps of the fresh connection the mail was then sent on.
	Trace []sdk.SMTPStep
}

// tracer records the stages of one delivery. It sees the dialogue through
// go-mail's debug-log hook, which reports each command before it is written
// and each successful reply. go-mail v0.8.1 has no other way to tell where it
// is, and returns greeting, EHLO, STARTTLS and AUTH errors without saying
// where they came from: the open step also names the stage of a failed
// handshake. The tracer formats the arguments of MAIL and RCPT only and
// ignores whatever is logged during AUTH, so it never holds a secret even if
// go-mail's redaction missed one.
//
// A tracer belongs to one Send and is used from its goroutine only: go-mail
// calls the hook, our dialer and the TLS callback synchronously, and a pooled
// connection gets the next Send's tracer only through the pool's lock.
type tracer struct {
	addr      string // host:port, for a connect that failed before dialling
	host      string // the name the certificate is verified for
	security  string
	username  string
	authMechs []mail.SMTPAuthType

	steps     []sdk.SMTPStep
	open      bool      // the last step is still running
	started   time.Time // when the open step began
	ended     time.Time // when the open step's own exchange ended, see freeze
	startTLS  bool      // STARTTLS was sent
	lastVerb  string    // of the last command sent
	authOffer string    // the AUTH parameter of the latest EHLO reply
}

var _ log.Logger = (*tracer)(nil)

func (s *Sender) newTracer() *tracer {
	return &tracer{
		addr:      s.addr,
		host:      s.host,
		security:  s.security,
		username:  s.username,
		authMechs: s.mechs,
	}
}

// begin ends the open step as a success and starts the next one.
func (t *tracer) begin(stage, detail string) {
	t.beginAt(stage, detail, time.Now())
}

// beginAt is begin for a step that started at began.
func (t *tracer) beginAt(stage, detail string, began time.Time) {
	t.finish()
	t.steps = append(t.steps, sdk.SMTPStep{Stage: stage, Detail: detail})
	t.open, t.started, t.ended = true, began, time.Time{}
}

// finish stops the clock of the open step.
func (t *tracer) finish() {
	if !t.open {
		return
	}
	end := t.ended
	if end.IsZero() {
		end = time.Now()
	}
	t.steps[len(t.steps)-1].Duration = end.Sub(t.started)
	t.open = false
}

// freeze marks the end of the open step's exchange when go-mail follows a
// failure with commands of its own (RSET after a refused MAIL or RCPT, "*"
// and QUIT after a refused AUTH): their round trips are cleanup, not part of
// the failed stage. An RSET outside the reset/close step means failure only
// because New turns off go-mail's RSET after each sent mail.
func (t *tracer) freeze() {
	if t.open && t.ended.IsZero() {
		t.ended = time.Now()
	}
}

// current is the open step, or nil.
func (t *tracer) current() *sdk.SMTPStep {
	if !t.open {
		return nil
	}
	return &t.steps[len(t.steps)-1]
}

// stage is the stage of the open step, or "" if none is open.
func (t *tracer) stage() string {
	if cur := t.current(); cur != nil {
		return cur.Stage
	}
	return ""
}

// fail records err as the failure of its stage and gives err the trace. When
// go-mail gave up on its own (no STARTTLS or AUTH offered) the failed stage
// never sent a command; it is then appended after the last step, which did
// succeed.
func (t *tracer) fail(err *StageError) {
	if t.stage() != err.Stage {
		detail := ""
		if err.Stage == StageConnect {
			detail = t.addr
		}
		t.begin(err.Stage, detail)
	}
	t.steps[len(t.steps)-1].Err = err.Error()
	t.finish()
	err.Trace = t.steps
}

// handshaken follows a TLS handshake, implicit or after STARTTLS. It runs
// before the handshake's last messages, but every check on the server has
// passed by then.
func (t *tracer) handshaken(cs tls.ConnectionState) {
	cur := t.current()
	if cur == nil || cur.Stage != StageTLS {
		return
	}
	verified := "certificate not verified"
	if len(cs.VerifiedChains) > 0 {
		// The config never skips verification; this only reports it.
		verified = "certificate for " + t.host + " verified"
	}
	detail := fmt.Sprintf("%s, %s, %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), verified)
	if t.startTLS {
		detail = "STARTTLS, " + detail
	}
	cur.Detail = detail
}

// Debugf receives go-mail's debug log of the dialogue.
func (t *tracer) Debugf(l log.Log) {
	if l.Direction == log.DirServerToClient {
		t.reply(l)
		return
	}
	verb, _, _ := strings.Cut(l.Format, " ")
	verb = strings.ToUpper(verb)
	t.lastVerb = verb
	switch verb {
	case "EHLO", "HELO":
		switch {
		case t.startTLS:
			// go-mail repeats EHLO on the new TLS session, and the
			// handshake itself only runs inside the first write of that
			// EHLO: handshake and EHLO cannot be told apart, so both count
			// as the tls stage.
		case t.stage() == StageHello:
			t.current().Detail = verb // HELO after a refused EHLO
		default:
			// smtp.NewClient reads the greeting before go-mail installs this
			// hook, so the first EHLO is the first sign that a 220 arrived;
			// the banner's text is never visible.
			if cur := t.current(); cur != nil && cur.Stage == StageGreeting {
				cur.Detail = "220 banner received"
			}
			t.begin(StageHello, verb)
		}
	case "STARTTLS":
		t.startTLS = true
		t.begin(StageTLS, "STARTTLS")
	case "%S":
		// go-mail sends every AUTH line with the format "%s" so that it can
		// redact it: only the first one starts the stage.
		if t.stage() != StageAuth {
			t.begin(StageAuth, t.authDetail())
		}
	case "MAIL":
		t.begin(StageMailFrom, fmt.Sprintf(l.Format, l.Messages...))
	case "RCPT":
		t.begin(StageRcptTo, fmt.Sprintf(l.Format, l.Messages...))
	case "DATA":
		t.begin(StageData, "DATA")
	case "*":
		t.freeze()
	case "RSET", "QUIT":
		// Send starts the reset/close step itself for the QUIT that ends
		// a delivery without a pool; any other RSET or QUIT is go-mail's
		// own after a refused MAIL, RCPT or AUTH.
		if t.stage() != StageResetClose {
			t.freeze()
		}
	}
}

// reply notes a successful server reply in the open step.
func (t *tracer) reply(l log.Log) {
	cur := t.current()
	if cur == nil || !t.ended.IsZero() || len(l.Messages) != 2 {
		return
	}
	code, okCode := l.Messages[0].(int)
	msg, okMsg := l.Messages[1].(string)
	if !okCode || !okMsg {
		return
	}
	first, rest, _ := strings.Cut(msg, "\n")
	switch {
	case (t.lastVerb == "EHLO" || t.lastVerb == "HELO") && code == 250:
		t.authOffer = ""
		var exts []string
		if rest != "" {
			exts = strings.Split(rest, "\n")
		}
		for _, ext := range exts {
			if k, v, _ := strings.Cut(ext, " "); k == "AUTH" {
				t.authOffer = v
			}
		}
		if cur.Stage == StageHello {
			cur.Detail = fmt.Sprintf("%s: %d %s", t.lastVerb, code, first)
			if len(exts) > 0 {
				cur.Detail += "; extensions: " + strings.Join(exts, ", ")
			}
		}
	case cur.Stage == StageMailFrom, cur.Stage == StageRcptTo, cur.Stage == StageResetClose:
		cur.Detail = fmt.Sprintf("%s: %d %s", cur.Detail, code, first)
	}
	// Replies during AUTH are never kept, and the reply to DATA is only the
	// 354 go-ahead: Send records the final one.
}

// authDetail names the mechanism go-mail is about to use. go-mail redacts
// the whole AUTH line, so the mechanism is derived the way go-mail's
// authTypeSelectPreferred picks it: the first of authMechs that the server
// offered in its latest EHLO reply.
func (t *tracer) authDetail() string {
	offered := strings.Split(t.authOffer, " ")
	for _, pref := range t.authMechs {
		if mech := strings.TrimSuffix(string(pref), "-NOENC"); slices.Contains(offered, mech) {
			return "AUTH " + mech + " as " + t.username
		}
	}
	return "AUTH as " + t.username
}

func (t *tracer) Infof(log.Log)  {}
func (t *tracer) Warnf(log.Log)  {}
func (t *tracer) Errorf(log.Log) {}
