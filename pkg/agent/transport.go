package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/conn"
	"github.com/spoe-forge/spoe-forge/pkg/observe"
	"go.uber.org/zap"
)

// ErrSocketInUse is returned by Listen, ListenAndServe and Run when the unix
// socket file they are to listen on answers a connection: another process
// serves it, and it is left alone.
var ErrSocketInUse = errors.New("agent: another process listens on the unix socket")

// ErrNotSocket is returned by Listen, ListenAndServe and Run when the path of
// a unix socket exists and is not a socket; it is never removed.
var ErrNotSocket = errors.New("agent: the path exists and is not a unix socket")

// staleProbeTimeout bounds the connect that tells a live unix socket from the
// file a crashed run left behind.
const staleProbeTimeout = time.Second

// refusalLogEvery is how often, at most, a refused connection (a failed TLS
// handshake, a source outside the allowlist, the connection limit) is
// logged at Warn level: a port scanner must not flood the log. Every
// refusal is counted by the Observer whatever is logged.
const refusalLogEvery = time.Minute

// transportConfig is what the agent does with a connection between accept
// and its HELLO.
type transportConfig struct {
	tls        *tls.Config
	allow      []netip.Prefix
	allowSet   bool
	socketMode os.FileMode
	logEvery   time.Duration // refusalLogEvery when zero
}

// WithTLS serves every connection the agent accepts over TLS with cfg (on
// TCP and unix listeners alike; do not also pass Serve a listener that
// already speaks TLS). cfg must not be modified once the agent serves.
//
// For a listener that other machines can reach, require client
// certificates (mutual TLS): set cfg.ClientAuth to
// tls.RequireAndVerifyClientCert and cfg.ClientCAs to the CA that signs
// HAProxy's certificate, which HAProxy presents with "crt" on its server
// line. LoadCertFiles builds such a configuration from PEM files and
// reloads them when they change, without a restart.
//
// The handshake runs in the connection's own goroutine, never in the accept
// loop, and must end within the HELLO timeout (WithHelloTimeout), which
// covers the handshake and the HELLO together. A failed handshake closes the
// connection before anything is read from it; it is reported to the
// Observer (TLSHandshake) and logged at Warn level at most once a minute,
// with the count of failures since the previous line (every failure is
// logged at Debug level).
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tr.tls = cfg } }

// WithAllowedNetworks restricts TCP connections to sources inside one of the
// prefixes (IPv4-mapped IPv6 sources are matched as IPv4). A connection from
// elsewhere is closed right after accept, before any byte is read or
// written; it is reported to the Observer (ConnRefused) and logged at most
// once a minute. Calling it with no prefix refuses every TCP connection.
// Connections on unix sockets are not filtered: file permissions guard
// them (WithSocketMode).
func WithAllowedNetworks(prefixes ...netip.Prefix) Option {
	return func(c *config) {
		c.tr.allowSet = true
		for _, p := range prefixes {
			c.tr.allow = append(c.tr.allow, normalizePrefix(p))
		}
	}
}

// WithSocketMode sets the permission bits of the unix socket files that
// ListenAndServe and Run create (connecting needs write permission). By
// default the file gets the process umask's mode: with umask 022 only its
// owner may connect. Set it to 0660, for instance, to let a group HAProxy
// runs in connect; for a guarantee from the first moment, also put the
// socket in a directory only that group can enter.
func WithSocketMode(mode os.FileMode) Option {
	return func(c *config) { c.tr.socketMode = mode & os.ModePerm }
}

// normalizePrefix turns an IPv4-mapped IPv6 prefix into its IPv4 prefix,
// since sources are matched unmapped.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// listen opens a listener for addr, creating a unix socket with the agent's
// file mode.
func (a *Agent) listen(addr string) (net.Listener, error) { return listen(addr, a.cfg.tr.socketMode) }

func listen(addr string, mode os.FileMode) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return listenUnix(path, mode)
	}
	return net.Listen("tcp", addr)
}

// listenUnix listens on a unix socket at path. A socket file already there
// is removed only when nothing answers on it (a crashed run left it); the
// listener removes the file when it is closed.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("agent: empty unix socket path")
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotSocket, path)
		}
		c, err := net.DialTimeout("unix", path, staleProbeTimeout)
		if err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("agent: probing the unix socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("agent: removing the stale unix socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if mode != 0 {
		if err := os.Chmod(path, mode); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("agent: setting the mode of %s: %w", path, err)
		}
	}
	return l, nil
}

