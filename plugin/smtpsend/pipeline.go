package smtpsend

import (
	"context"
	"fmt"
	"strings"

	mail "github.com/wneessen/go-mail"
)

// pipelines reports whether conn's server takes MAIL FROM, RCPT TO and DATA
// in one write (RFC 2920 PIPELINING). Sending them one by one costs two
// extra round trips per mail, which on a link with real latency is most of
// the time a pooled connection spends on a mail. Servers that do not
// advertise the extension (Mailpit, some relays) get one command at a time.
func (s *Sender) pipelines(conn *connection) bool {
	if s.noPipelining {
		return false
	}
	ok, _ := conn.smtp.Extension("PIPELINING")
	return ok
}

// transactPipelined delivers msg on conn with the commands of the envelope
// in one write: RSET (when reset is set, on a reused connection), MAIL FROM,
// RCPT TO and DATA. The RSET clears whatever the previous transaction left
// and doubles as the liveness check that NOOP is on a server without
// PIPELINING, at no extra round trip: a dead or closing connection fails it
// before the body was sent.
//
// The body goes out only after every reply of the group came back positive,
// so a failure before that point leaves the mail undelivered for certain
// (StageError.unsent when the connection broke, or the server's refusal).
// When the server refused part of the envelope and still answered DATA with
// 354, the session waits for a body we will not send: the connection is
// spoiled and never reused.
func (s *Sender) transactPipelined(ctx context.Context, conn *connection, msg *mail.Msg, reset bool) (string, *StageError) {
	t := conn.trace
	if !reset {
		// As in transact: the time between the handshake and MAIL FROM
		// belongs to no stage.
		t.finish()
	}
	if err := conn.smtp.UpdateDeadline(stepTimeout(ctx)); err != nil {
		return "", unsent(ctx, StageMailFrom, err)
	}
	from, err := msg.GetSender(false)
	if err != nil {
		return "", misconfigured(StageMailFrom, fmt.Errorf("the mail has no sender: %w", err))
	}
	rcpts, err := msg.GetRecipients()
	if err != nil || len(rcpts) != 1 {
		return "", misconfigured(StageRcptTo, fmt.Errorf("the mail must have exactly one recipient, has %d: %v", len(rcpts), err))
	}
	mailCmd := "MAIL FROM:" + from
	if ok, _ := conn.smtp.Extension("8BITMIME"); ok {
		mailCmd += " BODY=8BITMIME"
	}
	if ok, _ := conn.smtp.Extension("SMTPUTF8"); ok {
		mailCmd += " SMTPUTF8"
	}
	rcptCmd := "RCPT TO:" + rcpts[0]

	// detail is what the trace shows for the command's step.
	type command struct{ stage, cmd, detail string }
	var group []command
	if reset {
		group = append(group, command{StageReuse, "RSET", "pooled connection, RSET pipelined with the envelope"})
	}
	group = append(group,
		command{StageMailFrom, mailCmd, mailCmd + " (pipelined with RCPT TO and DATA)"},
		command{StageRcptTo, rcptCmd, rcptCmd},
		command{StageData, "DATA", "DATA"})
	w := conn.smtp.Text.W
	for _, c := range group {
		_, _ = w.WriteString(c.cmd)
		_, _ = w.WriteString("\r\n")
	}
	if reset {
		t.current().Detail = group[0].detail // the reuse step sendReused began
	} else {
		t.begin(group[0].stage, group[0].detail)
	}
	if err := w.Flush(); err != nil {
		return "", unsent(ctx, t.stage(), err)
	}

	// Every reply is read, also after a refusal, so that the session stays
	// in step with the server. The first refusal is the delivery's error
	// and ends the trace: the replies after it are the server's consequent
	// refusals of the rest of the group.
	var refused *StageError
	for i, c := range group {
		if i > 0 && refused == nil {
			t.begin(c.stage, c.detail)
		}
		want := 250
		switch c.stage {
		case StageRcptTo:
			want = 25 // 251 (user not local; will forward) is fine too
		case StageData:
			want = 354
		}
		code, text, err := conn.smtp.Text.ReadResponse(want)
		switch {
		case code == 0:
			// No reply: the connection broke or timed out, before the
			// body was sent.
			return "", unsent(ctx, c.stage, err)
		case c.stage == StageReuse && err != nil:
			// The server did answer, but a connection that refuses RSET
			// (often a 421 before closing an idle session) is no place
			// for a mail, which it has not seen yet.
			conn.spoiled = true
			return "", unsent(ctx, StageReuse, fmt.Errorf("RSET: %w", err))
		case refused != nil:
			if c.stage == StageData && err == nil {
				conn.spoiled = true // 354 after a refused envelope
			}
		case err != nil && code == 421:
			// The server is closing the session, not refusing the mail.
			conn.spoiled = true
			return "", unsent(ctx, c.stage, fmt.Errorf("%s: %w", verbOf(c.cmd), err))
		case err != nil:
			refused = failure(ctx, c.stage, fmt.Errorf("%s refused: %w", verbOf(c.cmd), err))
		case c.stage == StageMailFrom || c.stage == StageRcptTo:
			first, _, _ := strings.Cut(text, "\n")
			t.current().Detail = fmt.Sprintf("%s: %d %s", t.current().Detail, code, first)
		}
	}
	if refused != nil {
		return "", refused
	}

	body := conn.smtp.Text.DotWriter()
	if _, err := msg.WriteTo(body); err != nil {
		// The final dot was not written, so the server drops whatever
		// part of the body it got.
		conn.spoiled = true
		return "", unsent(ctx, StageData, fmt.Errorf("write the message: %w", err))
	}
	if err := body.Close(); err != nil {
		// The final dot may have reached the server: never sent again.
		return "", failure(ctx, StageData, fmt.Errorf("end the message: %w", err))
	}
	code, text, err := conn.smtp.Text.ReadResponse(250)
	if err != nil {
		if code == 0 {
			// The server may have accepted the mail just before the
			// connection dropped; the caller decides about sending again.
			return "", failure(ctx, StageData, fmt.Errorf("no reply to the message: %w", err))
		}
		return "", failure(ctx, StageData, fmt.Errorf("message refused: %w", err))
	}
	first, _, _ := strings.Cut(text, "\n")
	reply := fmt.Sprintf("%d %s", code, first)
	t.current().Detail = reply
	return reply, nil
}

// unsent is a failure of a pipelined transaction before the body's final
// dot was written: the server cannot have the mail.
func unsent(ctx context.Context, stage string, err error) *StageError {
	stageErr := failure(ctx, stage, err)
	if replyCode(err) == 0 {
		stageErr.Temporary = true
	}
	stageErr.unsent = true
	return stageErr
}

func verbOf(cmd string) string {
	verb, _, _ := strings.Cut(cmd, ":")
	return verb
}
