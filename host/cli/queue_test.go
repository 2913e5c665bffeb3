package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kratos-email-gateway/kratos-email-gateway/host/config"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/courier"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/kratosadmin"
	"github.com/kratos-email-gateway/kratos-email-gateway/host/outbox"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/pgtest"
	"github.com/kratos-email-gateway/kratos-email-gateway/internal/testlog"
)

// queueEnviron is a valid config's environment, with dsn as
// queue.postgres_dsn unless it is empty.
func queueEnviron(dsn string) []string {
	env := []string{"GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher}
	if dsn != "" {
		env = append(env, "GATEWAY_QUEUE__POSTGRES_DSN="+dsn)
	}
	return env
}

func TestQueueUsage(t *testing.T) {
	t.Parallel()
	env := queueEnviron("postgres://gateway@127.0.0.1:1/gateway")
	for _, args := range [][]string{
		{"queue"},
		{"queue", "bogus", "--config", shipped},
		{"queue", "migrate"},
		{"queue", "list"},
		{"queue", "list", "--config", shipped, "--state", "dead"},
		{"queue", "list", "--config", shipped, "--state", "available,dead"},
		{"queue", "list", "--config", shipped, "--queue", "default"},
		{"queue", "list", "--config", shipped, "--limit", "0"},
		{"queue", "list", "--config", shipped, "--limit", "10001"},
		{"queue", "list", "--config", shipped, "extra"},
		{"queue", "retry", "--config", shipped},
		{"queue", "retry", "--config", shipped, "x"},
		{"queue", "retry", "--config", shipped, "1", "2"},
		{"queue", "discard", "--config", shipped, "0"},
		{"queue", "discard", "--config", shipped, "-5"},
		{"queue", "discard", "7"},
		{"queue", "discard", "7", "--bogus"},
	} {
		if code, stdout, stderr := run(args, env...); code != 2 || stdout != "" || stderr == "" {
			t.Errorf("gateway %q: exit %d, stdout %q, stderr %q; want 2 with the problem on stderr", args, code, stdout, stderr)
		}
	}
	for args, want := range map[string]string{
		"queue --help":         "gateway queue list --config FILE [--state S,...]",
		"queue -h":             "gateway queue discard --config FILE ID",
		"queue migrate --help": "gateway queue migrate --config FILE",
		"queue list --help":    "-state string",
		"queue retry -h":       "gateway queue retry --config FILE ID",
		"queue discard --help": "gateway queue discard --config FILE ID",
	} {
		if code, stdout, stderr := run(strings.Fields(args), env...); code != 0 || !strings.Contains(stdout, want) || stderr != "" {
			t.Errorf("gateway %s: exit %d, stdout %q, stderr %q; want 0 with %q", args, code, stdout, stderr, want)
		}
	}
}

// Every queue command needs queue.postgres_dsn, and says where to set it;
// none prints the DSN, which may hold a password, whatever goes wrong.
func TestQueueCommandsNeedAndKeepTheDSN(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	password := regexp.MustCompile(`://[^:]+:([^@]+)@`).FindStringSubmatch(dsn)[1]
	commands := [][]string{{"migrate"}, {"list"}, {"retry", "1"}, {"discard", "1"}}
	tests := []struct {
		name, dsn, want string
	}{
		{name: "not set", dsn: "", want: "queue.postgres_dsn: not set; set it in the config file, or GATEWAY_QUEUE__POSTGRES_DSN"},
		{name: "wrong password", dsn: strings.Replace(dsn, password, "wrong-Secret-0042", 1), want: "queue.postgres_dsn"},
		{name: "no server", dsn: "postgres://gateway:wrong-Secret-0042@127.0.0.1:1/gateway?connect_timeout=5", want: "queue.postgres_dsn"},
		{name: "does not parse", dsn: "postgres://gateway:wrong-Secret-0042@127.0.0.1:port/gateway", want: "gateway: queue.postgres_dsn does not parse"},
		{name: "key=value", dsn: "host=127.0.0.1 port=1 user=gateway password=wrong-Secret-0042 connect_timeout=5", want: "queue.postgres_dsn"},
		{name: "not migrated", dsn: dsn, want: "run `gateway queue migrate --config FILE`"},
	}
	for _, tt := range tests {
		for _, cmd := range commands {
			if tt.name == "not migrated" && cmd[0] == "migrate" {
				continue
			}
			args := append([]string{"queue", cmd[0], "--config", shipped}, cmd[1:]...)
			code, stdout, stderr := run(args, queueEnviron(tt.dsn)...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("%s: gateway %q: exit %d, stderr %q; want 1 with %q", tt.name, args, code, stderr, tt.want)
			}
			for _, secret := range []string{"wrong-Secret-0042", password} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("%s: gateway %q printed the DSN's password: %s%s", tt.name, args, stdout, stderr)
				}
			}
		}
	}
}

