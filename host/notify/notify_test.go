package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/metrics"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/smtptest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testplugin"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
)

// pluginBin is the real gateway-email-plugin, built once for this package:
// every notice in these tests goes through it over gRPC to a real SMTP
// server.
var pluginBin string

func TestMain(m *testing.M) { testplugin.Main(m, &pluginBin) }

// startPlugin launches the real plugin, configured to deliver to srv with
// the template section tmpl (nil: the defaults).
func startPlugin(t *testing.T, srv *smtptest.Server, tmpl map[string]any) *sdk.Client {
	t.Helper()
	proc, err := sdk.Launch(sdk.LaunchConfig{Path: pluginBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Kill)
	cfg := map[string]any{"smtp": map[string]any{
		"host": "127.0.0.1", "port": srv.Port, "email_address": smtptest.User, "sender_name": "Example Accounts",
		"authorization_code": smtptest.Password, "security": "tls", "ca_file": srv.PKI.CAFile,
	}}
	if tmpl != nil {
		cfg["template"] = tmpl
	}
	raw, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := proc.Configure(ctx, &sdk.ConfigureRequest{Config: raw}); err != nil {
		t.Fatalf("configure the plugin: %v", err)
	}
	return proc
}

// store holds the config in effect; a test swaps it as a reload would.
type store struct{ cur atomic.Pointer[config.Config] }

func newStore(t *testing.T, edit func(*config.Config)) *store {
	t.Helper()
	c, err := config.Parse([]byte(`
webhook: {api_key: 0123456789abcdef-notify}
secrets: {cipher: ["0123456789abcdef0123456789abcdef-notify"]}
kratos: {login_ui_url: "https://auth.example.com/login", settings_ui_url: "https://auth.example.com/settings"}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(c)
	}
	s := &store{}
	s.cur.Store(c)
	return s
}

func (s *store) current() *config.Config { return s.cur.Load() }

// edit applies edit to a copy of the config in effect and puts the copy in
// effect.
func (s *store) edit(edit func(*config.Config)) {
	c := *s.cur.Load()
	edit(&c)
	s.cur.Store(&c)
}

// identities is Kratos's admin API as the notifier reads it: identities by
// id, as Kratos stores them.
type identities struct {
	mu    sync.Mutex
	byID  map[string]*kratosadmin.Identity
	reads int
	// fail answers the first len(fail) reads with these errors.
	fail []error
	// gate, if set, holds every read until it can receive or the read's
	// context ends.
	gate chan struct{}
	// onRead, if set, runs at every read with its number, counting from 1,
	// before the identity is copied: it may change what Kratos holds.
	onRead func(n int, id *kratosadmin.Identity)
}

func (f *identities) Identity(ctx context.Context, id string) (*kratosadmin.Identity, error) {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, fmt.Errorf("get identity %s: %w", id, kratosadmin.ErrUnavailable)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.reads <= len(f.fail) {
		return nil, f.fail[f.reads-1]
	}
	i, ok := f.byID[id]
	if !ok {
		return nil, fmt.Errorf("get identity %s: %w", id, kratosadmin.ErrNotFound)
	}
	if f.onRead != nil {
		f.onRead(f.reads, i)
	}
	c := *i
	return &c, nil
}

func (f *identities) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func alice(addresses ...string) *kratosadmin.Identity {
	return &kratosadmin.Identity{
		ID:                "id-alice",
		Traits:            map[string]any{"email": "alice@example.com", "name": map[string]any{"first": "Alice"}},
		RecoveryAddresses: addresses,
		PasswordHash:      "$2a$12$alice-old-hash",
	}
}

// clock is the notifier's After: it records every wait and fires at once,
// unless hold is set, when no wait ever fires.
type clock struct {
	mu    sync.Mutex
	waits []time.Duration
	hold  bool
	// waited gets every wait as it begins, if set.
	waited chan time.Duration
}

func (c *clock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	hold := c.hold
	c.mu.Unlock()
	if c.waited != nil {
		c.waited <- d
	}
	if hold {
		return nil
	}
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func (c *clock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// fixture is a Notifier on the real plugin, a real SMTP server, the real
// metrics and an in-memory Kratos.
type fixture struct {
	n       *Notifier
	srv     *smtptest.Server
	kratos  *identities
	cfg     *store
	clock   *clock
	metrics *metrics.Metrics
	logs    *testlog.Buffer
}

type options struct {
	smtp      smtptest.Options
	template  map[string]any
	config    func(*config.Config)
	queueSize int
	hold      bool
	identity  *kratosadmin.Identity
	durable   Durable
}

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	f := &fixture{
		srv:     smtptest.Start(t, o.smtp),
		kratos:  &identities{byID: map[string]*kratosadmin.Identity{}},
		cfg:     newStore(t, o.config),
		clock:   &clock{hold: o.hold},
		metrics: metrics.New(func() int { return 0 }),
		logs:    &testlog.Buffer{},
	}
	if o.identity != nil {
		f.kratos.byID[o.identity.ID] = o.identity
	}
	f.n = New(Deps{
		Config:    f.cfg.current,
		Kratos:    f.kratos,
		Plugin:    startPlugin(t, f.srv, o.template),
		Observer:  f.metrics,
		Log:       slog.New(slog.NewJSONHandler(f.logs, nil)),
		After:     f.clock.after,
		QueueSize: o.queueSize,
		Durable:   o.durable,
	})
	t.Cleanup(func() { _ = f.n.Drain(context.Background()) })
	return f
}

// settle waits until every notice accepted has ended, without ending the
// notifier: the notices' own waits are the fake clock's.
func (f *fixture) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.n.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d notice(s) still pending; log:\n%s", f.n.Pending(), f.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// count is the value of kratos_email_gateway_notices_total{kind,result}
// as Prometheus scrapes it.
func (f *fixture) count(t *testing.T, kind Kind, result string) int {
	t.Helper()
	w := httptest.NewRecorder()
	f.metrics.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	prefix := fmt.Sprintf(`kratos_email_gateway_notices_total{kind="%s",result="%s"} `, kind, result)
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return n
		}
	}
	return 0
}

// counts are the notice metric's values for kind, by result, without the
// zeros.
func (f *fixture) counts(t *testing.T, kind Kind) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range []string{ResultSent, ResultRetried, ResultFailed, ResultDropped, ResultSkipped} {
		if n := f.count(t, kind, r); n > 0 {
			out[r] = n
		}
	}
	return out
}

func (f *fixture) recipients() [][]string {
	var out [][]string
	for _, m := range f.srv.State().Mails {
		out = append(out, m.To)
	}
	return out
}

var at = time.Date(2026, 11, 26, 21, 14, 0, 0, time.UTC)

// A notice goes to every recovery address (via email) Kratos holds for the
// identity, once per address however Kratos cased it, and to no other:
// the Notice names no address, so no caller can steer it.
func TestNoticeGoesToTheRecoveryAddressesKratosHolds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		addresses []string
		want      [][]string
	}{
		{"one", []string{"alice@example.com"}, [][]string{{"alice@example.com"}}},
		{"several, one twice in other case", []string{"Alice@Example.com", "alice@work.example", "alice@example.com"},
			[][]string{{"Alice@Example.com"}, {"alice@work.example"}}},
	}
	for _, tt := range tests {
		for _, kind := range []Kind{PasswordChanged, ResetVoid} {
			t.Run(tt.name+"/"+string(kind), func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, options{identity: alice(tt.addresses...)})
				f.n.Notify(Notice{Kind: kind, IdentityID: "id-alice", At: at})
				f.settle(t)
				if diff := cmp.Diff(tt.want, f.recipients()); diff != "" {
					t.Errorf("mails went to (-want +got):\n%s\nlog:\n%s", diff, f.logs)
				}
				if diff := cmp.Diff(map[string]int{ResultSent: 1}, f.counts(t, kind)); diff != "" {
					t.Errorf("metric (-want +got):\n%s", diff)
				}
				subject := map[Kind]string{PasswordChanged: "Subject: Your password was changed", ResetVoid: "Subject: Someone asked to recover your account"}[kind]
				for _, m := range f.srv.State().Mails {
					if !strings.Contains(string(m.Data), subject) || !strings.Contains(string(m.Data), "2026-11-26 21:14 UTC") {
						t.Errorf("mail lacks %q or the time:\n%s", subject, m.Data)
					}
				}
				for _, msg := range []string{"notice queued", "notice sent"} {
					if !strings.Contains(f.logs.String(), `"msg":"`+msg+`","event":"notice","kind":"`+string(kind)+`","identity_id":"id-alice"`) {
						t.Errorf("no %q line names the notice, its kind and identity:\n%s", msg, f.logs)
					}
				}
			})
		}
	}
}

// Notices that are not to be sent are counted as skipped and send
// nothing: switched off when they happen or before their try, an identity
// without a recovery address via email, an identity Kratos no longer has.
func TestNoticesNotToBeSentAreSkipped(t *testing.T) {
	t.Parallel()
	off := func(k Kind) func(*config.Config) {
		return func(c *config.Config) {
			if k == PasswordChanged {
				c.Notices.PasswordChanged.Enabled = false
			} else {
				c.Notices.ResetVoid.Enabled = false
			}
		}
	}
	tests := []struct {
		name      string
		kind      Kind
		config    func(*config.Config)
		identity  *kratosadmin.Identity
		wantReads int
		wantLog   string
	}{
		{"password_changed switched off", PasswordChanged, off(PasswordChanged), alice("alice@example.com"), 0, `"key":"notices.password_changed.enabled"`},
		{"reset_void switched off", ResetVoid, off(ResetVoid), alice("alice@example.com"), 0, `"key":"notices.reset_void.enabled"`},
		{"no recovery address", ResetVoid, nil, alice(), 1, "no recovery address via email"},
		{"identity gone", PasswordChanged, nil, nil, 1, "no longer exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{config: tt.config, identity: tt.identity})
			f.n.Notify(Notice{Kind: tt.kind, IdentityID: "id-alice", At: at})
			f.settle(t)
			if n := len(f.srv.State().Mails); n != 0 {
				t.Errorf("%d mails sent, want none", n)
			}
			if got := f.kratos.readCount(); got != tt.wantReads {
				t.Errorf("Kratos was read %d times, want %d", got, tt.wantReads)
			}
			if diff := cmp.Diff(map[string]int{ResultSkipped: 1}, f.counts(t, tt.kind)); diff != "" {
				t.Errorf("metric (-want +got):\n%s", diff)
			}
			if !strings.Contains(f.logs.String(), tt.wantLog) || !strings.Contains(f.logs.String(), `"identity_id":"id-alice"`) {
				t.Errorf("the log does not say %q for id-alice:\n%s", tt.wantLog, f.logs)
			}
			// The other notice is not switched off with this one.
			other := map[Kind]Kind{PasswordChanged: ResetVoid, ResetVoid: PasswordChanged}[tt.kind]
			if tt.config != nil {
				f.kratos.mu.Lock()
				f.kratos.byID["id-alice"] = alice("alice@example.com")
				f.kratos.mu.Unlock()
				f.n.Notify(Notice{Kind: other, IdentityID: "id-alice", At: at})
				f.settle(t)
				if n := len(f.srv.State().Mails); n != 1 || f.count(t, other, ResultSent) != 1 {
					t.Errorf("the %s notice: %d mails, %v; want it sent", other, n, f.counts(t, other))
				}
			}
		})
	}
}

// A notice switched off by a reload while it waits for a retry is not
// tried again.
func TestNoticeSwitchedOffWhileWaitingIsNotTriedAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{identity: alice("alice@example.com"), hold: true})
	f.clock.waited = make(chan time.Duration, 1)
	f.kratos.fail = []error{kratosadmin.ErrUnavailable}
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	<-f.clock.waited // the first try failed; the notice waits
	f.cfg.edit(func(c *config.Config) { c.Notices.ResetVoid.Enabled = false })
	f.clock.mu.Lock()
	f.clock.hold = false
	f.clock.mu.Unlock()
	// Drain ends the wait at once; the notice sees it is switched off.
	if err := f.n.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.srv.State().Mails); n != 0 {
		t.Errorf("%d mails sent, want none", n)
	}
	if diff := cmp.Diff(map[string]int{ResultRetried: 1, ResultSkipped: 1}, f.counts(t, ResetVoid)); diff != "" {
		t.Errorf("metric (-want +got):\n%s", diff)
	}
	if f.kratos.readCount() != 1 {
		t.Errorf("Kratos was read %d times, want once", f.kratos.readCount())
	}
}

// A notice that cannot be sent is tried notices.max_attempts times in all,
// with waits that start at notices.retry_backoff and double, and is then
// given up; each failure is logged and counted. A failure that passes
// before the last try ends in a sent notice.
func TestRetriesAreBoundedAndBackOff(t *testing.T) {
	t.Parallel()
	busy := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	tests := []struct {
		name        string
		maxAttempts int
		backoff     time.Duration
		failMails   int // MAIL FROMs the server refuses, counting from the first
		failKratos  int // reads Kratos fails, counting from the first
		wantWaits   []time.Duration
		wantCounts  map[string]int
		wantMails   int
	}{
		{"SMTP down for good", 4, 30 * time.Second, 100, 0,
			[]time.Duration{30 * time.Second, time.Minute, 2 * time.Minute}, map[string]int{ResultRetried: 3, ResultFailed: 1}, 0},
		{"one try only", 1, 30 * time.Second, 100, 0,
			nil, map[string]int{ResultFailed: 1}, 0},
		{"SMTP back at the third try", 5, 10 * time.Second, 2, 0,
			[]time.Duration{10 * time.Second, 20 * time.Second}, map[string]int{ResultRetried: 2, ResultSent: 1}, 1},
		{"Kratos back at the second try", 5, time.Minute, 0, 1,
			[]time.Duration{time.Minute}, map[string]int{ResultRetried: 1, ResultSent: 1}, 1},
		{"the wait stops doubling at an hour", 10, 10 * time.Minute, 100, 0,
			[]time.Duration{10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour, time.Hour, time.Hour, time.Hour, time.Hour},
			map[string]int{ResultRetried: 9, ResultFailed: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{
				identity: alice("alice@example.com"),
				config: func(c *config.Config) {
					c.Notices.MaxAttempts, c.Notices.RetryBackoff = tt.maxAttempts, tt.backoff
				},
				smtp: smtptest.Options{MailErr: func(n int) *smtp.SMTPError {
					if n <= tt.failMails {
						return busy
					}
					return nil
				}},
			})
			for range tt.failKratos {
				f.kratos.fail = append(f.kratos.fail, fmt.Errorf("get identity: %w", kratosadmin.ErrUnavailable))
			}
			f.n.Notify(Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at})
			f.settle(t)
			if diff := cmp.Diff(tt.wantWaits, f.clock.recorded()); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCounts, f.counts(t, PasswordChanged)); diff != "" {
				t.Errorf("metric (-want +got):\n%s\nlog:\n%s", diff, f.logs)
			}
			if n := len(f.srv.State().Mails); n != tt.wantMails {
				t.Errorf("%d mails delivered, want %d", n, tt.wantMails)
			}
			logs := f.logs.String()
			if got := strings.Count(logs, `"msg":"notice not sent; trying again later"`); got != tt.wantCounts[ResultRetried] {
				t.Errorf("%d retry lines logged, want %d:\n%s", got, tt.wantCounts[ResultRetried], logs)
			}
			if tt.wantCounts[ResultFailed] > 0 && !strings.Contains(logs, fmt.Sprintf(`"msg":"notice not sent; given up","event":"notice","kind":"password_changed","identity_id":"id-alice","result":"failed","attempt":%d`, tt.maxAttempts)) {
				t.Errorf("no line says the notice was given up after %d tries:\n%s", tt.maxAttempts, logs)
			}
		})
	}
}

// secondAddressRefusedOnce is a fixture whose identity has two recovery
// addresses and whose SMTP server refuses the second mail it is given (the
// second address's, at the first try) and accepts every other.
func secondAddressRefusedOnce(t *testing.T) *fixture {
	t.Helper()
	busy := &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	return newFixture(t, options{
		identity: alice("alice@example.com", "alice@work.example"),
		smtp: smtptest.Options{MailErr: func(n int) *smtp.SMTPError {
			if n == 2 {
				return busy
			}
			return nil
		}},
	})
}

// A retry mails only the recipients that did not get the notice yet.
func TestRetryMailsOnlyWhoDidNotGetIt(t *testing.T) {
	t.Parallel()
	f := secondAddressRefusedOnce(t)
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	f.settle(t)
	if diff := cmp.Diff([][]string{{"alice@example.com"}, {"alice@work.example"}}, f.recipients()); diff != "" {
		t.Errorf("mails went to (-want +got):\n%s\nlog:\n%s", diff, f.logs)
	}
	if diff := cmp.Diff(map[string]int{ResultRetried: 1, ResultSent: 1}, f.counts(t, ResetVoid)); diff != "" {
		t.Errorf("metric (-want +got):\n%s", diff)
	}
}

// A notice the plugin cannot build (a template that fails on this
// identity) is given up at once: another try would fail the same way.
func TestNoticeThatCannotBeBuiltIsNotRetried(t *testing.T) {
	t.Parallel()
	id := alice("alice@example.com")
	id.Traits = map[string]any{"email": "alice@example.com", "name": map[string]any{"last": "Example"}}
	f := newFixture(t, options{
		identity: id,
		template: map[string]any{"reset_void": map[string]any{"subject": "For {{.Identity.Traits.name.first}}"}},
	})
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	f.settle(t)
	if diff := cmp.Diff(map[string]int{ResultFailed: 1}, f.counts(t, ResetVoid)); diff != "" {
		t.Errorf("metric (-want +got):\n%s\nlog:\n%s", diff, f.logs)
	}
	if len(f.clock.recorded()) != 0 || f.kratos.readCount() != 1 {
		t.Errorf("waits %v, Kratos reads %d; want no retry", f.clock.recorded(), f.kratos.readCount())
	}
	if !strings.Contains(f.logs.String(), "template.reset_void.subject") {
		t.Errorf("the log does not name the template at fault:\n%s", f.logs)
	}
}

// A full queue drops the notice at once, with a log line and the metric;
// Notify never waits for room.
func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{identity: alice("alice@example.com"), queueSize: 2})
	f.kratos.gate = make(chan struct{})
	f.n.Notify(Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at})
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	returned := make(chan struct{})
	go func() {
		f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked on a full queue")
	}
	if got := f.count(t, ResetVoid, ResultDropped); got != 1 {
		t.Errorf("dropped = %d, want 1", got)
	}
	if !strings.Contains(f.logs.String(), `"msg":"notice dropped: the queue is full`) {
		t.Errorf("no log line says the notice was dropped:\n%s", f.logs)
	}
	close(f.kratos.gate)
	f.settle(t)
	if f.count(t, PasswordChanged, ResultSent) != 1 || f.count(t, ResetVoid, ResultSent) != 1 {
		t.Errorf("the queued notices: %v, %v; want both sent", f.counts(t, PasswordChanged), f.counts(t, ResetVoid))
	}
	// With room again, a notice is taken.
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	f.settle(t)
	if got := f.count(t, ResetVoid, ResultSent); got != 2 {
		t.Errorf("sent after the queue emptied = %d, want 2", got)
	}
}

// Drain gives a notice waiting for a retry one last try at once, then
// takes no more notices.
func TestDrainTriesWaitingNoticesOnceMore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{identity: alice("alice@example.com"), hold: true})
	f.clock.waited = make(chan time.Duration, 1)
	f.kratos.fail = []error{kratosadmin.ErrUnavailable}
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	<-f.clock.waited // the first try failed; the wait never ends by itself
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.n.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if diff := cmp.Diff(map[string]int{ResultRetried: 1, ResultSent: 1}, f.counts(t, ResetVoid)); diff != "" {
		t.Errorf("metric (-want +got):\n%s\nlog:\n%s", diff, f.logs)
	}
	f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
	if f.count(t, ResetVoid, ResultDropped) != 1 || len(f.srv.State().Mails) != 1 {
		t.Errorf("a notice after Drain: %v, %d mails; want it dropped", f.counts(t, ResetVoid), len(f.srv.State().Mails))
	}
	if !strings.Contains(f.logs.String(), "shutting down") {
		t.Errorf("the dropped notice's line does not say why:\n%s", f.logs)
	}
}

