package recovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/sealing"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk"
	"github.com/kratos-email-gateway/kratos-email-gateway/sdk/sdktest"
)

// identities is an in-memory Kratos admin API that records the order of calls.
type identities struct {
	byID    map[string]*kratosadmin.Identity
	calls   *[]string
	updates []kratosadmin.PasswordUpdate
	setErr  error
	// patchGate, if set, holds every Patch until it can receive.
	patchGate chan struct{}
}

func (f *identities) Identity(_ context.Context, id string) (*kratosadmin.Identity, error) {
	*f.calls = append(*f.calls, "get")
	i, ok := f.byID[id]
	if !ok {
		return nil, kratosadmin.ErrNotFound
	}
	return i, nil
}

func (f *identities) SetPassword(_ context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error {
	*f.calls = append(*f.calls, "set")
	f.updates = append(f.updates, u)
	if f.setErr != nil {
		return f.setErr
	}
	// Kratos stores what the PUT carried.
	stored := *f.byID[id.ID]
	stored.MetadataPublic, stored.MetadataAdmin = deepCopy(u.MetadataPublic), deepCopy(u.MetadataAdmin)
	stored.UsesMigrationHook = u.UseMigrationHook
	stored.PasswordHash = ""
	if !u.UseMigrationHook {
		stored.PasswordHash = "hash-of:" + u.Password
	}
	f.byID[id.ID] = &stored
	return nil
}

func (f *identities) FindByIdentifier(_ context.Context, identifier string) (*kratosadmin.Identity, error) {
	*f.calls = append(*f.calls, "find")
	for _, i := range f.byID {
		if i.Traits["email"] == identifier {
			return i, nil
		}
	}
	return nil, kratosadmin.ErrNotFound
}

// Patch applies add and remove the way Kratos's JSON Patch does.
func (f *identities) Patch(_ context.Context, id string, ops ...kratosadmin.Op) error {
	if f.patchGate != nil {
		<-f.patchGate
	}
	*f.calls = append(*f.calls, "patch")
	stored := *f.byID[id]
	stored.MetadataPublic = deepCopy(stored.MetadataPublic)
	stored.MetadataAdmin = deepCopy(stored.MetadataAdmin)
	for _, o := range ops {
		if o.Path[0] == "metadata_public" && len(o.Path) == 1 {
			stored.MetadataPublic = o.Value.(map[string]any)
			continue
		}
		m := map[string]any{"metadata_public": stored.MetadataPublic, "metadata_admin": stored.MetadataAdmin}
		for _, p := range o.Path[:len(o.Path)-1] {
			m = m[p].(map[string]any)
		}
		if o.Op == "remove" {
			delete(m, o.Path[len(o.Path)-1])
		} else {
			m[o.Path[len(o.Path)-1]] = o.Value
		}
	}
	f.byID[id] = &stored
	return nil
}

func deepCopy(m map[string]any) map[string]any {
	raw, _ := json.Marshal(m)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

func (f *identities) RevokeSessions(context.Context, string) error {
	*f.calls = append(*f.calls, "revoke")
	return nil
}

var now = time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)

type fixture struct {
	noKeys bool
	svc    *Service
	ids    *identities
	calls  []string
	sent   []*sdk.SendMessageRequest
	logs   bytes.Buffer
}

func newFixture(sendErr error) *fixture {
	f := &fixture{}
	f.ids = &identities{calls: &f.calls, byID: map[string]*kratosadmin.Identity{
		"id-1": {
			ID: "id-1", SchemaID: "default", State: "active",
			Traits:            map[string]any{"email": "alice@example.com"},
			MetadataPublic:    map[string]any{"plan": "pro"},
			MetadataAdmin:     map[string]any{"crm_id": 42.0, KeyAdmin: map[string]any{"note": "kept"}},
			RecoveryAddresses: []string{"alice@example.com"},
			PasswordHash:      currentHash,
		},
	}}
	mailer := &sdktest.Fake{
		IssuePasswordF: func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
			f.calls = append(f.calls, "issue")
			return &sdk.IssuePasswordResponse{Password: "Tmp-Pass-2345-xyz"}, nil
		},
		RenderF: func(context.Context, *sdk.RenderRequest) (*sdk.RenderResponse, error) {
			f.calls = append(f.calls, "render")
			return &sdk.RenderResponse{Subject: "s", TextBody: "t"}, nil
		},
		SendMessageF: func(_ context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
			f.calls = append(f.calls, "send")
			f.sent = append(f.sent, r)
			if sendErr != nil {
				return nil, sendErr
			}
			return &sdk.SendMessageResponse{ServerReply: "250 queued"}, nil
		},
	}
	f.svc = New(f.ids, mailer, func() time.Time { return now }, slog.New(slog.NewJSONHandler(&f.logs, nil)))
	return f
}

