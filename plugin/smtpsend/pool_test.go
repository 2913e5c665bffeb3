package smtpsend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

func newPooledSender(t testing.TB, cfg Config, size int, idle time.Duration, m wireMode) *Sender {
	t.Helper()
	s, err := New(cfg, WithPool(size, idle))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.noPipelining = !m.pipelining
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// wireMode is how a pooled Sender talks to a server: the test servers offer
// PIPELINING, so the one-command-at-a-time path that servers without it
// (Mailpit) get is reached by switching pipelining off in the Sender.
type wireMode struct {
	name       string
	pipelining bool
	fresh      []string // the stages of a mail on a fresh connection
	reused     []string // on a reused one
}

var wireModes = []wireMode{
	{
		name:   "one command at a time",
		fresh:  []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth, StageMailFrom, StageRcptTo, StageData},
		reused: []string{StageReuse, StageMailFrom, StageRcptTo, StageData},
	},
	{
		name:       "pipelined",
		pipelining: true,
		fresh:      []string{StageConnect, StageTLS, StageGreeting, StageHello, StageAuth, StageMailFrom, StageRcptTo, StageData},
		reused:     []string{StageReuse, StageMailFrom, StageRcptTo, StageData},
	},
}

// forEachWireMode runs test as a parallel subtest per wireMode.
func forEachWireMode(t *testing.T, test func(t *testing.T, m wireMode)) {
	for _, m := range wireModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			test(t, m)
		})
	}
}

func stagesOf(trace []sdk.SMTPStep) []string {
	stages := make([]string, len(trace))
	for i, step := range trace {
		stages[i] = step.Stage
	}
	return stages
}

// subjects counts the received mails by subject, to catch lost and
// duplicated ones.
func subjects(t *testing.T, mails []smtptest.Received) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, m := range mails {
		got[parseMail(t, m.Data).subject]++
	}
	return got
}

func sendOK(t *testing.T, ctx context.Context, s *Sender, subject string) Result {
	t.Helper()
	res, err := s.SendTraced(ctx, Mail{To: "user@example.org", Subject: subject, Text: "t"})
	if err != nil {
		t.Fatalf("send %q: %v", subject, err)
	}
	return res
}

func TestWithPoolRejectsBadArguments(t *testing.T) {
	t.Parallel()
	cfg := Config{Host: "127.0.0.1", EmailAddress: testUser, SenderName: "x"}
	for _, opt := range []Option{WithPool(0, time.Minute), WithPool(1, 0)} {
		if _, err := New(cfg, opt); err == nil {
			t.Error("New accepted an invalid WithPool")
		}
	}
}

func TestPoolReusesOneAuthenticatedConnection(t *testing.T) {
	t.Parallel()
	forEachWireMode(t, func(t *testing.T, m wireMode) {
		srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
		s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Minute, m)
		ctx := testCtx(t, 30*time.Second)

		for i := range 20 {
			res := sendOK(t, ctx, s, fmt.Sprint("mail ", i))
			want := m.reused
			if i == 0 {
				want = m.fresh
			}
			if got := stagesOf(res.Trace); !slices.Equal(got, want) {
				t.Fatalf("send %d: stages %v, want %v", i, got, want)
			}
			// Back-to-back sends reuse the connection without a NOOP; a
			// pipelining server gets an RSET with the envelope instead.
			wantReuse := "used without NOOP"
			if m.pipelining {
				wantReuse = "RSET pipelined with the envelope"
			}
			if i > 0 && !strings.Contains(res.Trace[0].Detail, wantReuse) {
				t.Errorf("send %d: reuse detail %q, want %q", i, res.Trace[0].Detail, wantReuse)
			}
			// The trace ends with the accepted DATA: no RSET after a
			// delivered mail.
			last := res.Trace[len(res.Trace)-1]
			if !strings.HasPrefix(last.Detail, "250 ") || last.Err != "" || last.Detail != res.Reply {
				t.Errorf("send %d: last step %+v, want the accepted DATA with the reply %q", i, last, res.Reply)
			}
			if strings.Contains(fmt.Sprint(res.Trace), testPassword) {
				t.Fatalf("send %d: trace holds the password", i)
			}
		}
		st := srv.State()
		if st.Sessions != 1 || st.Attempts != 1 || len(st.Mails) != 20 {
			t.Errorf("server saw %d sessions, %d AUTH attempts, %d mails; want 1, 1, 20", st.Sessions, st.Attempts, len(st.Mails))
		}
		if got := subjects(t, st.Mails); len(got) != 20 {
			t.Errorf("server got %d distinct mails, want 20", len(got))
		}
	})
}