// Drain's last try fails: the notice is given up, not waited for again.
// And at Drain's deadline the tries under way are cancelled, and Drain
// says how many notices were lost.
func TestDrainEndsAtItsDeadline(t *testing.T) {
	t.Parallel()
	t.Run("the last try fails", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, options{identity: alice("alice@example.com"), hold: true})
		f.clock.waited = make(chan time.Duration, 1)
		f.kratos.fail = []error{kratosadmin.ErrUnavailable, kratosadmin.ErrUnavailable}
		f.n.Notify(Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at})
		<-f.clock.waited
		if err := f.n.Drain(context.Background()); err != nil {
			t.Fatalf("Drain: %v", err)
		}
		if diff := cmp.Diff(map[string]int{ResultRetried: 1, ResultFailed: 1}, f.counts(t, PasswordChanged)); diff != "" {
			t.Errorf("metric (-want +got):\n%s", diff)
		}
		if !strings.Contains(f.logs.String(), `"shutting_down":true`) {
			t.Errorf("the given-up line does not say the gateway was shutting down:\n%s", f.logs)
		}
	})
	t.Run("a try hangs", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, options{identity: alice("alice@example.com")})
		f.kratos.gate = make(chan struct{}) // never opened: Kratos hangs
		f.n.Notify(Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at})
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the deadline has passed
		err := f.n.Drain(ctx)
		if err == nil || !strings.Contains(err.Error(), "1 notice(s)") {
			t.Fatalf("Drain = %v, want an error counting 1 lost notice", err)
		}
		if diff := cmp.Diff(map[string]int{ResultFailed: 1}, f.counts(t, ResetVoid)); diff != "" {
			t.Errorf("metric (-want +got):\n%s", diff)
		}
	})
}

