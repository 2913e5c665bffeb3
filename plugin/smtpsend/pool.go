package smtpsend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	mail "github.com/wneessen/go-mail"
)

// Option tunes a Sender beyond its Config. Options are for the program that
// embeds the Sender, not for the operator: Config is the smtp section.
type Option func(*options) error

type options struct {
	poolSize int           // 0: no pool
	poolIdle time.Duration // how long an unused connection is kept
}

// WithPool keeps up to size authenticated connections open and reuses them
// across sends instead of dialling (connect, TLS, EHLO, AUTH) for every
// mail. A connection unused for longer than idle is closed when the pool is
// next touched rather than by a timer, so an idle Sender may hold
// connections past idle until its next send or Close; servers drop idle
// clients anyway, and the NOOP before reusing a connection idle for
// checkAfter notices that (a more recently used one that died fails before
// the server has the mail and is retried on a fresh connection).
//
// At most size sends run at once; further ones wait for a connection or for
// their ctx to end. Call Sender.Close to close the idle connections.
func WithPool(size int, idle time.Duration) Option {
	return func(o *options) error {
		if size < 1 {
			return fmt.Errorf("smtpsend: pool size %d: must be at least 1", size)
		}
		if idle <= 0 {
			return fmt.Errorf("smtpsend: pool idle time %v: must be positive", idle)
		}
		o.poolSize, o.poolIdle = size, idle
		return nil
	}
}

// pool bounds the open connections and keeps the idle ones.
//
// tokens holds one token per open connection, idle or in use, so a send that
// finds no idle connection dials only if it can add a token. An idle
// connection keeps its token: a send waiting for a token must also be woken
// when a connection goes idle, which is what wake is for.
type pool struct {
	size    int
	maxIdle time.Duration
	// checkAfter is how long a connection may sit idle before it is checked
	// with NOOP on reuse. A NOOP costs a round trip on every mail; a
	// connection used a moment ago is almost always alive, and if it is not,
	// the send fails before the server could have the mail and is retried
	// once on a fresh connection (broken), so skipping the check loses
	// nothing.
	checkAfter time.Duration
	tokens     chan struct{}
	// wake has room for size signals, one per connection that can go idle,
	// so put never blocks and never drops the signal a waiter needs: a
	// waiter that finds nothing after waking just waits again.
	wake chan struct{}

	mu     sync.Mutex
	idle   []*connection // oldest first; taken from the end (LIFO)
	closed bool
}

// checkAfter is the default idle time after which a reused connection is
// checked with NOOP first.
const checkAfter = 2 * time.Second

func newPool(size int, maxIdle time.Duration) *pool {
	return &pool{
		size:       size,
		maxIdle:    maxIdle,
		checkAfter: min(checkAfter, maxIdle),
		tokens:     make(chan struct{}, size),
		wake:       make(chan struct{}, size),
	}
}

// get returns the most recently used idle connection, or nil with a token
// taken when the caller is to dial a new one. It waits while all size
// connections are in use, until one comes back or ctx ends.
//
// LIFO keeps the traffic on few connections, so the surplus ones age out
// instead of all being kept barely alive.
func (p *pool) get(ctx context.Context) (*connection, error) {
	for {
		conn, expired := p.pop()
		p.drop(expired...)
		if conn != nil {
			return conn, nil
		}
		select {
		case p.tokens <- struct{}{}:
			return nil, nil
		case <-p.wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("all %d pooled connections are busy: %w", p.size, context.Cause(ctx))
		}
	}
}

// pop takes the newest idle connection and removes the expired ones, which
// the caller closes outside the lock.
func (p *pool) pop() (conn *connection, expired []*connection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	expired = p.expire(time.Now())
	if n := len(p.idle); n > 0 {
		conn = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	}
	return conn, expired
}

// expire removes the connections idle for longer than maxIdle. The slice is
// ordered by idleSince, so they are a prefix.
func (p *pool) expire(now time.Time) []*connection {
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) > p.maxIdle {
		n++
	}
	if n == 0 {
		return nil
	}
	expired := append([]*connection(nil), p.idle[:n]...)
	p.idle = append(p.idle[:0], p.idle[n:]...)
	return expired
}

// put returns a healthy connection whose session was reset. The caller must
// have stopped its ctx watcher.
func (p *pool) put(conn *connection) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.drop(conn)
		return
	}
	now := time.Now()
	conn.idleSince = now
	p.idle = append(p.idle, conn)
	expired := p.expire(now)
	p.mu.Unlock()
	p.drop(expired...)
	select {
	case p.wake <- struct{}{}:
	default: // size signals are pending already: enough to wake every waiter that can be served
	}
}

// drop closes connections and gives back their tokens.
func (p *pool) drop(conns ...*connection) {
	for _, conn := range conns {
		conn.close()
		<-p.tokens
	}
}

// release gives back the token of a connection that failed to open.
func (p *pool) release() { <-p.tokens }

// close closes the idle connections and makes put close the ones in use when
// they come back. Sends after close still work, each on a fresh connection.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	p.drop(idle...)
}

// sendPooled delivers msg on a pooled connection, or on a fresh one that
// joins the pool afterwards.
func (s *Sender) sendPooled(ctx context.Context, msg *mail.Msg) (Result, error) {
	t := s.newTracer()
	fail := func(stageErr *StageError) (Result, error) {
		t.fail(stageErr)
		return Result{}, stageErr
	}
	if err := context.Cause(ctx); err != nil {
		return fail(&StageError{Stage: StageConnect, Temporary: true, Err: err})
	}
	conn, err := s.pool.get(ctx)
	if err != nil {
		return fail(&StageError{Stage: StageConnect, Temporary: true, Err: err})
	}
	if conn != nil {
		reply, stageErr, retry := s.sendReused(ctx, conn, t, msg)
		if !retry {
			return s.settle(ctx, conn, reply, stageErr)
		}
		// The connection is broken: close it and let the fresh one below
		// take over its token, so the retry never waits for the pool.
		conn.close()
	}
	conn = &connection{trace: t}
	client, stageErr := s.dial(ctx, conn)
	if stageErr != nil {
		conn.close()
		s.pool.release()
		return fail(stageErr)
	}
	reply, stageErr := s.transact(ctx, client, conn, msg)
	return s.settle(ctx, conn, reply, stageErr)
}

