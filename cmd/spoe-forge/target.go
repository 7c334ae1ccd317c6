package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Defaults of the flags that say where the agent is: cmd/example's listen
// address, and a timeout in the range of HAProxy's default check timeout.
const (
	defaultHost    = "127.0.0.1"
	defaultPort    = 12345
	defaultTimeout = 2 * time.Second
)

// transportHelp is the help of the flags that say how to reach the agent,
// shared by every command.
const transportHelp = `TRANSPORT
  The agent is reached over TCP at --host and --port, or on the unix socket
  --unix PATH (HAProxy's "server a1 unix@PATH"). --tls speaks TLS, as the
  "ssl" server option does; --ca, --cert, --key, --server-name and
  --insecure-skip-verify imply it. To pass an agent that requires client
  certificates (mutual TLS), give what HAProxy's server line gives:
    server a1 10.0.0.5:12345 ssl verify required ca-file ca.pem crt client.pem
    --host 10.0.0.5 --port 12345 --ca ca.pem --cert client.pem
  The agent's certificate is checked against --server-name, by default
  --host (a name, or an IP address its certificate lists); over --unix,
  --server-name is required. Files that cannot be used are bad usage.
`

// target is where and how a command reaches an agent, and for how long:
// the flags that every command talking to an agent shares (healthcheck,
// notify). It is the one place that knows transports: TCP or a unix
// socket, in plain text or TLS.
type target struct {
	host    string
	port    int
	unix    string
	timeout time.Duration

	tls        bool
	ca         string
	cert, key  string
	serverName string
	insecure   bool

	fs        *flag.FlagSet // to tell the flags given from the defaults
	tlsConfig *tls.Config   // built by check when TLS is on
}

// register defines the target's flags on fs; timeoutHelp says what
// --timeout bounds in that command.
func (t *target) register(fs *flag.FlagSet, timeoutHelp string) {
	t.fs = fs
	fs.StringVar(&t.host, "host", defaultHost, "agent `host` name or IP address")
	fs.IntVar(&t.port, "port", defaultPort, "agent TCP `port` (1-65535)")
	fs.StringVar(&t.unix, "unix", "", "reach the agent on the unix socket at `path` instead of --host and --port")
	fs.DurationVar(&t.timeout, "timeout", defaultTimeout, timeoutHelp+" (a Go `duration`: 500ms, 2s)")
	fs.BoolVar(&t.tls, "tls", false, "speak TLS to the agent, as HAProxy's \"ssl\" server option does (implied by --ca, --cert, --key, --server-name and --insecure-skip-verify)")
	fs.StringVar(&t.ca, "ca", "", "PEM `file` of the CAs the agent's certificate must chain to, as HAProxy's ca-file (default: the system's)")
	fs.StringVar(&t.cert, "cert", "", "PEM `file` of the client certificate to present, as HAProxy's crt; it may hold the key too")
	fs.StringVar(&t.key, "key", "", "PEM `file` of the client certificate's key, when --cert does not hold it")
	fs.StringVar(&t.serverName, "server-name", "", "`name` the agent's certificate must be valid for, also sent as SNI (default: --host)")
	fs.BoolVar(&t.insecure, "insecure-skip-verify", false, "accept any certificate from the agent (for tests only: anyone could play the agent)")
}

// given reports whether flag name was on the command line.
func (t *target) given(name string) bool {
	found := false
	if t.fs != nil {
		t.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	}
	return found
}

// check returns what is wrong with the target's flags, or "". It loads the
// TLS files, so that a file that cannot be used is a usage error.
func (t *target) check() string {
	switch {
	case t.unix != "" && (t.given("host") || t.given("port")):
		return "--unix cannot be combined with --host or --port"
	case t.unix == "" && t.host == "":
		return "--host must not be empty"
	case t.unix == "" && (t.port < 1 || t.port > 65535):
		return fmt.Sprintf("--port %d is out of range 1..65535", t.port)
	case t.timeout <= 0:
		return fmt.Sprintf("--timeout %v must be positive", t.timeout)
	}
	for _, name := range []string{"ca", "cert", "key", "server-name", "insecure-skip-verify"} {
		if t.given(name) {
			t.tls = true
		}
	}
	if !t.tls {
		return ""
	}
	switch {
	case t.key != "" && t.cert == "":
		return "--key needs --cert"
	case t.insecure && (t.ca != "" || t.serverName != ""):
		return "--insecure-skip-verify verifies nothing: --ca and --server-name would be ignored"
	case t.unix != "" && t.serverName == "" && !t.insecure:
		return "TLS over --unix needs --server-name, the name the agent's certificate is valid for (or --insecure-skip-verify)"
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName, InsecureSkipVerify: t.insecure}
	if cfg.ServerName == "" && t.unix == "" {
		cfg.ServerName = t.host
	}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return fmt.Sprintf("--ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Sprintf("--ca %s holds no PEM certificate", t.ca)
		}
	}
	if t.cert != "" {
		key := t.key
		if key == "" {
			key = t.cert
		}
		pair, err := tls.LoadX509KeyPair(t.cert, key)
		if err != nil {
			return fmt.Sprintf("--cert/--key: %v", err)
		}
		// Presented whatever CAs the agent asks for, as HAProxy does: a
		// refusal then says why.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	t.tlsConfig = cfg
	return ""
}