// admit applies the allowlist to a new connection, before anything is read.
func (a *Agent) admit(nc net.Conn) bool {
	tr := &a.cfg.tr
	if !tr.allowSet {
		return true
	}
	var ip netip.Addr
	switch ra := nc.RemoteAddr().(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		ip = ra.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(ra.String())
		if err != nil {
			break // not an IP source: refused, since an allowlist is set
		}
		ip = ap.Addr()
	}
	if ip.IsValid() {
		ip = ip.Unmap()
		for _, p := range tr.allow {
			if p.Contains(ip) {
				return true
			}
		}
	}
	_ = nc.Close()
	a.obs.ConnRefused(observe.RefusedNotAllowed)
	a.refused.log(a.log, "connection refused: source outside the allowlist", zap.Stringer("remote", nc.RemoteAddr()))
	return false
}

// wrap returns the connection the agent speaks SPOP over: nc itself, or a
// TLS server on it (no I/O happens here).
func (a *Agent) wrap(nc net.Conn) net.Conn {
	if a.cfg.tr.tls == nil {
		return nc
	}
	return tls.Server(nc, a.cfg.tr.tls)
}

// serveConn serves a new connection in its own goroutine, after its TLS
// handshake if it has one.
func (a *Agent) serveConn(c *conn.Conn, nc net.Conn, helloBy time.Time) {
	if _, ok := nc.(*tls.Conn); ok {
		if !a.handshake(c, nc, helloBy) {
			a.forget(c)
			a.active.Done()
			return
		}
		// Serve on a fresh goroutine: this one's stack grew for the
		// handshake's cryptography, and an idle connection would keep it.
		go a.serve(c)
		return
	}
	a.serve(c)
}

func (a *Agent) serve(c *conn.Conn) {
	defer a.active.Done()
	_ = c.Serve()
	a.forget(c)
}

// handshake runs the TLS handshake of a new connection, if it has one, in
// the connection's goroutine, by the HELLO deadline. It reports whether the
// connection may be served; if not, it has been aborted.
func (a *Agent) handshake(c *conn.Conn, nc net.Conn, by time.Time) bool {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return true
	}
	_ = tc.SetDeadline(by)
	err := tc.HandshakeContext(a.stopping)
	a.obs.TLSHandshake(err)
	if err != nil {
		c.Abort() // closes the socket, ends the connection's context
		remote := zap.Stringer("remote", tc.NetConn().RemoteAddr())
		if ce := a.log.Check(zap.DebugLevel, "TLS handshake failed"); ce != nil {
			ce.Write(remote, zap.Error(err))
		}
		if a.stopping.Err() == nil { // not cut short by Shutdown or Close
			a.failedTLS.log(a.log, "TLS handshake failed", remote, zap.Error(err))
		}
		return false
	}
	_ = tc.SetWriteDeadline(time.Time{}) // the writer sets one per write
	return true
}

// checkTLS reports a TLS configuration that cannot serve any handshake.
func checkTLS(cfg *tls.Config) error {
	if cfg == nil {
		return nil
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return errors.New("the TLS configuration has no certificate (Certificates, GetCertificate or GetConfigForClient)")
	}
	return nil
}

// limitedLog logs at Warn level at most once per period, with the number of
// events that were not logged since the previous line.
type limitedLog struct {
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	quiet int
}

func (l *limitedLog) log(log *zap.Logger, msg string, fields ...zap.Field) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.quiet++
		l.mu.Unlock()
		return
	}
	quiet := l.quiet
	l.last, l.quiet = now, 0
	l.mu.Unlock()
	fields = append(fields, zap.Int("unlogged_since_previous", quiet), zap.Duration("next_log_in", l.every))
	log.Warn(msg, fields...)
}

// initTransport prepares what admit, wrap and handshake use.
func (a *Agent) initTransport() {
	every := a.cfg.tr.logEvery
	if every <= 0 {
		every = refusalLogEvery
	}
	a.failedTLS.every, a.refused.every = every, every
	a.obs = a.cfg.observer
	if a.obs == nil {
		a.obs = observe.Nop{}
	}
}
