package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// postgres is a throwaway PostgreSQL cluster on loopback for benchmarks.
type postgres struct {
	bin  string // the server's bin directory
	port int
}

// startPostgres runs a cluster from Debian's postgresql package until the
// benchmark ends. PostgreSQL refuses to run as root, so as root it runs as
// the package's postgres user.
func startPostgres(b *testing.B) *postgres {
	b.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		b.Skip("PostgreSQL server not installed (no /usr/lib/postgresql/*/bin/initdb); scripts/deps.sh postgres installs it")
	}
	slices.Sort(initdbs)
	pg := &postgres{bin: filepath.Dir(initdbs[len(initdbs)-1]), port: freePort()}
	dir, err := os.MkdirTemp("", "kratos-email-gateway-pg-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:", dir).CombinedOutput(); err != nil {
			b.Fatalf("chown %s to postgres: %v\n%s", dir, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	pg.run(b, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
	pg.run(b, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-o",
		fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s", pg.port, dir), "start")
	b.Cleanup(func() { pg.run(b, "pg_ctl", "-D", data, "-m", "fast", "-w", "stop") })
	return pg
}

// dsn creates database name and returns Kratos's DSN for it. The pool is
// sized as for production: Kratos's default (max_conns 2×CPUs, max_idle_conns
// CPUs, so 4 and 2 here) makes a burst open and close PostgreSQL connections
// all the time, which tripled the admin calls' time in our measurement.
func (pg *postgres) dsn(b *testing.B, name string) string {
	pg.run(b, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", "postgres", name)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&max_conns=16&max_idle_conns=16", pg.port, name)
}

func (pg *postgres) run(b *testing.B, tool string, args ...string) {
	b.Helper()
	cmd := exec.Command(filepath.Join(pg.bin, tool), args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", cmd.Path}, args...)...)
	}
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", tool, err, out)
	}
}