// A password_changed notice from the settings hook waits until Kratos
// holds a new password hash: the hook runs just before Kratos stores it,
// and a flow that fails after the hook changed nothing to tell.
func TestPasswordChangedWaitsForKratosToStoreIt(t *testing.T) {
	t.Parallel()
	before := HashDigest("$2a$12$alice-old-hash")
	tests := []struct {
		name       string
		supersedes string
		storedAt   int // the Kratos read from which the new hash is there; 0: never
		wantWaits  int
		wantCounts map[string]int
		wantMails  int
	}{
		{"already stored", before, 1, 0, map[string]int{ResultSent: 1}, 1},
		{"stored a moment later", before, 3, 2, map[string]int{ResultSent: 1}, 1},
		{"never stored", before, 0, len(confirmWaits), map[string]int{ResultSkipped: 1}, 0},
		{"unknown before", "", 0, 0, map[string]int{ResultSent: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{identity: alice("alice@example.com")})
			f.kratos.onRead = func(n int, id *kratosadmin.Identity) {
				if tt.storedAt > 0 && n >= tt.storedAt {
					id.PasswordHash = "$2a$12$alice-new-hash"
				}
			}
			f.n.Notify(Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at, Supersedes: tt.supersedes})
			f.settle(t)
			if got := len(f.clock.recorded()); got != tt.wantWaits {
				t.Errorf("%d waits (%v), want %d", got, f.clock.recorded(), tt.wantWaits)
			}
			if diff := cmp.Diff(tt.wantCounts, f.counts(t, PasswordChanged)); diff != "" {
				t.Errorf("metric (-want +got):\n%s", diff)
			}
			if n := len(f.srv.State().Mails); n != tt.wantMails {
				t.Errorf("%d mails, want %d", n, tt.wantMails)
			}
		})
	}
	// The waits are short ones, not tries: they are not the retry backoff.
	if confirmWaits[0] >= time.Second {
		t.Errorf("the first wait for Kratos is %s; the notice would lag the user's change", confirmWaits[0])
	}
}

