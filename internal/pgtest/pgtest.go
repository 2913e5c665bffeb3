// Package pgtest starts a throwaway PostgreSQL cluster for tests.
//
// It runs the server binaries of Debian's postgresql package
// (/usr/lib/postgresql/<version>/bin; `scripts/deps.sh postgres` installs
// them, and `scripts/deps.sh` with no target does too). A test that needs
// PostgreSQL calls [NewDatabase] and gets the DSN of a fresh, empty database
// of its own:
//
//	dsn := pgtest.NewDatabase(t) // postgres://user:pass@127.0.0.1:port/db?sslmode=disable
//
// All such databases of one test binary live in one cluster, the shared one
// ([Shared]): started at the first call (about 2 s, mostly initdb), on a free
// loopback port, so the test binaries of several packages, which go test runs
// in parallel, each have their own. Each database has its own role, with a
// password, which owns it; it is dropped when the test ends. The cluster is
// tuned for tests, not for keeping data: fsync, synchronous_commit and
// full_page_writes are off.
//
// A test that takes PostgreSQL down while its code runs (an outage) starts a
// private cluster with [NewCluster] and calls [Cluster.Stop] or [Cluster.Kill],
// then [Cluster.Start]; the shared cluster refuses to be stopped, since the
// other tests of the binary use it.
//
// # Cleanup
//
// A cluster lives in a temporary folder (its data, its unix socket and its
// server log). Each cluster has a watchdog: a small shell process whose
// standard input is a pipe from the test binary. When the pipe closes, the
// watchdog stops the server (immediate shutdown) and removes the folder. A
// private cluster closes its pipe in the cleanup of its test and waits for
// the watchdog; the shared cluster's pipe closes when the test binary exits,
// however it exits (tests done, a panic, -timeout, a signal, SIGKILL), so no
// TestMain is needed and no server outlives its test binary for more than
// the moment its shutdown takes.
//
// As root, the server, the tools and the watchdog run as the postgres user
// (PostgreSQL refuses to run as root; Debian's package creates that user).
package pgtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binGlob finds the server binaries of Debian's postgresql package.
const binGlob = "/usr/lib/postgresql/*/bin/initdb"

// Cluster is a running (or, after Stop or Kill, stopped) PostgreSQL cluster
// listening on 127.0.0.1:Port() and on a unix socket in its temporary folder.
type Cluster struct {
	bin    string              // the server's bin folder
	dir    string              // the temporary folder: data/, the socket, server.log
	port   int                 // on 127.0.0.1; the same across Stop and Start
	cred   *syscall.Credential // the postgres user's when running as root
	shared bool                // the test binary's shared cluster: never stopped
	// watchdog stops the server and removes dir once release closes.
	watchdog *exec.Cmd
	release  *os.File

	// mu is held for reading while a database is created or dropped, and for
	// writing while the server is stopped or started.
	mu      sync.RWMutex
	running bool
}

var shared struct {
	once    sync.Once
	cluster *Cluster
	took    time.Duration
	err     error
}

// Shared returns the test binary's shared cluster, starting it at the first
// call. It runs until the test binary exits (see Cleanup in the package doc).
// If the server cannot start, every test that asks for it fails.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	c, first, err := sharedCluster()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if first {
		t.Logf("pgtest: shared PostgreSQL cluster on 127.0.0.1:%d started in %v", c.port, shared.took.Round(time.Millisecond))
	}
	return c
}

// sharedCluster starts the shared cluster at the first call; first says
// whether this call started it.
func sharedCluster() (c *Cluster, first bool, err error) {
	shared.once.Do(func() {
		first = true
		start := time.Now()
		shared.cluster, shared.err = startCluster(true)
		shared.took = time.Since(start)
	})
	return shared.cluster, first, shared.err
}

