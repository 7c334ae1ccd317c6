// Command example is spoe-forge's sample agent. It answers the SPOE message
// "check-request" (arguments client_ip, path, user_agent) with three txn
// variables:
//
//   - access_allowed (bool): false for paths under /admin from a client
//     that is not on a loopback address;
//   - score (int): a toy risk score;
//   - test_arg (string): the path, echoed back (the docker setup shows it as
//     the X-Test-Arg response header).
//
// When the handler fails, the agent sets the txn variable agent_error to
// its error code (1001 and up; HAProxy's own failures go to its
// "set-on-error" variable, spoe_error in docker/'s configurations).
//
// A user agent containing "slow" makes the handler wait 500 ms, which shows
// ACKs leaving out of order under pipelining.
//
//	go run ./cmd/example                                  # 127.0.0.1:12345, plain text
//	go run ./cmd/example -addr unix:/run/spoa/agent.sock -socket-mode 0660
//	go run ./cmd/example -addr 0.0.0.0:12345 \
//	    -tls-cert agent.crt -tls-key agent.key -tls-client-ca haproxy-ca.crt
//
// Every flag has an environment variable (in parentheses below), which the
// flag overrides:
//
//   - -addr (SPOE_AGENT_ADDR): where to listen, host:port or unix:/path.
//     The default is 127.0.0.1:12345, and an address without a host
//     (":12345") also means 127.0.0.1: an agent answers whoever connects,
//     so it listens beyond this machine only when told to (0.0.0.0:12345),
//     and then preferably with mutual TLS or -allow.
//   - -socket-mode (SPOE_SOCKET_MODE): the unix socket file's mode, in octal
//     (0660 lets the socket's group, HAProxy's, connect).
//   - -tls-cert, -tls-key (SPOE_TLS_CERT, SPOE_TLS_KEY): serve TLS with this
//     certificate and key (PEM). -tls-client-ca (SPOE_TLS_CLIENT_CA): require
//     client certificates signed by these CAs (mutual TLS; HAProxy presents
//     its "crt"). The files are read again on SIGHUP and when they change
//     (checked every -tls-reload, SPOE_TLS_RELOAD, default 10s).
//   - -allow (SPOE_ALLOW): comma-separated networks or addresses that may
//     connect over TCP (10.0.0.0/24,192.0.2.7); others are closed at once.
//   - -lame-duck (SPOE_LAME_DUCK): on SIGTERM or SIGINT, fail HAProxy's
//     health checks for this long while serving (default 16s: over "check
//     inter 5s" times "fall 3"), so that HAProxy moves new work to other
//     agents; 0 turns it off. -shutdown-timeout (SPOE_SHUTDOWN_TIMEOUT)
//     then bounds the drain (default 10s).
//   - -log-level (SPOE_LOG_LEVEL): debug, info, warn, error.
//   - -metrics-addr (SPOE_METRICS_ADDR): serve Prometheus metrics on
//     /metrics at this address; off when empty (the default).
//   - -pprof-addr (SPOE_PPROF_ADDR): serve Go's profiler on /debug/pprof/ at
//     this address, on a server of its own; off when empty (the default).
//     Profiles reveal memory contents and cost CPU: keep it on loopback.
//
// A host-less metrics or pprof address binds to 127.0.0.1 too, and a
// warning is logged when the agent, metrics or pprof listen beyond loopback
// without protection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// flags is the command line, with the environment's defaults.
type flags struct {
	addr, level            string
	metricsAddr, pprofAddr string
	socketMode             string
	tlsCert, tlsKey, tlsCA string
	tlsReload              time.Duration
	allow                  string
	lameDuck               time.Duration
	shutdownTimeout        time.Duration
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.StringVar(&f.addr, "addr", envOr("SPOE_AGENT_ADDR", "127.0.0.1:12345"), "listen address: host:port or unix:/path (a missing host means 127.0.0.1)")
	fs.StringVar(&f.level, "log-level", envOr("SPOE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	fs.StringVar(&f.metricsAddr, "metrics-addr", envOr("SPOE_METRICS_ADDR", ""), "serve /metrics on this address (off when empty; a missing host means 127.0.0.1)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", envOr("SPOE_PPROF_ADDR", ""), "serve /debug/pprof/ on this address (off when empty; a missing host means 127.0.0.1)")
	fs.StringVar(&f.socketMode, "socket-mode", envOr("SPOE_SOCKET_MODE", ""), "mode of the unix socket file, in octal (e.g. 0660; default: the umask's)")
	fs.StringVar(&f.tlsCert, "tls-cert", envOr("SPOE_TLS_CERT", ""), "serve TLS with this certificate (PEM file)")
	fs.StringVar(&f.tlsKey, "tls-key", envOr("SPOE_TLS_KEY", ""), "the key of -tls-cert (PEM file)")
	fs.StringVar(&f.tlsCA, "tls-client-ca", envOr("SPOE_TLS_CLIENT_CA", ""), "require client certificates signed by these CAs (PEM file): mutual TLS")
	reload := envOr("SPOE_TLS_RELOAD", "10s")
	fs.Func("tls-reload", "how often to check the TLS files for changes (also reloaded on SIGHUP; 0: only then) (default "+reload+")", func(s string) error {
		reload = s
		return nil
	})
	fs.StringVar(&f.allow, "allow", envOr("SPOE_ALLOW", ""), "comma-separated networks or addresses allowed to connect over TCP (default: any)")
	fs.DurationVar(&f.lameDuck, "lame-duck", durationEnv("SPOE_LAME_DUCK", agent.DefaultLameDuck), "on SIGTERM, fail health checks for this long while serving, before draining (0: no lame-duck period)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", durationEnv("SPOE_SHUTDOWN_TIMEOUT", agent.DefaultShutdownTimeout), "bound on the drain that follows the lame-duck period")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if f.tlsReload, err = time.ParseDuration(reload); err != nil || f.tlsReload < 0 {
		return nil, fmt.Errorf("-tls-reload %q: want a duration such as 10s, or 0", reload)
	}
	f.addr = loopbackByDefault(f.addr)
	f.metricsAddr = loopbackByDefault(f.metricsAddr)
	f.pprofAddr = loopbackByDefault(f.pprofAddr)
	if f.lameDuck <= 0 {
		f.lameDuck = agent.NoLameDuck
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	if f.tlsCA != "" && f.tlsCert == "" {
		return nil, errors.New("-tls-client-ca needs -tls-cert and -tls-key")
	}
	return f, nil
}

func main() {
	f, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(2)
	}
	log, err := newLogger(f.level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(2)
	}
	defer func() { _ = log.Sync() }()
	if err := run(f, log); err != nil {
		log.Error("agent stopped", zap.Error(err))
		os.Exit(1)
	}
}

func run(f *flags, log *zap.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New()
	opts := []agent.Option{
		agent.WithLogger(log),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
		agent.WithObserver(m),
		agent.WithLameDuck(f.lameDuck),
		agent.WithShutdownTimeout(f.shutdownTimeout),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if f.socketMode != "" {
		mode, err := strconv.ParseUint(f.socketMode, 8, 32)
		if err != nil || mode > 0o777 {
			return fmt.Errorf("-socket-mode %q: want an octal mode such as 0660", f.socketMode)
		}
		opts = append(opts, agent.WithSocketMode(os.FileMode(mode)))
	}
	if f.allow != "" {
		prefixes, err := parseAllow(f.allow)
		if err != nil {
			return err
		}
		opts = append(opts, agent.WithAllowedNetworks(prefixes...))
	}
	if f.tlsCert != "" {
		certs, err := agent.LoadCertFiles(f.tlsCert, f.tlsKey, f.tlsCA, log)
		if err != nil {
			return err
		}
		go func() { _ = certs.Watch(ctx, f.tlsReload, syscall.SIGHUP) }()
		opts = append(opts, agent.WithTLS(certs.TLSConfig()))
		log.Info("TLS on", zap.String("certificate", f.tlsCert), zap.Bool("client_certificates_required", f.tlsCA != ""),
			zap.String("subject", certs.Leaf().Subject.String()), zap.Time("not_after", certs.Leaf().NotAfter))
	}
	warnExposure(log, f)

	a := agent.New(opts...)
	a.Message("check-request", checkRequest)
	m.ObserveAgent(a)
	reg.MustRegister(m)

	if f.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		stop, err := serveHTTP(log, "metrics", f.metricsAddr, mux)
		if err != nil {
			return err
		}
		defer stop()
	}
	if f.pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		stop, err := serveHTTP(log, "pprof", f.pprofAddr, mux)
		if err != nil {
			return err
		}
		defer stop()
	}
	return a.Run(f.addr)
}

// serveHTTP serves h on addr in the background; stop closes the server.
func serveHTTP(log *zap.Logger, what, addr string, h http.Handler) (stop func(), err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" server", zap.Error(err))
		}
	}()
	log.Info(what+" listening", zap.Stringer("addr", l.Addr()))
	return func() { _ = srv.Close() }, nil
}