func TestHashDigest(t *testing.T) {
	t.Parallel()
	a, b, none := HashDigest("$2a$12$a"), HashDigest("$2a$12$b"), HashDigest("")
	if a == b || a == none || none == "" || strings.Contains(a, "$2a$12$a") {
		t.Errorf("HashDigest: %q, %q, %q; want distinct, non-empty digests that do not hold the hash", a, b, none)
	}
	if HashDigest("$2a$12$a") != a {
		t.Error("HashDigest is not stable")
	}
}

func TestRecipients(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"a@example.com"}, []string{"a@example.com"}},
		{[]string{"A@Example.com", "a@example.com", " a@EXAMPLE.com ", "b@example.com", ""}, []string{"A@Example.com", "b@example.com"}},
		// The wiring check's canaries, and any other address that cannot
		// take mail.
		{[]string{"kratos-email-gateway-canary-3@canary.invalid", "c@example.com", "d@Example.INVALID"}, []string{"c@example.com"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Recipients(&kratosadmin.Identity{RecoveryAddresses: tt.in})); diff != "" {
			t.Errorf("Recipients(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// Notices run concurrently without losing or mixing any; under -race this
// also checks the notifier's shared state.
func TestManyNoticesAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{})
	const n = 12
	for i := range n {
		id := alice(fmt.Sprintf("user%02d@example.com", i))
		id.ID = fmt.Sprintf("id-%02d", i)
		f.kratos.byID[id.ID] = id
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			f.n.Notify(Notice{Kind: []Kind{PasswordChanged, ResetVoid}[i%2], IdentityID: fmt.Sprintf("id-%02d", i), At: at})
		})
	}
	wg.Wait()
	f.settle(t)
	var got []string
	for _, r := range f.recipients() {
		got = append(got, r...)
	}
	slices.Sort(got)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("user%02d@example.com", i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}
	if f.count(t, PasswordChanged, ResultSent)+f.count(t, ResetVoid, ResultSent) != n {
		t.Errorf("sent: %v %v", f.counts(t, PasswordChanged), f.counts(t, ResetVoid))
	}
}

