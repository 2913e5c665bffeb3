package smtpsend

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// scriptedServer is a plaintext SMTP server on loopback that offers
// PIPELINING and answers from a script, for the server behaviours go-smtp
// cannot be made to show: a 354 to DATA after a refused RCPT, a 421 to RSET.
type scriptedServer struct {
	port int
	// answer returns the reply to cmd in the given session (1-based), or
	// "" for the default. A reply starting with "421" closes the session.
	answer func(session int, cmd string) string

	mu       sync.Mutex
	sessions int
	cmds     [][]string // per session
	bodies   []string
	// grouped counts the MAIL FROMs whose DATA had arrived with them, i.e.
	// before the server answered the MAIL FROM.
	grouped int
}

func startScripted(t *testing.T, answer func(session int, cmd string) string) *scriptedServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &scriptedServer{port: l.Addr().(*net.TCPAddr).Port, answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			srv.mu.Lock()
			srv.sessions++
			srv.cmds = append(srv.cmds, nil)
			n := srv.sessions
			srv.mu.Unlock()
			wg.Go(func() { srv.serve(c, n) })
		}
	})
	return srv
}

func (srv *scriptedServer) serve(c net.Conn, session int) {
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	say := func(s string) bool { _, err := c.Write([]byte(s + "\r\n")); return err == nil }
	say("220 scripted ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		srv.mu.Lock()
		srv.cmds[session-1] = append(srv.cmds[session-1], cmd)
		srv.mu.Unlock()
		verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
		if verb == "MAIL" {
			// One write from the client arrives in one segment on loopback.
			ahead, _ := r.Peek(r.Buffered())
			if strings.HasSuffix(string(ahead), "DATA\r\n") {
				srv.mu.Lock()
				srv.grouped++
				srv.mu.Unlock()
			}
		}
		reply := srv.answer(session, verb)
		switch {
		case reply != "":
		case verb == "EHLO":
			reply = "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME"
		case verb == "DATA":
			reply = "354 go ahead"
		case verb == "QUIT":
			say("221 bye")
			return
		default:
			reply = "250 ok"
		}
		if !say(reply) || strings.HasPrefix(reply, "421") {
			return
		}
		if verb == "DATA" && strings.HasPrefix(reply, "354") {
			var body strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return // the client gave up on the body
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(l)
			}
			srv.mu.Lock()
			srv.bodies = append(srv.bodies, body.String())
			srv.mu.Unlock()
			say("250 queued")
		}
	}
}

func (srv *scriptedServer) state() (sessions int, cmds [][]string, bodies []string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.sessions, slices.Clone(srv.cmds), slices.Clone(srv.bodies)
}

func scriptedSender(t *testing.T, srv *scriptedServer) *Sender {
	t.Helper()
	cfg := Config{Host: "127.0.0.1", Port: srv.port, Security: SecurityNone,
		EmailAddress: "noreply@example.com", SenderName: "Example"}
	return newPooledSender(t, cfg, 1, time.Minute, wireModes[1])
}

func TestPipelinedEnvelopeIsOneWrite(t *testing.T) {
	t.Parallel()
	srv := startScripted(t, func(int, string) string { return "" })
	s := scriptedSender(t, srv)
	ctx := testCtx(t, 10*time.Second)

	for i := range 3 {
		sendOK(t, ctx, s, fmt.Sprint("mail ", i))
	}
	sessions, cmds, bodies := srv.state()
	if sessions != 1 || len(bodies) != 3 {
		t.Fatalf("server saw %d sessions and %d bodies, want 1 and 3", sessions, len(bodies))
	}
	var verbs []string
	for _, c := range cmds[0] {
		verbs = append(verbs, strings.FieldsFunc(c, func(r rune) bool { return r == ' ' || r == ':' })[0])
	}
	want := []string{"EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA"}
	if !slices.Equal(verbs, want) {
		t.Errorf("commands %q, want %q", verbs, want)
	}
	srv.mu.Lock()
	grouped := srv.grouped
	srv.mu.Unlock()
	if grouped != 3 {
		t.Errorf("%d of 3 envelopes arrived as one group", grouped)
	}
	if !strings.Contains(cmds[0][1], "BODY=8BITMIME") {
		t.Errorf("MAIL FROM %q lacks BODY=8BITMIME though the server offers it", cmds[0][1])
	}
}

// A server may answer DATA with 354 although it refused the recipient. The
// session then waits for a body: the mail is reported refused, no body is
// sent, and the connection is never used again.
func TestPipelinedRefusedRecipientWith354IsNotReused(t *testing.T) {
	t.Parallel()
	srv := startScripted(t, func(_ int, verb string) string {
		if verb == "RCPT" {
			return "550 5.1.1 no such user"
		}
		return ""
	})
	s := scriptedSender(t, srv)
	ctx := testCtx(t, 10*time.Second)

	for i := range 2 {
		_, err := s.SendTraced(ctx, Mail{To: "nobody@example.org", Subject: "s", Text: "t"})
		stageErr, ok := errors.AsType[*StageError](err)
		if !ok || stageErr.Stage != StageRcptTo || !errors.Is(err, sdk.ErrRejected) || !strings.Contains(err.Error(), "no such user") {
			t.Fatalf("send %d = %v, want the rcpt_to refusal", i, err)
		}
		if last := stageErr.Trace[len(stageErr.Trace)-1]; last.Stage != StageRcptTo {
			t.Errorf("send %d: trace ends with %s, want the refused rcpt_to", i, last.Stage)
		}
	}
	sessions, _, bodies := srv.state()
	if sessions != 2 || len(bodies) != 0 {
		t.Errorf("server saw %d sessions and %d bodies, want 2 (the spoiled session was dropped) and 0", sessions, len(bodies))
	}
}

// A 421 to the pipelined RSET (a server closing an idle session) sends the
// mail on a fresh connection, exactly once.
func TestPipelinedRSETRefusedRetriesOnFreshConnection(t *testing.T) {
	t.Parallel()
	srv := startScripted(t, func(session int, verb string) string {
		if session == 1 && verb == "RSET" {
			return "421 4.4.2 idle too long, closing"
		}
		return ""
	})
	s := scriptedSender(t, srv)
	ctx := testCtx(t, 10*time.Second)

	sendOK(t, ctx, s, "first")
	res := sendOK(t, ctx, s, "second")
	want := []string{StageReuse, StageConnect, StageGreeting, StageHello, StageMailFrom, StageRcptTo, StageData}
	if got := stagesOf(res.Trace); !slices.Equal(got, want) {
		t.Fatalf("stages %v, want %v", got, want)
	}
	if e := res.Trace[0].Err; !strings.Contains(e, "421") {
		t.Errorf("reuse step Err = %q, want the 421", e)
	}
	sessions, cmds, bodies := srv.state()
	if sessions != 2 || len(bodies) != 2 {
		t.Fatalf("server saw %d sessions and %d bodies, want 2 and 2", sessions, len(bodies))
	}
	if !strings.Contains(bodies[0], "Subject: first") || !strings.Contains(bodies[1], "Subject: second") {
		t.Errorf("bodies do not hold first then second:\n%s\n---\n%s", bodies[0], bodies[1])
	}
	if n := len(cmds[0]); cmds[0][n-1] != "RSET" {
		t.Errorf("session 1 ended with %q, want the refused RSET", cmds[0][n-1])
	}
}