// reset runs Reset and waits for its mailed_at mark, as a test reads what
// the in-memory Kratos holds right after.
func (f *fixture) reset(ctx context.Context, req Request, pol Policy) (Outcome, error) {
	res, err := f.resetResult(ctx, req, pol)
	return res.Outcome, err
}

func (f *fixture) resetResult(ctx context.Context, req Request, pol Policy) (Result, error) {
	res, err := f.svc.Reset(ctx, req, pol)
	f.svc.Wait()
	return res, err
}

func mustKeys(secrets ...string) *sealing.Keyring {
	keys, err := sealing.New(secrets)
	if err != nil {
		panic(err)
	}
	return keys
}

const (
	cipherKey = "0123456789abcdef0123456789abcdef-test"
	// currentHash is a bcrypt hash of currentPassword at cost 4, so the many
	// checks here stay fast; pwhash's tests use hashes Kratos wrote.
	currentPassword = "Kratos-Hashed-Password-1"
	currentHash     = "$2a$04$ReULkUQuD.QISt623MUFg.0S0S7DM06.n4Wmrqq083y5eP2z10kLG"
)

// policy replaces the password at once; keepPolicy keeps the current one.
var (
	policy     = Policy{TTL: time.Hour, Keys: mustKeys(cipherKey), RevokeSessions: true, LoginURL: "http://ui/login", KratosTimeout: time.Second, SMTPTimeout: time.Second}
	keepPolicy = Policy{TTL: time.Hour, KeepCurrent: true, Keys: mustKeys(cipherKey), RevokeSessions: true, LoginURL: "http://ui/login", KratosTimeout: time.Second, SMTPTimeout: time.Second}
)

func TestResetWritesBeforeItMails(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if _, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "Alice@Example.com", Trigger: "self-service", Message: "k1"}, policy); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "issue", "render", "set", "revoke", "send", "patch"}, f.calls); diff != "" {
		t.Errorf("call order (-want +got):\n%s", diff)
	}
	wantUpdate := kratosadmin.PasswordUpdate{
		Password:       "Tmp-Pass-2345-xyz",
		MetadataPublic: map[string]any{"plan": "pro", KeyChangeRequired: true, KeyExpiresAt: "2026-11-26T22:00:00Z"},
		MetadataAdmin:  map[string]any{"crm_id": 42.0, KeyAdmin: map[string]any{"note": "kept", KeyLastResetAt: "2026-11-26T21:00:00Z", KeyMessage: mustKeys(cipherKey).MessageKey("id-1", "k1")}},
	}
	if diff := cmp.Diff(wantUpdate, f.ids.updates[0], cmpIgnoreMailedAt); diff != "" {
		t.Errorf("update (-want +got):\n%s", diff)
	}
	if got := asMap(f.ids.byID["id-1"].MetadataAdmin[KeyAdmin])[KeyMailedAt]; got != "2026-11-26T21:00:00Z" {
		t.Errorf("mailed_at = %v, want the time the mail was accepted", got)
	}
	p := f.sent[0].Password
	if p == nil || p.Password != "Tmp-Pass-2345-xyz" || !p.ExpiresAt.Equal(now.Add(time.Hour)) || p.LoginURL != "http://ui/login" || string(p.IdentityTraits) != `{"email":"alice@example.com"}` {
		t.Errorf("password message = %+v", p)
	}
	if strings.Contains(f.logs.String(), "Tmp-Pass-2345-xyz") {
		t.Errorf("the password reached the log")
	}
}

