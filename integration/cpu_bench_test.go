package integration

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cpuMeter measures, between begin and end, the CPU time of the processes
// that serve a benchmark (each found by a port it listens on, with its
// children: the gateway host's plugin, PostgreSQL's backends), of this test
// process itself, and of the whole machine, so a benchmark can say what one
// unit of work costs each part and how busy the machine was (other work
// included). Linux only (/proc).
type cpuMeter struct {
	parts   []cpuPart
	self    time.Duration
	machine machineCPU
	at      time.Time
	// Filled by end.
	took    time.Duration
	perPart map[string]time.Duration
	selfCPU time.Duration
	busy    float64 // the machine's busy share of all its cores, 0..1
	cores   int
}

type cpuPart struct {
	name  string
	port  int
	pid   int
	start time.Duration
}

// newCPUMeter meters the processes listening on the given ports (name →
// port; 0 leaves a part out).
func newCPUMeter(ports map[string]int) *cpuMeter {
	m := &cpuMeter{}
	for name, port := range ports {
		if port != 0 {
			m.parts = append(m.parts, cpuPart{name: name, port: port})
		}
	}
	slices.SortFunc(m.parts, func(a, b cpuPart) int { return strings.Compare(a.name, b.name) })
	return m
}

func (m *cpuMeter) begin() {
	procs := readProcs()
	for i := range m.parts {
		m.parts[i].pid = listeningPID(m.parts[i].port)
		m.parts[i].start = procs.treeCPU(m.parts[i].pid)
	}
	m.self = procs[os.Getpid()].own
	m.machine = readMachineCPU()
	m.at = time.Now()
}

func (m *cpuMeter) end() {
	m.took = time.Since(m.at)
	procs := readProcs()
	m.perPart = map[string]time.Duration{}
	for _, p := range m.parts {
		m.perPart[p.name] = procs.treeCPU(p.pid) - p.start
	}
	m.selfCPU = procs[os.Getpid()].own - m.self
	now := readMachineCPU()
	if total := now.total - m.machine.total; total > 0 {
		m.busy = float64(now.busy-m.machine.busy) / float64(total)
	}
	m.cores = now.cores
}

// summary is "kratos 12.3 ms, gateway 4.5 ms, ... per <unit>" over n units.
func (m *cpuMeter) summary(n int, unit string) string {
	var parts []string
	var sum time.Duration
	for _, p := range m.parts {
		d := m.perPart[p.name]
		sum += d
		parts = append(parts, fmt.Sprintf("%s %.1f", p.name, ms(d)/float64(n)))
	}
	sum += m.selfCPU
	parts = append(parts, fmt.Sprintf("benchmark client %.1f", ms(m.selfCPU)/float64(n)))
	return fmt.Sprintf("CPU per %s: %s, total %.1f ms (the machine: %d cores %.0f%% busy over %.1f s, so %.1f core-s not ours)",
		unit, strings.Join(parts, ", "), ms(sum)/float64(n), m.cores, 100*m.busy, m.took.Seconds(),
		max(0, m.busy*float64(m.cores)*m.took.Seconds()-sum.Seconds()))
}

// perUnit is the CPU time of all metered parts and this process per unit, in ms.
func (m *cpuMeter) perUnit(n int) float64 {
	sum := m.selfCPU
	for _, d := range m.perPart {
		sum += d
	}
	return ms(sum) / float64(n)
}

// procStat is one process's CPU times from /proc/<pid>/stat.
type procStat struct {
	ppid     int
	own      time.Duration // utime + stime
	children time.Duration // cutime + cstime: its children that ended
}

type procTable map[int]procStat

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTick = 10 * time.Millisecond

func readProcs() procTable {
	t := procTable{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name, in parentheses, may hold spaces.
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 15 {
			continue
		}
		num := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
		t[pid] = procStat{
			ppid:     int(num(1)),
			own:      time.Duration(num(11)+num(12)) * clockTick,
			children: time.Duration(num(13)+num(14)) * clockTick,
		}
	}
	return t
}

// treeCPU is the CPU time of root and every process under it, those that
// ended included (once their parent reaped them).
func (t procTable) treeCPU(root int) time.Duration {
	if root == 0 {
		return 0
	}
	var sum time.Duration
	for pid, p := range t {
		for q := pid; q > 1; q = t[q].ppid {
			if q == root {
				sum += p.own + p.children
				break
			}
			if _, ok := t[q]; !ok {
				break
			}
		}
	}
	return sum
}

// listeningPID is the process listening on 127.0.0.1:port (TCP), 0 if none.
func listeningPID(port int) int {
	inode := ""
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			local := fields[1]
			if p, err := strconv.ParseInt(local[strings.LastIndexByte(local, ':')+1:], 16, 32); err == nil && int(p) == port {
				inode = fields[9]
			}
		}
		_ = f.Close()
		if inode != "" {
			break
		}
	}
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); l == want {
				return pid
			}
		}
	}
	return 0
}

// machineCPU is the first line of /proc/stat: busy and total ticks over
// every core.
type machineCPU struct {
	busy, total uint64
	cores       int
}

func readMachineCPU() machineCPU {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	var m machineCPU
	for i, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if i == 0 && f[0] == "cpu" {
			// user nice system idle iowait irq softirq steal; guest time
			// (the rest) is already in user and nice.
			for j, v := range f[1:min(len(f), 9)] {
				n, _ := strconv.ParseUint(v, 10, 64)
				m.total += n
				if j != 3 && j != 4 { // idle, iowait
					m.busy += n
				}
			}
		} else if strings.HasPrefix(f[0], "cpu") {
			m.cores++
		}
	}
	return m
}

// portOf is the port of a URL, a DSN URL or host:port
// ("http://127.0.0.1:4434" → 4434), 0 for none.
func portOf(s string) int {
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}