func TestPoolConcurrentSendersShareBoundedConnections(t *testing.T) {
	t.Parallel()
	forEachWireMode(t, testPoolConcurrentSenders)
}

func testPoolConcurrentSenders(t *testing.T, m wireMode) {
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	s := newPooledSender(t, config(srv, SecurityTLS), 3, time.Minute, m)
	ctx := testCtx(t, 60*time.Second)

	const senders, each = 10, 5
	errs := make([]error, senders*each)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for j := range each {
				n := i*each + j
				_, errs[n] = s.Send(ctx, Mail{To: "user@example.org", Subject: fmt.Sprint("mail ", n), Text: "t"})
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Send: %v", err)
	}
	st := srv.State()
	got := subjects(t, st.Mails)
	for n := range senders * each {
		if c := got[fmt.Sprint("mail ", n)]; c != 1 {
			t.Errorf("mail %d received %d times, want once", n, c)
		}
	}
	if len(st.Mails) != senders*each {
		t.Errorf("server got %d mails, want %d", len(st.Mails), senders*each)
	}
	if st.Sessions > 3 {
		t.Errorf("server saw %d sessions, want at most the pool size 3", st.Sessions)
	}
}

// A reused connection that turns out dead never loses a mail: it fails
// before the server could have the mail, and the mail goes out once on a
// fresh connection.
//
// Dropped while it sat in the pool: checked with NOOP (idle long enough),
// the dead connection is found before any mail command; reused right away
// without a NOOP, it breaks at MAIL FROM; pipelined, the RSET ahead of the
// envelope finds it, however long it was idle. Failing at MAIL FROM: the
// server dropped the connection, or answered 421 as a server closing a
// session that sent enough mails does (the second MAIL FROM is the first on
// the reused connection).
func TestPoolSendsOnceMoreWhenReusedConnectionFails(t *testing.T) {
	t.Parallel()
	serial, pipelined := wireModes[0], wireModes[1]
	dropMail := smtptest.Options{Drop: func(cmd string, n int) bool { return cmd == "MAIL" && n == 2 }}
	refuseMail := smtptest.Options{MailErr: func(n int) *smtp.SMTPError {
		if n == 2 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many messages, closing"}
		}
		return nil
	}}
	type testCase struct {
		name       string
		mode       wireMode
		opts       smtptest.Options
		kick       bool // the server closes the pooled connection between the sends
		checkAfter time.Duration
		want       []string
		failedStep int    // the step that shows the failure
		wantErr    string // in that step's Err
		mailCmds   int    // MAIL FROMs the server saw
	}
	tests := []testCase{
		{"dropped while idle, checked with NOOP", serial, smtptest.Options{}, true, 0, append([]string{StageReuse}, serial.fresh...), 0, "", 2},
		{"dropped while idle, reused without NOOP", serial, smtptest.Options{}, true, checkAfter, append([]string{StageReuse, StageMailFrom}, serial.fresh...), 1, "", 2},
		{"dropped while idle, pipelined RSET", pipelined, smtptest.Options{}, true, checkAfter, append([]string{StageReuse}, pipelined.fresh...), 0, "", 2},
		{"dropped while idle, pipelined RSET after idle", pipelined, smtptest.Options{}, true, 0, append([]string{StageReuse}, pipelined.fresh...), 0, "", 2},
	}
	for _, m := range wireModes {
		tests = append(tests,
			testCase{"dropped at MAIL FROM, " + m.name, m, dropMail, false, checkAfter, append([]string{StageReuse, StageMailFrom}, m.fresh...), 1, "", 3},
			testCase{"421 at MAIL FROM, " + m.name, m, refuseMail, false, checkAfter, append([]string{StageReuse, StageMailFrom}, m.fresh...), 1, "421", 3})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			opts.Mode = smtptest.ImplicitTLS
			srv := smtptest.Start(t, opts)
			s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Minute, tt.mode)
			s.pool.checkAfter = tt.checkAfter
			ctx := testCtx(t, 30*time.Second)

			sendOK(t, ctx, s, "first")
			if tt.kick {
				if n := srv.Kick(); n != 1 {
					t.Fatalf("Kick closed %d connections, want the pooled one", n)
				}
			}
			res := sendOK(t, ctx, s, "second")
			if got := stagesOf(res.Trace); !slices.Equal(got, tt.want) {
				t.Fatalf("stages %v, want %v", got, tt.want)
			}
			if e := res.Trace[tt.failedStep].Err; e == "" || !strings.Contains(e, tt.wantErr) {
				t.Errorf("step %+v does not show the failure %q", res.Trace[tt.failedStep], tt.wantErr)
			}
			st := srv.State()
			if got := subjects(t, st.Mails); got["first"] != 1 || got["second"] != 1 || len(st.Mails) != 2 {
				t.Errorf("received %v, want first and second once each", got)
			}
			if st.Sessions != 2 || st.MailCmds != tt.mailCmds {
				t.Errorf("server saw %d sessions and %d MAIL FROM, want 2 and %d", st.Sessions, st.MailCmds, tt.mailCmds)
			}
		})
	}
}