// scriptedDelivery delivers by the message's body: "block" until released
// (or its job is cancelled), "gone" fails for good (the identity is gone:
// the job is discarded), anything else succeeds.
type scriptedDelivery struct {
	release chan struct{}
	mu      sync.Mutex
	tries   map[string]int
}

func (d *scriptedDelivery) Deliver(ctx context.Context, _ *config.Config, msg courier.Message) (courier.Answer, error) {
	d.mu.Lock()
	d.tries[msg.Body]++
	d.mu.Unlock()
	switch msg.Body {
	case "block":
		select {
		case <-d.release:
		case <-ctx.Done():
			return courier.Answer{}, ctx.Err()
		}
	case "gone":
		return courier.Answer{}, fmt.Errorf("look up identity: %w", kratosadmin.ErrNotFound)
	}
	return courier.Answer{Status: "sent", Delivery: "as_rendered"}, nil
}

func (d *scriptedDelivery) triesOf(body string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tries[body]
}

type noObserver struct{}

func (noObserver) Job(string, string) {}

// The queue commands against a serving host's outbox: migrate, list with
// filters, discard and retry with what each refuses, and the audit lines.
func TestQueueCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	env := queueEnviron(dsn)
	queue := func(args ...string) (int, string, string) {
		t.Helper()
		code, stdout, stderr := run(append([]string{"queue", args[0], "--config", shipped}, args[1:]...), env...)
		if strings.Contains(stdout+stderr, dsn) || strings.Contains(stdout+stderr, "@127.0.0.1") {
			t.Errorf("gateway queue %q printed the DSN:\n%s%s", args, stdout, stderr)
		}
		return code, stdout, stderr
	}

	code, stdout, stderr := queue("migrate")
	if code != 0 || !strings.Contains(stdout, "migrated the queue's schema: applied River versions 1, 2, 3,") {
		t.Fatalf("migrate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, stderr = queue("migrate"); code != 0 || stdout != "the queue's schema is up to date: nothing to migrate\n" {
		t.Fatalf("migrate again: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ = queue("list"); code != 0 || stdout != "no jobs\n" {
		t.Errorf("list of an empty queue: exit %d, %q", code, stdout)
	}

	// The serving host: one worker per queue, so the mail queue's jobs
	// wait behind the one that blocks.
	cfg, err := config.Load(shipped, env)
	if err != nil {
		t.Fatal(err)
	}
	d := &scriptedDelivery{release: make(chan struct{}), tries: map[string]int{}}
	defer close(d.release)
	ob, err := outbox.Open(ctx, dsn, outbox.Options{Workers: 1, MaxAttempts: 5, Retention: time.Hour}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx, outbox.Deps{Config: func() *config.Config { return cfg }, Deliver: d, Observer: noObserver{}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ob.Stop(ctx)
	})
	enqueue := func(template, body, identity string) int64 {
		t.Helper()
		msg := courier.Message{Recipient: "user@example.org", Subject: "s", Body: body, TemplateType: template, IdentityID: identity}
		if courier.IsRecovery(template) {
			msg.RecoveryCode = body
		}
		if _, err := ob.Enqueue(ctx, msg); err != nil {
			t.Fatal(err)
		}
		jobs, err := ob.List(ctx, outbox.Filter{Limit: 1})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("List = %v, %v", jobs, err)
		}
		return jobs[0].ID
	}
	stateOf := func(id int64) string {
		jobs, err := ob.List(ctx, outbox.Filter{Limit: outbox.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.ID == id {
				return j.State
			}
		}
		return "gone"
	}
	waitFor := func(id int64, state string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); stateOf(id) != state; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("job %d is %s, want %s", id, stateOf(id), state)
			}
		}
	}
	blocked := enqueue("login_code_valid", "block", "")
	waitFor(blocked, "running")
	waiting1 := enqueue("verification_code_valid", "wait-1", "identity-w1")
	waiting2 := enqueue("verification_code_valid", "wait-2", "identity-w2")
	gone := enqueue(courier.TemplateRecoveryCodeValid, "gone", "identity-gone")
	done := enqueue(courier.TemplateRecoveryCodeValid, "done", "identity-done")
	waitFor(gone, "cancelled")
	waitFor(done, "completed")

	// list: a table, newest first, with filters.
	rows := func(stdout string) []string {
		var ids []string
		for i, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if i > 0 && !strings.HasPrefix(line, "(") {
				ids = append(ids, strings.Fields(line)[0]+" "+strings.Fields(line)[2])
			}
		}
		return ids
	}
	id := func(n int64, state string) string { return fmt.Sprintf("%d %s", n, state) }
	listTests := []struct {
		args []string
		want []string
	}{
		{nil, []string{id(done, "completed"), id(gone, "cancelled"), id(waiting2, "available"), id(waiting1, "available"), id(blocked, "running")}},
		{[]string{"--state", "failed"}, []string{id(gone, "cancelled")}},
		{[]string{"--state", "available,running", "--queue", "mail"}, []string{id(waiting2, "available"), id(waiting1, "available"), id(blocked, "running")}},
		{[]string{"--queue", "recovery"}, []string{id(done, "completed"), id(gone, "cancelled")}},
		{[]string{"--limit", "2"}, []string{id(done, "completed"), id(gone, "cancelled")}},
		{[]string{"--state", "discarded"}, nil},
	}
	for _, tt := range listTests {
		code, stdout, stderr := queue(append([]string{"list"}, tt.args...)...)
		if got := rows(stdout); code != 0 || !slices.Equal(got, tt.want) {
			t.Errorf("list %q: exit %d, rows %q, want %q\n%s%s", tt.args, code, got, tt.want, stdout, stderr)
		}
	}
	_, stdout, _ = queue("list", "--state", "cancelled")
	header := regexp.MustCompile(`^ID +QUEUE +STATE +ATTEMPT +CREATED +SCHEDULED +TEMPLATE +IDENTITY +LAST ERROR\n`)
	line := regexp.MustCompile(fmt.Sprintf(`\n%d +recovery +cancelled +1/5 +20\d\d-\S+Z +20\d\d-\S+Z +recovery_code_valid +identity-gone +look up identity: identity not found in Kratos\n`, gone))
	if !header.MatchString(stdout) || !line.MatchString(stdout) {
		t.Errorf("list --state cancelled:\n%s", stdout)
	}
	if _, stdout, _ = queue("list", "--limit", "2"); !strings.Contains(stdout, "(the newest 2; --limit N lists more)") {
		t.Errorf("list --limit 2 does not say there may be more:\n%s", stdout)
	}

	// discard and retry: what each does, and what each refuses.
	changeTests := []struct {
		args     []string
		wantCode int
		want     string // on stdout for 0, on stderr for 1
		audit    string
	}{
		{[]string{"discard", fmt.Sprint(waiting1)}, 0, fmt.Sprintf("job %d (mail, verification_code_valid): available → cancelled: it will not run (gateway queue retry %d runs it after all)\n", waiting1, waiting1),
			fmt.Sprintf(`"msg":"job discarded by an operator","audit":true,"job_id":%d,"queue":"mail","template_type":"verification_code_valid","previous_state":"available","state":"cancelled","identity_id":"identity-w1","event":"job_discarded","reason":"operator"`, waiting1)},
		{[]string{"discard", fmt.Sprint(waiting1)}, 0, fmt.Sprintf("job %d (mail, verification_code_valid) is already cancelled: nothing changed\n", waiting1), ""},
		{[]string{"discard", "987654"}, 1, "gateway: job 987654: no such job in the queue", ""},
		{[]string{"retry", "987654"}, 1, "gateway: job 987654: no such job in the queue", ""},
		{[]string{"retry", fmt.Sprint(done)}, 1, fmt.Sprintf("gateway: job %d is completed: its mail was delivered, and a retry would send it again\n", done), ""},
		{[]string{"discard", fmt.Sprint(done)}, 1, fmt.Sprintf("gateway: job %d is completed: its mail was delivered\n", done), ""},
		{[]string{"retry", fmt.Sprint(blocked)}, 1, fmt.Sprintf("gateway: job %d is running: it is being delivered now", blocked), ""},
		// The id may come first.
		{[]string{"retry", fmt.Sprint(gone), "--config", shipped}, 0, fmt.Sprintf("job %d (recovery, recovery_code_valid): cancelled → available: it runs again now\n", gone),
			fmt.Sprintf(`"msg":"job retried by an operator","audit":true,"job_id":%d,`, gone)},
	}
	for _, tt := range changeTests {
		code, stdout, stderr := queue(tt.args...)
		out := stdout
		if tt.wantCode != 0 {
			out = stderr
		}
		if code != tt.wantCode || !strings.Contains(out, tt.want) || !strings.Contains(stderr, tt.audit) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d with %q and the audit line %q", tt.args, code, stdout, stderr, tt.wantCode, tt.want, tt.audit)
		}
	}
	// The retried job ran again (and failed for good again).
	for deadline := time.Now().Add(20 * time.Second); d.triesOf("gone") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the retried job did not run again")
		}
	}
	waitFor(gone, "cancelled")
	_, stdout, _ = queue("list", "--state", "cancelled", "--queue", "mail")
	if !regexp.MustCompile(fmt.Sprintf(`\n%d .* identity-w1 +discarded by an operator\n`, waiting1)).MatchString(stdout) {
		t.Errorf("the discarded job is not listed as discarded by an operator:\n%s", stdout)
	}

	// Discarding the running job stops its worker; the next one runs.
	code, stdout, stderr = queue("discard", fmt.Sprint(blocked))
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("job %d (mail, login_code_valid) is running: its worker was asked to stop", blocked)) {
		t.Errorf("discard of the running job: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	waitFor(blocked, "cancelled")
	waitFor(waiting2, "completed")
	if n := d.triesOf("wait-1"); n != 0 {
		t.Errorf("the discarded job ran %d times", n)
	}
}

// On admin.listen, what is under /admin/queue/ goes to River's UI, the
// rest to the admin API.
func TestAdminListenerRouting(t *testing.T) {
	t.Parallel()
	answer := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, name+" "+r.URL.Path) })
	}
	h := withQueueUI(answer("admin"), answer("ui"))
	for path, want := range map[string]string{
		"/admin/queue/":                      "ui /admin/queue/",
		"/admin/queue/api/jobs":              "ui /admin/queue/api/jobs",
		"/admin/identities/x/reset":          "admin /admin/identities/x/reset",
		"/admin/queued":                      "admin /admin/queued",
		"/":                                  "admin /",
		"/admin/queue/../identities/x/reset": "",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if want == "" {
			// A path that leaves the prefix is redirected to its clean form.
			if rec.Code/100 != 3 || rec.Header().Get("Location") != "/admin/identities/x/reset" {
				t.Errorf("GET %s = %d %q, want a redirect", path, rec.Code, rec.Body)
			}
			continue
		}
		if rec.Body.String() != want {
			t.Errorf("GET %s answered %q, want %q", path, rec.Body, want)
		}
	}
	rec := httptest.NewRecorder()
	withQueueUI(answer("admin"), nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/queue/", nil))
	if rec.Body.String() != "admin /admin/queue/" {
		t.Errorf("without the outbox, /admin/queue/ answered %q, want the admin API's answer", rec.Body)
	}
}

