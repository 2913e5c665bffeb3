// Package listen opens the host's listeners, with TLS whose certificate follows
// its files on disk, because Kratos sends users' plaintext passwords and the
// webhook API key to them and they must be able to be private.
package listen

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Open binds one TCP listener on addr (host:port). With tc it serves TLS
// (tc is used as it is: see Certificate.Config). key is the config key that
// named addr; an error names both, e.g.
// "listen on 10.0.0.1:9 (gate.listen): ...".
func Open(key, addr string, tc *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, key, err)
	}
	if tc != nil {
		return tls.NewListener(ln, tc), nil
	}
	return ln, nil
}

// Group opens a host's listeners one after another. When one cannot bind,
// the ones already open are closed, so a failed start leaves no port bound.
type Group struct {
	open []net.Listener
}

// Open is the package's Open for one more listener of the group.
func (g *Group) Open(key, addr string, tc *tls.Config) (net.Listener, error) {
	ln, err := Open(key, addr, tc)
	if err != nil {
		g.Close()
		return nil, err
	}
	g.open = append(g.open, ln)
	return ln, nil
}

// Close closes every listener of the group (an http.Server that served one
// may have closed it already; that is fine).
func (g *Group) Close() {
	for _, ln := range g.open {
		_ = ln.Close()
	}
	g.open = nil
}

// Loopback reports whether addr (host:port) binds to loopback only:
// localhost or a loopback IP. An empty host (all interfaces), 0.0.0.0, ::,
// any other IP and any other host name are not loopback.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Warning is the security warning for a listener, or "" when there is none:
// a listener off loopback without TLS lets anyone on the path read what
// crosses it (users' passwords and the webhook key on listen, session
// cookies on gate.listen, the admin key on admin.listen).
func Warning(key, addr string, tlsOn bool) string {
	if tlsOn || Loopback(addr) {
		return ""
	}
	return fmt.Sprintf("%s %s is not a loopback address and serves plain HTTP: the passwords, keys and session tokens sent to it cross the network readable; set tls.cert_file and tls.key_file, or bind it to 127.0.0.1", key, addr)
}