// sendReused checks the idle conn with NOOP (if idle for checkAfter) and
// delivers msg on it; with PIPELINING an RSET in the envelope's group is the
// check instead. retry
// reports that conn is broken and msg certainly not delivered, so that the
// caller must send it again on a fresh connection: the connection failed the
// NOOP (which is no failed delivery, servers drop idle clients all the
// time), or it broke before the server could have accepted msg.
func (s *Sender) sendReused(ctx context.Context, conn *connection, t *tracer, msg *mail.Msg) (reply string, stageErr *StageError, retry bool) {
	conn.trace = t
	conn.smtp.SetLogger(t)
	t.begin(StageReuse, "pooled connection")
	conn.watch(ctx, conn.conn)
	if s.pipelines(conn) {
		reply, stageErr = s.transactPipelined(ctx, conn, msg, true)
		if stageErr != nil && broken(ctx, stageErr) {
			t.fail(stageErr)
			return "", nil, true
		}
		return reply, stageErr, false
	}
	// The deadline go-mail set for the previous send may have passed.
	err := conn.smtp.UpdateDeadline(stepTimeout(ctx))
	idle := time.Since(conn.idleSince)
	checked := idle >= s.pool.checkAfter
	if err == nil && checked {
		err = conn.smtp.Noop()
	}
	if err != nil {
		step := t.current()
		step.Detail = "pooled connection, NOOP failed; dialling a fresh one"
		step.Err = err.Error()
		t.finish()
		return "", nil, true
	}
	if checked {
		t.current().Detail = "pooled connection, NOOP ok"
	} else {
		t.current().Detail = fmt.Sprintf("pooled connection, idle %s, used without NOOP", idle.Round(time.Millisecond))
	}
	client, stageErr := s.newClient(ctx)
	if stageErr != nil {
		return "", stageErr, false
	}
	reply, stageErr = s.transact(ctx, client, conn, msg)
	if stageErr != nil && broken(ctx, stageErr) {
		// Keep the failed step in the trace, ahead of the fresh
		// connection's steps.
		t.fail(stageErr)
		return "", nil, true
	}
	return reply, stageErr, false
}

// broken reports whether a send failed because its connection broke before
// the server could have accepted the mail, so that sending it again cannot
// duplicate it: no reply came, or a 421 saying the server is closing the
// session (any other reply, 4xx or 5xx, is the server's answer about this
// mail), and the failure came before the body's final dot was written.
//
// A failure after the body was fully written, while waiting for the reply to
// it (ErrSMTPDataClose), is not retried: the server may have accepted the
// mail just before the connection dropped. That failure goes back to the
// caller as temporary, and the host's caller decides whether to send again.
func broken(ctx context.Context, stageErr *StageError) bool {
	if context.Cause(ctx) != nil {
		return false // no time left, and the watcher closed the socket
	}
	if stageErr.unsent {
		return true
	}
	sendErr, ok := errors.AsType[*mail.SendError](stageErr.Err)
	if !ok {
		return false
	}
	switch code := replyCode(sendErr); sendErr.Reason {
	case mail.ErrConnCheck, mail.ErrSMTPMailFrom, mail.ErrSMTPRcptTo, mail.ErrSMTPData:
		// 421 is the server closing the session (idle too long, too many
		// mails on one connection), not an answer about this mail.
		return code == 0 || code == 421
	case mail.ErrWriteContent:
		return code == 0
	}
	return false
}

// settle ends a send on conn: the connection goes back to the pool if the
// session is still sound, otherwise it is closed.
//
// A delivered mail ends its transaction (RFC 5321 4.1.1.4), so the
// connection goes back as it is, without an RSET costing a round trip in
// Kratos's one-message-at-a-time courier: the next send checks it (NOOP
// after checkAfter idle, or the RSET pipelined with its envelope) and sends
// again on a fresh connection if it died meanwhile.
func (s *Sender) settle(ctx context.Context, conn *connection, reply string, stageErr *StageError) (Result, error) {
	t := conn.trace
	if stageErr == nil {
		t.finish()
		s.recycle(conn, nil)
		return Result{Reply: reply, Trace: t.steps}, nil
	}
	t.fail(stageErr)
	answered := replyCode(stageErr.Err) != 0 && context.Cause(ctx) == nil
	switch {
	case !answered:
		// The connection broke, or the watcher closed it.
		s.recycle(conn, stageErr)
	case s.pipelines(conn):
		// The RSET pipelined with the next envelope clears the refused
		// transaction.
		s.recycle(conn, nil)
	default:
		// The server answered, so the session is sound; the RSET clears
		// the refused transaction and proves it. It goes to a tracer that
		// is done: the trace ends with the failed step.
		s.recycle(conn, conn.smtp.Reset())
	}
	return Result{}, stageErr
}

// recycle puts conn back into the pool, or closes it if err says it is no
// longer fit or its ctx ended (the watcher has closed the socket then).
func (s *Sender) recycle(conn *connection, err error) {
	conn.trace = nil
	if !conn.stop() || err != nil || conn.spoiled {
		s.pool.drop(conn)
		return
	}
	s.pool.put(conn)
}