// outbox is a Durable that takes notices, or refuses them with err.
type outbox struct {
	mu  sync.Mutex
	got []Notice
	err error
}

func (o *outbox) EnqueueNotice(_ context.Context, nt Notice) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	o.got = append(o.got, nt)
	return nil
}

// With the outbox, a notice is stored there, not sent from memory; one
// the outbox does not take (its database down) is sent from memory, as
// without it, and the log says why.
func TestNoticesGoToTheOutbox(t *testing.T) {
	t.Parallel()
	nt := Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at, Supersedes: HashDigest("$2a$12$old")}
	for _, tt := range []struct {
		name      string
		err       error
		wantMails int
		wantLog   string
	}{
		{"stored", nil, 0, `"msg":"notice queued"`},
		{"the outbox refuses", errors.New("store the notice: connection refused"), 1, `"msg":"notice kept in this host's memory: the outbox did not take it"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ob := &outbox{err: tt.err}
			f := newFixture(t, options{identity: alice("alice@example.com"), durable: ob})
			f.kratos.byID["id-alice"].PasswordHash = "$2a$12$new"
			f.n.Notify(nt)
			f.settle(t)
			if n := len(f.srv.State().Mails); n != tt.wantMails {
				t.Errorf("%d mails sent from memory, want %d", n, tt.wantMails)
			}
			if !strings.Contains(f.logs.String(), tt.wantLog) {
				t.Errorf("the log lacks %s:\n%s", tt.wantLog, f.logs)
			}
			ob.mu.Lock()
			defer ob.mu.Unlock()
			if tt.err == nil && (len(ob.got) != 1 || ob.got[0] != nt) {
				t.Errorf("the outbox got %+v, want the notice as asked for", ob.got)
			}
		})
	}
}

// Attempt is one try of a notice the outbox holds: it says whether the
// notice needs nothing more, and logs and counts the end as Notify does.
func TestAttempt(t *testing.T) {
	t.Parallel()
	busy := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	failing := smtptest.Options{MailErr: func(int) *smtp.SMTPError { return busy }}
	old := HashDigest("$2a$12$old")
	for _, tt := range []struct {
		name       string
		smtp       smtptest.Options
		attempt    int
		stored     bool // Kratos holds the new hash
		wantDone   bool
		wantErr    bool
		wantResult string
		wantMails  int
	}{
		{"sent", smtptest.Options{}, 1, true, true, false, ResultSent, 1},
		{"SMTP busy, tries left", failing, 1, true, false, true, ResultRetried, 0},
		{"SMTP busy, last try", failing, 3, true, true, true, ResultFailed, 0},
		{"Kratos never stored the password", smtptest.Options{}, 1, false, true, false, ResultSkipped, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{identity: alice("alice@example.com"), smtp: tt.smtp,
				config: func(c *config.Config) { c.Notices.MaxAttempts = 3 }})
			if tt.stored {
				f.kratos.byID["id-alice"].PasswordHash = "$2a$12$new"
			} else {
				f.kratos.byID["id-alice"].PasswordHash = "$2a$12$old"
			}
			done, err := f.n.Attempt(context.Background(), Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at, Supersedes: old}, tt.attempt, reachedSet{})
			if done != tt.wantDone || (err != nil) != tt.wantErr {
				t.Fatalf("Attempt = %v, %v; want done %v, an error %v", done, err, tt.wantDone, tt.wantErr)
			}
			if diff := cmp.Diff(map[string]int{tt.wantResult: 1}, f.counts(t, PasswordChanged)); diff != "" {
				t.Errorf("metric (-want +got):\n%s", diff)
			}
			if n := len(f.srv.State().Mails); n != tt.wantMails {
				t.Errorf("%d mails, want %d", n, tt.wantMails)
			}
			if !strings.Contains(f.logs.String(), `"store":"outbox"`) {
				t.Errorf("the log does not say the notice is the outbox's:\n%s", f.logs)
			}
		})
	}
	// A host stopping while it waits for Kratos leaves the notice to the
	// outbox: not done, nothing counted.
	f := newFixture(t, options{identity: alice("alice@example.com"), hold: true})
	f.kratos.byID["id-alice"].PasswordHash = "$2a$12$old"
	ctx, cancel := context.WithCancel(context.Background())
	f.clock.waited = make(chan time.Duration, 1)
	go func() { <-f.clock.waited; cancel() }()
	done, err := f.n.Attempt(ctx, Notice{Kind: PasswordChanged, IdentityID: "id-alice", At: at, Supersedes: old}, 1, reachedSet{})
	if done || !errors.Is(err, context.Canceled) {
		t.Errorf("Attempt while stopping = %v, %v; want not done, context.Canceled", done, err)
	}
	if got := f.counts(t, PasswordChanged); len(got) != 0 {
		t.Errorf("metric %v, want nothing counted", got)
	}
}

// A try of a notice the outbox holds skips the recipients earlier tries
// reached, whatever their case, and records those it reaches.
func TestAttemptMailsOnlyWhoDidNotGetIt(t *testing.T) {
	t.Parallel()
	f := secondAddressRefusedOnce(t)
	nt := Notice{Kind: ResetVoid, IdentityID: "id-alice", At: at}
	reached := reachedSet{}
	if done, err := f.n.Attempt(context.Background(), nt, 1, reached); done || err == nil {
		t.Fatalf("first try = %v, %v; want a retry", done, err)
	}
	if !reached.Has("ALICE@example.com") || reached.Has("alice@work.example") {
		t.Fatalf("reached after the first try = %v, want alice@example.com only", reached)
	}
	if done, err := f.n.Attempt(context.Background(), nt, 2, reached); !done || err != nil {
		t.Fatalf("second try = %v, %v; want sent", done, err)
	}
	if diff := cmp.Diff([][]string{{"alice@example.com"}, {"alice@work.example"}}, f.recipients()); diff != "" {
		t.Errorf("mails went to (-want +got):\n%s\nlog:\n%s", diff, f.logs)
	}
	if !strings.Contains(f.logs.String(), `"recipients":2`) {
		t.Errorf("the log does not say both recipients have the notice:\n%s", f.logs)
	}
}