// Kratos's courier gets its answer as soon as the mail is out; the mailed_at
// mark follows, and the next reset of the identity waits for it, so the
// cooldown still applies.
func TestResetAnswersBeforeTheMarkButTheNextResetSeesIt(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	f.ids.patchGate = make(chan struct{})
	pol := policy
	pol.Cooldown = time.Minute
	alice := func(key string) Request {
		return Request{IdentityID: "id-1", Recipient: "alice@example.com", Message: key}
	}
	if res, err := f.svc.Reset(context.Background(), alice("k1"), pol); err != nil || res.Outcome != OutcomeSent {
		t.Fatalf("Reset = %q, %v; want sent while its mark is held", res.Outcome, err)
	}
	second := make(chan Outcome)
	go func() {
		res, err := f.svc.Reset(context.Background(), alice("k2"), pol)
		if err != nil {
			t.Error(err)
		}
		second <- res.Outcome
	}()
	select {
	case out := <-second:
		t.Fatalf("second Reset = %q before the first one's mark was written", out)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.ids.patchGate) // the mark goes through
	if out := <-second; out != OutcomeCooldown {
		t.Errorf("second Reset = %q, want cooldown: it must see the first mail's mark", out)
	}
	f.svc.Wait()
	if diff := cmp.Diff([]string{"get", "issue", "render", "set", "revoke", "send", "patch", "get"}, f.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// A reset reports where its time went, recorded where each call is made:
// the Kratos calls (lookup, write, revocation) and the plugin calls
// (password, the rendering check, the send), for the courier handler's
// "courier message handled" line.
func TestResetReportsWhereItsTimeWent(t *testing.T) {
	t.Parallel()
	const pause = 3 * time.Millisecond
	f := newFixture(nil)
	f.svc.ids = slowIdentities{f.ids, pause}
	fake := f.svc.mail.(*sdktest.Fake)
	render, send := fake.RenderF, fake.SendMessageF
	fake.RenderF = func(ctx context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
		time.Sleep(pause)
		return render(ctx, r)
	}
	fake.SendMessageF = func(ctx context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
		time.Sleep(pause)
		return send(ctx, r)
	}
	start := time.Now()
	res, err := f.resetResult(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, policy)
	total := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// Lookup, write and revocation wait on Kratos; render and send on the
	// plugin; neither part holds the other.
	if res.Spent.Kratos < 3*pause || res.Spent.Plugin < 2*pause || res.Spent.Kratos+res.Spent.Plugin > total {
		t.Errorf("spent kratos=%s plugin=%s of %s, want at least %s and %s and no more than the whole", res.Spent.Kratos, res.Spent.Plugin, total, 3*pause, 2*pause)
	}
}

// slowIdentities is a Kratos whose every answer to a reset takes pause.
type slowIdentities struct {
	*identities
	pause time.Duration
}

func (s slowIdentities) Identity(ctx context.Context, id string) (*kratosadmin.Identity, error) {
	time.Sleep(s.pause)
	return s.identities.Identity(ctx, id)
}

func (s slowIdentities) SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error {
	time.Sleep(s.pause)
	return s.identities.SetPassword(ctx, id, u)
}

func (s slowIdentities) RevokeSessions(ctx context.Context, id string) error {
	time.Sleep(s.pause)
	return s.identities.RevokeSessions(ctx, id)
}

func TestResetWithoutSessionRevocation(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	pol := policy
	pol.RevokeSessions = false
	if _, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, pol); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"get", "issue", "render", "set", "send", "patch"}, f.calls); diff != "" {
		t.Errorf("call order (-want +got):\n%s", diff)
	}
}

func TestResetRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		req       Request
		wantErr   error
		wantCalls []string
	}{
		{"unknown identity", Request{IdentityID: "nobody", Recipient: "alice@example.com"}, kratosadmin.ErrNotFound, []string{"get"}},
		{"recipient not a recovery address", Request{IdentityID: "id-1", Recipient: "eve@example.com"}, ErrRecipientMismatch, []string{"get"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			_, err := f.reset(context.Background(), tt.req, policy)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reset = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantCalls, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResetFailuresAreReported(t *testing.T) {
	t.Parallel()
	f := newFixture(fmt.Errorf("smtp connect: refused: %w", sdk.ErrUnavailable))
	_, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, policy)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "send temporary password mail: smtp connect") {
		t.Fatalf("Reset = %v, want the SMTP stage and sdk.ErrUnavailable", err)
	}

	f = newFixture(nil)
	f.ids.setErr = fmt.Errorf("update identity: %w", kratosadmin.ErrUnavailable)
	_, err = f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com"}, policy)
	if !errors.Is(err, kratosadmin.ErrUnavailable) {
		t.Fatalf("Reset = %v, want kratosadmin.ErrUnavailable", err)
	}
	if len(f.sent) != 0 {
		t.Errorf("a password that was never set was mailed")
	}
}

// The mark is written after the update, so the update never carries it.
var cmpIgnoreMailedAt = cmp.FilterPath(func(p cmp.Path) bool {
	return strings.Contains(p.GoString(), KeyMailedAt)
}, cmp.Ignore())

func TestCooldownAndDuplicates(t *testing.T) {
	t.Parallel()
	alice := func(key string) Request {
		return Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: key}
	}
	tests := []struct {
		name     string
		first    Request
		failSend bool // the first attempt's mail is not accepted
		after    time.Duration
		cooldown time.Duration
		second   Request
		want     Outcome
	}{
		{"retry of a handled message", alice("k1"), false, time.Second, time.Minute, alice("k1"), OutcomeDuplicate},
		{"retry of a handled message after the cooldown", alice("k1"), false, time.Hour, time.Minute, alice("k1"), OutcomeDuplicate},
		{"new recovery inside the cooldown", alice("k1"), false, time.Second, time.Minute, alice("k2"), OutcomeCooldown},
		{"new recovery after the cooldown", alice("k1"), false, 61 * time.Second, time.Minute, alice("k2"), OutcomeSent},
		{"cooldown off", alice("k1"), false, time.Second, 0, alice("k2"), OutcomeSent},
		{"retry after a failed mail", alice("k1"), true, time.Second, time.Minute, alice("k1"), OutcomeSent},
		{"new recovery after a failed mail", alice("k1"), true, time.Second, time.Minute, alice("k2"), OutcomeSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var sendErr error
			if tt.failSend {
				sendErr = fmt.Errorf("smtp data: %w", sdk.ErrUnavailable)
			}
			f := newFixture(sendErr)
			clock := now
			f.svc.now = func() time.Time { return clock }
			pol := policy
			pol.Cooldown = tt.cooldown
			if _, err := f.reset(context.Background(), tt.first, pol); (err != nil) != tt.failSend {
				t.Fatalf("first Reset: %v", err)
			}
			f.svc.mail.(*sdktest.Fake).SendMessageF = func(context.Context, *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
				f.calls = append(f.calls, "send")
				return &sdk.SendMessageResponse{}, nil
			}
			clock = now.Add(tt.after)
			updates := len(f.ids.updates)
			got, err := f.reset(context.Background(), tt.second, pol)
			if err != nil || got != tt.want {
				t.Fatalf("second Reset = %q, %v; want %q", got, err, tt.want)
			}
			if changed := len(f.ids.updates) > updates; changed != (tt.want == OutcomeSent) {
				t.Errorf("second Reset changed the password: %v, want %v", changed, tt.want == OutcomeSent)
			}
		})
	}
}