// NewDatabase creates a database in the shared cluster and returns its DSN;
// see [Cluster.NewDatabase].
func NewDatabase(t testing.TB) string {
	t.Helper()
	return Shared(t).NewDatabase(t)
}

// NewCluster starts a private cluster for t, which may stop and start it. At
// the end of t it is stopped and its folder removed.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster(false)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Port is the cluster's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// AdminDSN is the DSN of the superuser postgres, on database postgres, through
// the cluster's unix socket (no password: only the test binary's user and
// root can reach the socket).
func (c *Cluster) AdminDSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.dir, c.port)
}

// NewDatabase creates a database, empty but for the public schema, and a
// role with a password that owns it, both with the same random name; it
// returns the DSN postgres://name:password@127.0.0.1:port/name?sslmode=disable.
// The role is not a superuser. At the end of t the database (even with
// connections still open on it) and the role are dropped, unless the cluster
// is stopped then. Safe for parallel tests.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "pgtest_" + strings.ToLower(rand.Text())
	password := rand.Text()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.running {
		t.Fatalf("pgtest: NewDatabase: the cluster on port %d is stopped", c.port)
	}
	// The password is base32 and the name lowercase base32, so neither needs
	// quoting; the statements take no parameters.
	if err := c.admin("CREATE ROLE "+name+" LOGIN PASSWORD '"+password+"'", "CREATE DATABASE "+name+" OWNER "+name); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if !c.running {
			return // a private cluster left stopped: it goes as a whole
		}
		if err := c.admin("DROP DATABASE "+name+" WITH (FORCE)", "DROP ROLE "+name); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", name, password, c.port, name)
}

// admin runs statements as the superuser over the unix socket.
func (c *Cluster) admin(statements ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.AdminDSN())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(s)[0]+" "+strings.Fields(s)[1], err)
		}
	}
	return nil
}

// Stop shuts the server down as `pg_ctl stop -m fast` does: open sessions are
// ended (clients see an error, "terminating connection due to administrator
// command"), new connections are refused, until Start. The data stays.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.stop(t, "fast")
}

// Kill stops the server as a crash would (immediate shutdown: SIGQUIT, no
// checkpoint); Start recovers it. The committed data stays.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	c.stop(t, "immediate")
}

func (c *Cluster) stop(t testing.TB, mode string) {
	t.Helper()
	if c.shared {
		t.Fatalf("pgtest: the shared cluster cannot be stopped, other tests use it; start a private one with pgtest.NewCluster")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		t.Fatalf("pgtest: the cluster on port %d is already stopped", c.port)
	}
	if err := c.pgctl("stop", "-m", mode); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c.running = false
}

// Start starts a stopped server again, on the same port and data. It fails
// the test if another process took the port meanwhile.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		t.Fatalf("pgtest: the cluster on port %d is already running", c.port)
	}
	if err := c.startServer(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// startCluster creates a cluster in a new temporary folder and starts it.
func startCluster(isShared bool) (_ *Cluster, err error) {
	initdbs, _ := filepath.Glob(binGlob)
	if len(initdbs) == 0 {
		return nil, fmt.Errorf("the PostgreSQL server is not installed (no %s): run scripts/deps.sh postgres", binGlob)
	}
	// The newest major version: /usr/lib/postgresql/<major>/bin/initdb.
	slices.SortFunc(initdbs, func(a, b string) int { return majorVersion(a) - majorVersion(b) })
	c := &Cluster{bin: filepath.Dir(initdbs[len(initdbs)-1]), shared: isShared}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL does not run as root and there is no postgres user to run it as (Debian's postgresql package creates it): %v", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// A short path: the socket's (<dir>/.s.PGSQL.<port>) may have at most 107 bytes.
	if c.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			_ = os.RemoveAll(c.dir)
			return nil, err
		}
	}
	if err := c.startWatchdog(); err != nil {
		_ = os.RemoveAll(c.dir)
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.close()
		}
	}()
	if err := c.initdb(); err != nil {
		return nil, err
	}
	// A free port may be taken by another process before the server binds
	// it; then another one is tried.
	for try := 1; ; try++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		err = c.startServer()
		if err == nil || !errors.Is(err, errPortTaken) || try == 5 {
			return c, err
		}
	}
}