// addr names the agent in messages: "host:port" or "unix:/path".
func (t *target) addr() string {
	if t.unix != "" {
		return "unix:" + t.unix
	}
	return net.JoinHostPort(t.host, strconv.Itoa(t.port))
}

// dial connects to the agent within ctx, and completes the TLS handshake
// when TLS is on. Its error is one of describeDialError's or
// describeTLSError's.
func (t *target) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	network, address := "tcp", t.addr()
	if t.unix != "" {
		network, address = "unix", t.unix
	}
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, describeDialError(err, t.timeout)
	}
	if t.tlsConfig == nil {
		return c, nil
	}
	tc := tls.Client(c, t.tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, describeTLSError(err, t.timeout)
	}
	return tc, nil
}

// tlsVersion returns the TLS version of c ("TLS 1.3"), or "" for a plain
// connection.
func tlsVersion(c net.Conn) string {
	if tc, ok := c.(*tls.Conn); ok {
		return tls.VersionName(tc.ConnectionState().Version)
	}
	return ""
}

// parseFlags parses args with fs, which must have ContinueOnError, and
// returns what is wrong with them ("" if nothing) and whether help was
// asked for. check validates what was parsed and the arguments left.
func parseFlags(fs *flag.FlagSet, args []string, check func(rest []string) string) (bad string, help bool) {
	fs.SetOutput(io.Discard) // errors and help are printed by the caller
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return "", true
	} else if err != nil {
		return err.Error(), false
	}
	return check(fs.Args()), false
}

// printFlags prints fs's flags in the style of the commands' help.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(fl *flag.Flag) {
		name, help := flag.UnquoteUsage(fl)
		if name != "" {
			name = " " + name
		}
		def := ""
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "[]" {
			def = " (default " + fl.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s%s\n        %s%s\n", fl.Name, name, help, def)
	})
}

// describeDialError explains a failed connect.
func describeDialError(err error, timeout time.Duration) error {
	var oe *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused: nothing listens there")
	case errors.Is(err, syscall.ENOENT):
		return errors.New("no such socket file")
	case errors.Is(err, syscall.EACCES):
		return errors.New("permission denied: the socket file's mode does not let this user connect")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("no connection within %v", timeout)
	case errors.As(err, &oe) && oe.Err != nil:
		return fmt.Errorf("cannot connect: %v", oe.Err)
	default:
		return fmt.Errorf("cannot connect: %v", err)
	}
}

// describeTLSError explains a failed TLS handshake.
func describeTLSError(err error, timeout time.Duration) error {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("no TLS handshake within %v", timeout)
	case errors.As(err, &cv):
		return fmt.Errorf("TLS: the agent's certificate is not trusted: %v", cv.Err)
	case errors.As(err, &rh):
		return errors.New("TLS: the agent does not speak TLS (its answer is not a TLS record)")
	case isRemoteAlert(err):
		return fmt.Errorf("TLS: the agent refused the handshake: %v", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return errors.New("TLS: the agent closed the connection during the handshake (does it speak TLS?)")
	default:
		return fmt.Errorf("TLS handshake failed: %v", err)
	}
}

// isRemoteAlert reports whether err is a TLS alert the agent sent.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// describeIOError explains a failed read or write.
func describeIOError(err error, timeout time.Duration) string {
	switch {
	case isRemoteAlert(err):
		// TLS 1.3: the agent checks the client certificate after the
		// client's handshake is done, and refuses on the first read.
		return fmt.Sprintf("the agent refused the TLS connection: %v", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no answer within %v", timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the agent closed the connection"
	case errors.Is(err, syscall.ECONNRESET):
		return "the agent reset the connection"
	case errors.Is(err, syscall.EPIPE):
		return "the agent closed the connection"
	default:
		return err.Error()
	}
}

// deadlineConn bounds a whole exchange: every deadline set on it is
// clamped to the exchange's deadline, so a client that sets one per step
// (spoetest's) cannot run past it.
type deadlineConn struct {
	net.Conn
	deadline time.Time
}

func (c *deadlineConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.deadline) {
		return c.deadline
	}
	return t
}

// SetDeadline implements net.Conn.
func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline implements net.Conn.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}

// SetWriteDeadline implements net.Conn.
func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}