// serve with the outbox and admin.listen: River's UI answers under
// /admin/queue/ with admin.api_key and 401 without; the admin API still
// answers beside it; the DSN is never logged.
func TestServeQueueUI(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := free.Addr().String()
	free.Close()
	const adminKey = "admin-key-0123456789abcdef"
	ctx, cancel := context.WithCancel(context.Background())
	var stderr testlog.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, Env{Args: []string{"serve", "--config", shipped}, Stdout: io.Discard, Stderr: &stderr, Environ: []string{
			"GATEWAY_PLUGIN__PATH=" + pluginBin, "GATEWAY_WEBHOOK__API_KEY=0123456789abcdef", cipher,
			"GATEWAY_LISTEN=127.0.0.1:0", "GATEWAY_ADMIN__LISTEN=" + admin, "GATEWAY_ADMIN__API_KEY=" + adminKey,
			"GATEWAY_QUEUE__POSTGRES_DSN=" + dsn, "GATEWAY_QUEUE__MIGRATE=auto",
		}})
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d:\n%s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
		if strings.Contains(stderr.String(), dsn) || strings.Contains(stderr.String(), "@127.0.0.1") {
			t.Errorf("serve logged the DSN:\n%s", stderr.String())
		}
	}()
	get := func(method, path, key string) (int, string, error) {
		r, _ := http.NewRequest(method, "http://"+admin+path, nil)
		if key != "" {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, _, err := get("GET", "/admin/queue/", ""); err == nil {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin.listen does not answer:\n%s", stderr.String())
		}
	}
	tests := []struct {
		method, path, key string
		want              int
		body              string
	}{
		{"GET", "/admin/queue/", adminKey, http.StatusOK, "<title>River</title>"},
		{"GET", "/admin/queue/api/jobs", adminKey, http.StatusOK, `"data":[]`},
		{"GET", "/admin/queue/", "", http.StatusUnauthorized, "missing or wrong admin API key"},
		{"GET", "/admin/queue/api/jobs", "", http.StatusUnauthorized, "missing or wrong admin API key"},
		{"GET", "/admin/queue/api/jobs", "0123456789abcdef", http.StatusUnauthorized, "missing or wrong admin API key"},
		{"GET", "/admin/queue/login", "", http.StatusOK, `type="password"`},
		{"POST", "/admin/identities/x/reset", "", http.StatusUnauthorized, "missing or wrong admin API key"},
	}
	for _, tt := range tests {
		code, body, err := get(tt.method, tt.path, tt.key)
		if err != nil || code != tt.want || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s (key %q) = %d %.200s, %v; want %d with %q", tt.method, tt.path, tt.key, code, body, err, tt.want, tt.body)
		}
	}
}