// majorVersion is the <major> of /usr/lib/postgresql/<major>/bin/initdb.
func majorVersion(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// startWatchdog starts the process that stops the server and removes the
// folder once c.release closes (see Cleanup in the package doc). It is in a
// session of its own so that a Ctrl-C in a terminal, which ends the test
// binary, does not end it too.
func (c *Cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	const script = `dir=$1; shift; read -r _ || :; "$@" >/dev/null 2>&1; rm -rf -- "$dir"`
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest-watchdog", c.dir,
		filepath.Join(c.bin, "pg_ctl"), "stop", "-D", c.data(), "-m", "immediate", "-w", "-t", "60")
	cmd.Dir = c.dir
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: c.cred}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return fmt.Errorf("starting the watchdog: %w", err)
	}
	c.watchdog, c.release = cmd, w
	return nil
}

// close stops the server and removes the folder, through the watchdog.
func (c *Cluster) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.release.Close()
	err := c.watchdog.Wait()
	c.running = false
	if err != nil {
		return fmt.Errorf("the watchdog stopping the cluster on port %d: %v", c.port, err)
	}
	return nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) log() string  { return filepath.Join(c.dir, "server.log") }

// settings for tests: speed over durability, loopback only.
const settings = `
# pgtest
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
`

func (c *Cluster) initdb() error {
	// The superuser's password only allows it over TCP too (scram-sha-256);
	// pgtest itself uses the unix socket (trust).
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := c.writeFile(pwfile, rand.Text()+"\n"); err != nil {
		return err
	}
	if err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
		"--no-sync", "--no-instructions"); err != nil {
		return err
	}
	_ = os.Remove(pwfile)
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, settings, c.dir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// errPortTaken is the error of a start whose port another process has.
var errPortTaken = errors.New("port taken")

// startServer starts the server on c.port and waits until it accepts connections.
func (c *Cluster) startServer() error {
	var logSize int64
	if fi, err := os.Stat(c.log()); err == nil {
		logSize = fi.Size()
	}
	err := c.pgctl("start", "-l", c.log(), "-o", "-p "+strconv.Itoa(c.port))
	if err == nil {
		c.running = true
		return nil
	}
	if strings.Contains(c.logSince(logSize), "Address already in use") {
		return fmt.Errorf("%w: 127.0.0.1:%d: %v", errPortTaken, c.port, err)
	}
	return err
}

// pgctl runs pg_ctl (start or stop) on the cluster, waiting for it to finish;
// on an error it adds the server log's newest lines.
func (c *Cluster) pgctl(action string, args ...string) error {
	var logSize int64
	if fi, err := os.Stat(c.log()); err == nil {
		logSize = fi.Size()
	}
	err := c.run("pg_ctl", append([]string{action, "-D", c.data(), "-w", "-t", "60"}, args...)...)
	if err != nil {
		return fmt.Errorf("%v\nserver log:\n%s", err, c.logSince(logSize))
	}
	return nil
}

// logSince returns the server log from offset on, at most its last 4 KiB.
func (c *Cluster) logSince(offset int64) string {
	f, err := os.Open(c.log())
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// run runs one of the server's tools, as the postgres user when root.
func (c *Cluster) run(tool string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, tool), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl start gives the server the log file (-l) as its output, so the
	// output pipe closes when pg_ctl exits.
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", tool, err, out)
	}
	return nil
}

// writeFile writes a file that the server's user can read.
func (c *Cluster) writeFile(name, content string) error {
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		return err
	}
	if c.cred != nil {
		return os.Chown(name, int(c.cred.Uid), int(c.cred.Gid))
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