// loopbackByDefault gives a host-less "host:port" address the host
// 127.0.0.1: listening beyond this machine must be asked for by name.
func loopbackByDefault(addr string) string {
	if strings.HasPrefix(addr, "unix:") {
		return addr
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// isLoopback reports whether a TCP listen address stays on this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// warnExposure logs what is reachable from other machines without
// protection.
func warnExposure(log *zap.Logger, f *flags) {
	if !strings.HasPrefix(f.addr, "unix:") && !isLoopback(f.addr) {
		switch {
		case f.tlsCert == "" && f.allow == "":
			log.Warn("the agent listens beyond loopback in plain text: whoever reaches it can query it; use mutual TLS (-tls-cert, -tls-key, -tls-client-ca) or -allow", zap.String("addr", f.addr))
		case f.tlsCert != "" && f.tlsCA == "" && f.allow == "":
			log.Warn("TLS without client certificates: whoever reaches the agent can query it; add -tls-client-ca (mutual TLS) or -allow", zap.String("addr", f.addr))
		}
	}
	for _, x := range []struct{ what, addr string }{{"metrics", f.metricsAddr}, {"pprof", f.pprofAddr}} {
		if x.addr != "" && !isLoopback(x.addr) {
			log.Warn(x.what+" listens beyond loopback, without authentication", zap.String("addr", x.addr))
		}
	}
}

// parseAllow reads -allow: networks ("10.0.0.0/8") and addresses
// ("192.0.2.7", a network of one), separated by commas or spaces.
func parseAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("-allow: %q is neither a network (10.0.0.0/8) nor an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-allow %q names no network", s)
	}
	return out, nil
}

// checkRequest is the handler of the "check-request" message.
func checkRequest(ctx context.Context, m *agent.Message, act *agent.Actions) error {
	ip, _ := m.IP("client_ip")
	path, _ := m.Bytes("path")
	ua, _ := m.Bytes("user_agent")

	if strings.Contains(string(ua), "slow") {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	admin := strings.HasPrefix(string(path), "/admin")
	allowed := !admin || ip.IsLoopback()
	score := int64(len(path))
	if !allowed {
		score += 100
	}
	act.SetBool(agent.ScopeTransaction, "access_allowed", allowed)
	act.SetInt(agent.ScopeTransaction, "score", score)
	act.SetString(agent.ScopeTransaction, "test_arg", string(path))
	return nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// durationEnv returns the duration in environment variable k, or def when
// k is unset; a value that is not a duration stops the program.
func durationEnv(k string, def time.Duration) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "example: %s=%q: %v\n", k, v, err)
		os.Exit(2)
	}
	return d
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