// Concurrent recoveries of one identity in one process run one at a time,
// so the password Kratos holds at the end is the one in the last mail sent.
func TestConcurrentResetsMailTheLastPassword(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	var (
		mu       sync.Mutex
		n        int
		lastSent string
	)
	fake := f.svc.mail.(*sdktest.Fake)
	fake.IssuePasswordF = func(context.Context, *sdk.IssuePasswordRequest) (*sdk.IssuePasswordResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return &sdk.IssuePasswordResponse{Password: fmt.Sprintf("pw-%d", n)}, nil
	}
	fake.SendMessageF = func(_ context.Context, r *sdk.SendMessageRequest) (*sdk.SendMessageResponse, error) {
		time.Sleep(time.Millisecond) // widen the window a missing lock would leave open
		mu.Lock()
		defer mu.Unlock()
		lastSent = r.Password.Password
		return &sdk.SendMessageResponse{}, nil
	}
	var ids sync.Mutex
	f.svc.ids = lockedIdentities{ids: f.ids, mu: &ids}
	pol := policy
	pol.Cooldown = 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, err := f.svc.Reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com", Message: fmt.Sprint(i)}, pol)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f.svc.Wait()
	last := f.ids.updates[len(f.ids.updates)-1].Password
	if last != lastSent {
		t.Errorf("Kratos holds %s but the last mail carried %s", last, lastSent)
	}
}

// lockedIdentities makes the in-memory Kratos safe for concurrent use
// without ordering the callers, as the real one is.
type lockedIdentities struct {
	ids *identities
	mu  *sync.Mutex
}

func (l lockedIdentities) Identity(ctx context.Context, id string) (*kratosadmin.Identity, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids.Identity(ctx, id)
}

func (l lockedIdentities) SetPassword(ctx context.Context, id *kratosadmin.Identity, u kratosadmin.PasswordUpdate) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids.SetPassword(ctx, id, u)
}

func (l lockedIdentities) FindByIdentifier(ctx context.Context, identifier string) (*kratosadmin.Identity, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids.FindByIdentifier(ctx, identifier)
}

func (l lockedIdentities) Patch(ctx context.Context, id string, ops ...kratosadmin.Op) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids.Patch(ctx, id, ops...)
}

func (l lockedIdentities) RevokeSessions(ctx context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids.RevokeSessions(ctx, id)
}

func TestSameAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stored, given string
		want          bool
	}{
		{"alice@example.com", "alice@example.com", true},
		{"alice@example.com", "Alice@EXAMPLE.com", true},
		{"alice@example.com", "alice@example.com.", true},
		{"kate@example.com", "\u212Aate@example.com", false}, // KELVIN SIGN folds to k in Unicode
		{"sam@example.com", "\u017Fam@example.com", false},   // LATIN SMALL LETTER LONG S folds to s
		{"alice@example.com", "alice@examp\u2139e.com", false},
		{"jürgen@bücher.de", "jürgen@xn--bcher-kva.de", true},
		{"jürgen@bücher.de", "jürgen@BÜCHER.de", true}, // IDNA maps a domain's case, as DNS does
		{"jürgen@bücher.de", "JÜRGEN@bücher.de", false},
		{"alice@example.com", "alice@example.org", false},
		{"alice@example.com", "alice", false},
		{"alice@example.com", "@example.com", false},
		{"alice@example.com", "alice@", false},
		{"alice@example.com", "bob@example.com", false},
	}
	for _, tt := range tests {
		if got := sameAddress(tt.stored, tt.given); got != tt.want {
			t.Errorf("sameAddress(%q, %q) = %v, want %v", tt.stored, tt.given, got, tt.want)
		}
	}
}