func TestPoolNeverRetriesOnFreshConnection(t *testing.T) {
	t.Parallel()
	forEachWireMode(t, testPoolNeverRetriesOnFresh)
}

func testPoolNeverRetriesOnFresh(t *testing.T, m wireMode) {
	srv := smtptest.Start(t, smtptest.Options{
		Mode: smtptest.ImplicitTLS,
		Drop: func(cmd string, n int) bool { return cmd == "MAIL" && n == 1 },
	})
	s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Minute, m)
	ctx := testCtx(t, 30*time.Second)

	_, err := s.Send(ctx, Mail{To: "user@example.org", Subject: "s", Text: "t"})
	if stageErr, ok := errors.AsType[*StageError](err); !ok || stageErr.Stage != StageMailFrom || !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Send = %v, want a temporary mail_from failure", err)
	}
	if st := srv.State(); st.Sessions != 1 || st.MailCmds != 1 || len(st.Mails) != 0 {
		t.Errorf("server saw %d sessions, %d MAIL FROM, %d mails; want 1, 1, 0", st.Sessions, st.MailCmds, len(st.Mails))
	}
}

func TestPoolDoesNotRetryAfterBodyWasWritten(t *testing.T) {
	t.Parallel()
	forEachWireMode(t, testPoolDoesNotRetryAfterBody)
}

func testPoolDoesNotRetryAfterBody(t *testing.T, m wireMode) {
	srv := smtptest.Start(t, smtptest.Options{
		Mode: smtptest.ImplicitTLS,
		// The second body arrives on the reused connection; the server
		// drops it instead of answering.
		Drop: func(cmd string, n int) bool { return cmd == "DATA" && n == 2 },
	})
	s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Minute, m)
	ctx := testCtx(t, 30*time.Second)

	sendOK(t, ctx, s, "first")
	_, err := s.SendTraced(ctx, Mail{To: "user@example.org", Subject: "second", Text: "t"})
	stageErr, ok := errors.AsType[*StageError](err)
	if !ok || stageErr.Stage != StageData || !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Send = %v, want a temporary data failure", err)
	}
	want := []string{StageReuse, StageMailFrom, StageRcptTo, StageData}
	if got := stagesOf(stageErr.Trace); !slices.Equal(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	if st := srv.State(); st.Sessions != 1 || st.DataCmds != 2 || st.MailCmds != 2 {
		t.Errorf("server saw %d sessions, %d MAIL FROM, %d bodies; want 1, 2, 2 (no retry)", st.Sessions, st.MailCmds, st.DataCmds)
	}

	// The broken connection was not pooled again.
	res := sendOK(t, ctx, s, "third")
	if got := stagesOf(res.Trace); !slices.Equal(got, m.fresh) {
		t.Errorf("next send: stages %v, want a fresh connection", got)
	}
}

func TestPoolKeepsConnectionAfterRejectedRecipient(t *testing.T) {
	t.Parallel()
	forEachWireMode(t, testPoolKeepsConnectionAfterRejectedRecipient)
}

func testPoolKeepsConnectionAfterRejectedRecipient(t *testing.T, m wireMode) {
	srv := smtptest.Start(t, smtptest.Options{
		Mode:    smtptest.ImplicitTLS,
		RcptErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	})
	s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Minute, m)
	ctx := testCtx(t, 30*time.Second)

	for i := range 3 {
		_, err := s.SendTraced(ctx, Mail{To: "nobody@example.org", Subject: "s", Text: "t"})
		stageErr, ok := errors.AsType[*StageError](err)
		if !ok || stageErr.Stage != StageRcptTo || !errors.Is(err, sdk.ErrRejected) {
			t.Fatalf("send %d = %v, want a rejected rcpt_to", i, err)
		}
		if first := stageErr.Trace[0].Stage; (i == 0) != (first == StageConnect) {
			t.Errorf("send %d: trace starts with %s", i, first)
		}
		if st := srv.State(); st.RcptCmds != i+1 {
			t.Fatalf("after send %d the server saw %d RCPT TO, want %d (no retry)", i, st.RcptCmds, i+1)
		}
	}
	if st := srv.State(); st.Sessions != 1 {
		t.Errorf("server saw %d sessions, want 1: the connection survives a refused RCPT", st.Sessions)
	}
}

