// Command bench is a load generator for SPOE agents that plays HAProxy: it
// opens -conns connections, shakes hands (HAPROXY-HELLO with the chosen
// capabilities and max-frame-size), then keeps up to -pipeline NOTIFYs in
// flight on each, with stream-ids and frame-ids assigned as HAProxy 3.2 and
// 3.4, or 2.6, do (-ids). Every ACK is checked against its NOTIFY: ids of a
// NOTIFY in flight, a strictly valid action list, and a set-var of every
// -expect-var variable; anything else is counted as an error.
//
// Closed loop (the default) measures maximum throughput: a NOTIFY leaves as
// soon as a slot of the window frees up. Open loop (-rate N) sends N
// NOTIFY/s in total on a fixed schedule and measures latency from each
// NOTIFY's intended send time, so a stalled agent cannot hide its stall
// (no coordinated omission). Latencies go to a log-linear histogram (hist.go).
//
//	go run ./cmd/bench -addr 127.0.0.1:12345 -conns 16 -pipeline 64 -duration 10s -expect-var score
//	go run ./cmd/bench -addr 127.0.0.1:12345 -conns 4 -pipeline 16 -rate 20000 -json
//
// The generator batches: all NOTIFYs that can leave together go in one
// write, ACKs are read through a 256 KiB buffer, and nothing is allocated
// per NOTIFY. It reports its own CPU time (getrusage) next to the result so
// that a saturated generator is visible; with -agent-pid it also reports the
// agent's CPU time and peak RSS from /proc.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run1(os.Args[1:]))
}

func run1(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		cfg      config
		ids      string
		mfs      uint
		expect   string
		jsonOut  bool
		progress time.Duration
		quiet    bool
	)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:12345", "agent address host:port, or unix:/path for a unix socket")
	var tlsFlags tlsFlags
	tlsFlags.register(fs)
	fs.IntVar(&cfg.conns, "conns", 4, "connections")
	fs.IntVar(&cfg.pipeline, "pipeline", 16, "NOTIFYs in flight per connection (1 if the agent does not negotiate pipelining, as HAProxy)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time, after -warmup")
	fs.Int64Var(&cfg.n, "n", 0, "measure until this many NOTIFYs are acknowledged (overrides -duration)")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "load before the measurement starts")
	fs.Float64Var(&cfg.rate, "rate", 0, "open loop: total NOTIFY/s on a fixed schedule (0: closed loop)")
	fs.StringVar(&cfg.profile, "profile", profileCheck, "message profile: "+strings.Join(profiles, ", "))
	fs.IntVar(&cfg.largeSize, "large-size", 40000, "body bytes of -profile large")
	fs.StringVar(&cfg.caps, "caps", "pipelining", `capabilities offered in HELLO ("pipelining" as 3.2, "pipelining,async" as 2.6; add "fragmentation" for -profile large)`)
	fs.UintVar(&mfs, "mfs", 16380, "max-frame-size offered in HELLO")
	fs.StringVar(&ids, "ids", "3.2", "id assignment: 3.2 or 3.4, the same (odd stream-ids per connection, frame-id 1), or 2.6 (process-wide stream counter, frame-id 1)")
	fs.StringVar(&expect, "expect-var", "", "comma-separated variables every ACK must set (e.g. score,ok)")
	fs.DurationVar(&cfg.timeout, "timeout", time.Second, "a NOTIFY not acknowledged within this is an error")
	fs.IntVar(&cfg.agentPID, "agent-pid", 0, "agent process id: report its CPU per million NOTIFY and peak RSS (Linux /proc)")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON on stdout")
	fs.DurationVar(&progress, "progress", time.Second, "progress line interval on stderr (0: none)")
	fs.BoolVar(&quiet, "q", false, "no progress line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if cfg.ids, err = parseIDStyle(ids); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if mfs < 256 || mfs > 1<<31 {
		fmt.Fprintln(os.Stderr, "bench: -mfs must be at least 256")
		return 2
	}
	cfg.mfs = uint32(mfs)
	if cfg.tls, err = tlsFlags.config(cfg.addr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	for _, v := range strings.Split(expect, ",") {
		if v = strings.TrimSpace(v); v != "" {
			cfg.expect = append(cfg.expect, v)
		}
	}
	if cfg.rate < 0 || cfg.timeout <= 0 || cfg.duration <= 0 && cfg.n <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -rate must be >= 0, -timeout and -duration (or -n) > 0")
		return 2
	}
	if !quiet && progress > 0 {
		cfg.progress, cfg.progressEvery = os.Stderr, progress
	}

	if cfg.rate > 0 {
		// The open-loop pacer sleeps in nanosleep(2), holding a P: keep
		// one for everything else even when pinned to a single CPU.
		runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if res == nil {
			return 1
		}
	}
	if jsonOut {
		if err := res.writeJSON(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	} else {
		res.writeHuman(os.Stdout)
	}
	if res.Errors > 0 || err != nil {
		return 3
	}
	return 0
}

// bench runs one load run. On a write error mid-run it returns the partial
// result with the error.
func bench(ctx context.Context, cfg config) (*result, error) {
	r, err := start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	window, err := r.loop(ctx)
	res := r.result(window)
	if err == nil && res.Notifies == 0 {
		err = errors.New("no NOTIFY was acknowledged in the measured window")
	}
	return res, err
}

// tlsFlags are the flags that make cmd/bench speak TLS to the agent, as
// HAProxy's "ssl verify required ca-file ... crt ..." does.
type tlsFlags struct {
	ca, cert, key, serverName string
	insecure                  bool
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.ca, "tls-ca", "", "speak TLS; verify the agent's certificate against the CAs of this PEM file (HAProxy's ca-file)")
	fs.StringVar(&f.cert, "tls-cert", "", "speak TLS; present this client certificate, PEM, with its key unless -tls-key (HAProxy's crt)")
	fs.StringVar(&f.key, "tls-key", "", "the key of -tls-cert, when the certificate file does not hold it")
	fs.StringVar(&f.serverName, "tls-server-name", "", "name the agent's certificate must be valid for (default: the host of -addr)")
	fs.BoolVar(&f.insecure, "tls-insecure", false, "speak TLS and accept any agent certificate")
}

// config returns the TLS configuration the flags ask for, nil for plain text.
func (f *tlsFlags) config(addr string) (*tls.Config, error) {
	if f.ca == "" && f.cert == "" && f.key == "" && f.serverName == "" && !f.insecure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName, InsecureSkipVerify: f.insecure}
	if cfg.ServerName == "" && !strings.HasPrefix(addr, "unix:") {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca %s holds no PEM certificate", f.ca)
		}
	}
	if f.cert != "" {
		key := f.key
		if key == "" {
			key = f.cert
		}
		pair, err := tls.LoadX509KeyPair(f.cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	} else if f.key != "" {
		return nil, errors.New("-tls-key needs -tls-cert")
	}
	return cfg, nil
}
