package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Two databases are apart: each is its own role's, reached with its DSN,
// and a table made in one is not in the other.
func TestTwoDatabases(t *testing.T) {
	t.Parallel()
	start := time.Now()
	dsn1 := NewDatabase(t)
	t.Logf("first NewDatabase (with the cluster's start): %v", time.Since(start))
	start = time.Now()
	dsn2 := NewDatabase(t)
	t.Logf("second NewDatabase: %v", time.Since(start))
	if dsn1 == dsn2 {
		t.Fatalf("two databases, one DSN: %s", dsn1)
	}
	ctx := context.Background()
	for _, dsn := range []string{dsn1, dsn2} {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme != "postgres" || u.Hostname() != "127.0.0.1" || u.Query().Get("sslmode") != "disable" {
			t.Errorf("DSN %s: want postgres://user:pass@127.0.0.1:port/db?sslmode=disable", dsn)
		}
		var user, db string
		var super bool
		err = connect(t, dsn).QueryRow(ctx, "SELECT current_user, current_database(), usesuper FROM pg_user WHERE usename = current_user").Scan(&user, &db, &super)
		if err != nil {
			t.Fatal(err)
		}
		if user != u.User.Username() || db != strings.TrimPrefix(u.Path, "/") || super {
			t.Errorf("DSN %s: connected as %s (superuser %v) to %s", dsn, user, super, db)
		}
	}
	c1, c2 := connect(t, dsn1), connect(t, dsn2)
	if _, err := c1.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("the owner creates a table in public: %v", err)
	}
	var n int
	if err := c1.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count = %d, %v; want 1", n, err)
	}
	if _, err := c2.Exec(ctx, "SELECT * FROM t"); err == nil {
		t.Fatal("the table made in the first database is in the second")
	}
}

// The role's password is checked: a wrong one is refused.
func TestWrongPasswordRefused(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "wrong")
	conn, err := pgx.Connect(context.Background(), u.String())
	if err == nil {
		_ = conn.Close(context.Background())
		t.Fatal("connected with a wrong password")
	}
	if !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("err = %v, want password authentication failed", err)
	}
}

// The database and its role are dropped at the end of the test, even with
// a connection still open.
func TestDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("uses", func(t *testing.T) {
		dsn := NewDatabase(t)
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		// Left open on purpose: DROP DATABASE ... WITH (FORCE) ends it.
		_ = conn
		u, _ := url.Parse(dsn)
		name = u.User.Username()
	})
	var dbs, roles int
	err := connect(t, Shared(t).AdminDSN()).QueryRow(context.Background(),
		"SELECT (SELECT count(*) FROM pg_database WHERE datname = $1), (SELECT count(*) FROM pg_roles WHERE rolname = $1)", name).Scan(&dbs, &roles)
	if err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || roles != 0 {
		t.Errorf("after the test: %d databases and %d roles named %s, want none", dbs, roles, name)
	}
}

// Many parallel tests each get a database of their own (run with -race).
func TestParallelDatabases(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			dsn := NewDatabase(t)
			var one int
			if err := connect(t, dsn).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1 = %d, %v", one, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[dsn] {
				t.Errorf("DSN given twice: %s", dsn)
			}
			seen[dsn] = true
		})
	}
}

// A private cluster goes down with Stop and Kill and comes back with Start,
// on the same port and with its data.
func TestStopStart(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := NewCluster(t)
	t.Logf("NewCluster: %v", time.Since(start))
	dsn := c.NewDatabase(t)
	ctx := context.Background()
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	count := func(conn *pgx.Conn) (int, error) {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
		return n, err
	}

	for _, down := range []struct {
		name string
		stop func(testing.TB)
	}{{"Stop", c.Stop}, {"Kill", c.Kill}} {
		down.stop(t)
		if _, err := count(conn); err == nil {
			t.Fatalf("after %s: a query on an open connection works", down.name)
		}
		if conn, err := pgx.Connect(ctx, dsn); err == nil {
			_ = conn.Close(ctx)
			t.Fatalf("after %s: a new connection works", down.name)
		}
		start := time.Now()
		c.Start(t)
		t.Logf("Start after %s: %v", down.name, time.Since(start))
		conn = connect(t, dsn)
		if n, err := count(conn); err != nil || n != 1 {
			t.Fatalf("after %s and Start: count = %d, %v; want 1", down.name, n, err)
		}
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

// The shared cluster refuses Stop and Kill: the other tests use it.
func TestSharedRefusesStop(t *testing.T) {
	t.Parallel()
	c := Shared(t)
	for _, stop := range []func(testing.TB){c.Stop, c.Kill} {
		rec := &fatalRecorder{TB: t}
		stop(rec)
		if !strings.Contains(rec.msg, "NewCluster") {
			t.Errorf("Fatalf(%q), want one naming NewCluster", rec.msg)
		}
	}
	var one int
	if err := connect(t, NewDatabase(t)).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("the shared cluster after the refused stops: %v", err)
	}
}

// A private cluster's folder and server are gone when its test ends.
func TestNewClusterCleanup(t *testing.T) {
	t.Parallel()
	var c *Cluster
	t.Run("uses", func(t *testing.T) {
		c = NewCluster(t)
		c.NewDatabase(t)
	})
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("the cluster's folder after its test: %v, want it removed", err)
	}
	if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port())); err == nil {
		_ = conn.Close()
		t.Errorf("port %d still accepts connections after the test", c.Port())
	}
}

// The shared cluster goes when its test binary dies, even by SIGKILL: the
// test runs this binary again as a helper that starts the shared cluster,
// prints its folder and port, and waits to be killed.
func TestSharedGoesWithProcess(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	var port int
	var lines []string
	buf := make([]byte, 4096)
	for dir == "" {
		n, err := out.Read(buf)
		lines = append(lines, string(buf[:n]))
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper: %v\n%s", err, strings.Join(lines, ""))
		}
		if _, after, ok := strings.Cut(strings.Join(lines, ""), "CLUSTER "); ok {
			if line, _, ok := strings.Cut(after, "\n"); ok {
				if _, err := fmt.Sscanf(line, "%s %d", &dir, &port); err != nil {
					t.Fatalf("helper printed %q: %v", line, err)
				}
			}
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the helper's cluster folder: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		conn, dialErr := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if dialErr == nil {
			_ = conn.Close()
		}
		if os.IsNotExist(statErr) && dialErr != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the helper's SIGKILL: folder %s: %v; port %d: %v", dir, statErr, port, dialErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// helperEnv makes the test binary TestSharedGoesWithProcess's child
// instead of running the tests (see TestMain).
const helperEnv = "PGTEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperProcess()
	}
	os.Exit(m.Run())
}

// helperProcess starts the shared cluster as a test binary does, says where
// it is, and waits to be killed with SIGKILL.
func helperProcess() {
	c, _, err := sharedCluster()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest helper: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("CLUSTER %s %d\n", c.dir, c.Port())
	time.Sleep(time.Minute)
	fmt.Fprintln(os.Stderr, "pgtest helper: not killed within a minute")
	os.Exit(1)
}
