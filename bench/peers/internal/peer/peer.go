// Package peer holds what the benchmark agents share: the flags every agent
// takes, the handler's arithmetic (so that every library computes the same
// answer), and CPU profiling.
package peer

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// Flags are the command-line flags of every benchmark agent.
type Flags struct {
	Addr       string
	CPUProfile string
}

// Parse parses the flags of agent name.
func Parse(name string) Flags {
	var f Flags
	flag.StringVar(&f.Addr, "addr", "127.0.0.1:12345", "listen address")
	flag.StringVar(&f.CPUProfile, "cpuprofile", "", "write a CPU profile to this file until SIGINT/SIGTERM")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "%s agent listening on %s\n", name, f.Addr)
	return f
}

// Score is the handler's result: the length of the path. Every agent sets
// txn.<prefix>.score to it and txn.<prefix>.ok to OK.
func Score(path []byte) int64 { return int64(len(path)) }

// OK is true for IPv4 clients (the benchmark sends 192.0.2.10; HAProxy's
// wrk clients are 127.0.0.1).
func OK(ip []byte) bool { return len(ip) == 4 }

// Run starts CPU profiling if asked, runs serve in the background, and
// returns when serve fails or SIGINT/SIGTERM arrives (then the profile is
// written). serve must block.
func Run(f Flags, serve func() error) {
	if f.CPUProfile != "" {
		out, err := os.Create(f.CPUProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = out.Close()
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "serve:", err)
	case <-sig:
	}
}
