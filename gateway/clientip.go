package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientIP is the address stored as context.ip. Without trusted proxies it
// is the connection's peer: X-Forwarded-For is whatever the client wrote.
// Each trusted proxy appends the address it saw, so the client's is the
// entry that many from the end; entries before it are the client's own
// claims and never used. A header with fewer entries than proxies, or an
// entry that is not an address, falls back to the connection.
func clientIP(r *http.Request, trustedProxies int, truncate bool) string {
	addr := peerAddr(r.RemoteAddr)
	if trustedProxies > 0 {
		var hops []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for _, h := range strings.Split(v, ",") {
				if h = strings.TrimSpace(h); h != "" {
					hops = append(hops, h)
				}
			}
		}
		if i := len(hops) - trustedProxies; i >= 0 {
			if a, err := netip.ParseAddr(hops[i]); err == nil {
				addr = a
			}
		}
	}
	if !addr.IsValid() {
		return ""
	}
	addr = addr.Unmap()
	if truncate {
		bits := 48
		if addr.Is4() {
			bits = 24
		}
		if p, err := addr.Prefix(bits); err == nil {
			addr = p.Addr()
		}
	}
	return addr.String()
}

// peerAddr parses a RemoteAddr ("ip:port", or a bare address from some
// test servers); the zero Addr when it is neither.
func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a
}