// The mail goes to the address as Kratos stores it, never to the caller's
// spelling of it; a look-alike is refused before anything changes.
func TestRecipientIsTheStoredAddress(t *testing.T) {
	t.Parallel()
	f := newFixture(nil)
	if _, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "ALICE@Example.COM", Message: "k1"}, keepPolicy); err != nil {
		t.Fatal(err)
	}
	if got := f.sent[0].Recipient; got != "alice@example.com" {
		t.Errorf("mailed to %q, want the stored alice@example.com", got)
	}
	f = newFixture(nil)
	f.ids.byID["id-1"].RecoveryAddresses = []string{"kate@example.com"}
	_, err := f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "\u212Aate@example.com", Message: "k1"}, keepPolicy)
	if !errors.Is(err, ErrRecipientMismatch) || len(f.ids.updates) != 0 || len(f.sent) != 0 {
		t.Errorf("Kelvin-sign recipient: Reset = %v, %d updates, %d mails; want ErrRecipientMismatch and nothing done", err, len(f.ids.updates), len(f.sent))
	}
}

// Kratos's own code or link of the message that asked for a self-service
// reset reaches the mail, the one rendered as a check and the one sent,
// and never the log; an admin reset carries neither.
func TestResetHandsKratosCodeToTheMail(t *testing.T) {
	t.Parallel()
	const (
		code = "482913"
		link = "http://127.0.0.1:4433/self-service/recovery?flow=f-1&token=tok-secret-77"
	)
	tests := []struct {
		name string
		req  Request
		pol  Policy
	}{
		{"code method", Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: code, KratosCode: code}, keepPolicy},
		{"link method", Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: link, KratosURL: link}, keepPolicy},
		{"admin reset", Request{IdentityID: "id-1", Trigger: "admin"}, policy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(nil)
			var rendered []*sdk.PasswordMessage
			f.svc.mail.(*sdktest.Fake).RenderF = func(_ context.Context, r *sdk.RenderRequest) (*sdk.RenderResponse, error) {
				rendered = append(rendered, r.Password)
				return &sdk.RenderResponse{Subject: "s", TextBody: "t"}, nil
			}
			if out, err := f.reset(context.Background(), tt.req, tt.pol); err != nil || out != OutcomeSent {
				t.Fatalf("Reset = %q, %v; want sent", out, err)
			}
			if len(rendered) != 1 || len(f.sent) != 1 {
				t.Fatalf("rendered %d and sent %d mails, want one each", len(rendered), len(f.sent))
			}
			for what, p := range map[string]*sdk.PasswordMessage{"rendered": rendered[0], "sent": f.sent[0].Password} {
				if p.RecoveryCode != tt.req.KratosCode || p.RecoveryURL != tt.req.KratosURL {
					t.Errorf("%s mail: RecoveryCode %q, RecoveryURL %q; want %q, %q", what, p.RecoveryCode, p.RecoveryURL, tt.req.KratosCode, tt.req.KratosURL)
				}
			}
			for _, secret := range []string{code, "tok-secret-77"} {
				if strings.Contains(f.logs.String(), secret) {
					t.Errorf("Kratos's code or link reached the log:\n%s", f.logs.String())
				}
			}
		})
	}
}

// The audit line carries identity_id and trigger once in either log format,
// on success and on failure (it used to repeat both: its logger had them).
func TestAuditLineNamesEachKeyOnce(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		for _, sendErr := range []error{nil, sdk.ErrUnavailable} {
			f := newFixture(sendErr)
			var logs bytes.Buffer
			f.svc.log = slog.New(slog.NewJSONHandler(&logs, nil))
			key, audit := `"%s":`, `"audit":true`
			if format == "text" {
				f.svc.log = slog.New(slog.NewTextHandler(&logs, nil))
				key, audit = ` %s=`, ` audit=true`
			}
			_, _ = f.reset(context.Background(), Request{IdentityID: "id-1", Recipient: "alice@example.com", Trigger: "self-service", Message: "k1"}, policy)
			var line string
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, audit) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("%s, send error %v: no audit line:\n%s", format, sendErr, logs.String())
			}
			for _, k := range []string{"identity_id", "trigger", "event", "outcome"} {
				if n := strings.Count(line, fmt.Sprintf(key, k)); n != 1 {
					t.Errorf("%s, send error %v: %s appears %d times in the audit line, want once:\n%s", format, sendErr, k, n, line)
				}
			}
		}
	}
}