func TestPoolClosesIdleConnections(t *testing.T) {
	t.Parallel()
	forEachWireMode(t, testPoolClosesIdleConnections)
}

func testPoolClosesIdleConnections(t *testing.T, m wireMode) {
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Millisecond, m)
	ctx := testCtx(t, 30*time.Second)

	sendOK(t, ctx, s, "first")
	time.Sleep(20 * time.Millisecond) // let the pooled connection outlive its idle time
	res := sendOK(t, ctx, s, "second")
	if got := stagesOf(res.Trace); !slices.Equal(got, m.fresh) {
		t.Errorf("stages %v, want a fresh connection", got)
	}
	if st := srv.State(); st.Sessions != 2 || len(st.Mails) != 2 {
		t.Errorf("server saw %d sessions and %d mails, want 2 and 2", st.Sessions, len(st.Mails))
	}
}

func TestSenderCloseTwiceThenSendStillWorks(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	s := newPooledSender(t, config(srv, SecurityTLS), 2, time.Minute, wireModes[1])
	ctx := testCtx(t, 30*time.Second)

	sendOK(t, ctx, s, "first")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sendOK(t, ctx, s, "second")
	sendOK(t, ctx, s, "third")
	if st := srv.State(); st.Sessions != 3 || len(st.Mails) != 3 {
		t.Errorf("server saw %d sessions and %d mails, want 3 and 3: no pooling after Close", st.Sessions, len(st.Mails))
	}
	if err := newSender(t, config(srv, SecurityTLS)).Close(); err != nil {
		t.Errorf("Close without a pool: %v", err)
	}
}

// pipeConn is a connection for pool tests whose closing can be observed.
func pipeConn(t *testing.T) (*connection, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return &connection{conn: a}, b
}

func isClosed(peer net.Conn) bool {
	_, err := peer.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func TestPoolGetPutSemantics(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 10*time.Second)
	p := newPool(2, time.Minute)

	// Two tokens, then the pool is full.
	for range 2 {
		if c, err := p.get(ctx); c != nil || err != nil {
			t.Fatalf("get on an empty pool = %v, %v; want a token to dial", c, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.get(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("get on a full pool with a cancelled ctx = %v", err)
	}

	// A waiter gets a connection put back rather than dialling.
	a, aPeer := pipeConn(t)
	got := make(chan *connection)
	go func() {
		c, _ := p.get(ctx)
		got <- c
	}()
	p.put(a)
	if c := <-got; c != a {
		t.Fatalf("waiter got %p, want the returned connection %p", c, a)
	}

	// LIFO.
	b, bPeer := pipeConn(t)
	p.put(a)
	p.put(b)
	if c, _ := p.get(ctx); c != b {
		t.Fatalf("get = %p, want the most recently returned %p", c, b)
	}

	// close closes the idle a; b, in use, is closed when it comes back.
	p.close()
	if !isClosed(aPeer) {
		t.Error("close left an idle connection open")
	}
	p.put(b)
	if !isClosed(bPeer) {
		t.Error("put after close kept the connection open")
	}
	// Both tokens are free again.
	for range 2 {
		if c, err := p.get(ctx); c != nil || err != nil {
			t.Fatalf("get after close = %v, %v; want a token to dial", c, err)
		}
	}
}

func benchmarkSend(b *testing.B, pipelining bool, opts ...Option) {
	srv := smtptest.Start(b, smtptest.Options{Mode: smtptest.ImplicitTLS})
	s, err := New(config(srv, SecurityTLS), opts...)
	if err != nil {
		b.Fatal(err)
	}
	s.noPipelining = !pipelining
	b.Cleanup(func() { _ = s.Close() })
	m := Mail{To: "user@example.org", Subject: "bench", Text: "t"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Send(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendFresh and BenchmarkSendPooled show what the pool saves per
// mail: the TCP connect, TLS handshake, EHLO and AUTH. On loopback the
// round trips that pipelining saves cost little; see BenchmarkDeliveryLatency
// in integration/ for a link with latency.
func BenchmarkSendFresh(b *testing.B) { benchmarkSend(b, true) }

func BenchmarkSendPooled(b *testing.B) { benchmarkSend(b, true, WithPool(1, time.Minute)) }

func BenchmarkSendPooledOneCommandAtATime(b *testing.B) {
	benchmarkSend(b, false, WithPool(1, time.Minute))
}
