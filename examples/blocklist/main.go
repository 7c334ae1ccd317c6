// Command blocklist is an SPOE agent that blocks client IP addresses by
// network (IPv4 and IPv6, CIDR notation): HAProxy sends it the source
// address of each HTTP request; it answers with txn.blocklist.blocked, and
// HAProxy answers 403 to blocked clients (see README.md and the
// configuration files beside this one). SIGHUP reloads the list file.
//
//	go run ./blocklist -addr 127.0.0.1:12345 -file blocklist.txt -block 192.0.2.0/24,2001:db8::/32
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"go.uber.org/zap"
)

// timeout is the agent's per-message deadline: below spoe.conf's
// "timeout processing" (200ms), so that a late answer is never sent.
const timeout = 100 * time.Millisecond

func main() {
	addr := flag.String("addr", "127.0.0.1:12345", `address to listen on: "host:port", or "unix:/path"`)
	file := flag.String("file", "", "file of networks to block, one per line (# starts a comment); reloaded on SIGHUP")
	block := flag.String("block", "", "networks to block, comma-separated (192.0.2.0/24,2001:db8::/32)")
	flag.Parse()

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "blocklist:", err)
		os.Exit(1)
	}
	defer func() { _ = log.Sync() }()
	l, err := load(*file, *block)
	if err != nil {
		log.Fatal("blocklist", zap.Error(err))
	}
	log.Info("blocklist loaded", zap.Int("networks", l.Len()))
	c := newChecker(l)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() { // lives as long as the process
		for range hup {
			l, err := load(*file, *block)
			if err != nil {
				log.Error("blocklist not reloaded: keeping the previous one", zap.Error(err))
				continue
			}
			c.Store(l)
			log.Info("blocklist reloaded", zap.Int("networks", l.Len()))
		}
	}()

	if err := newAgent(log, c).Run(*addr); err != nil { // drains on SIGTERM/SIGINT
		log.Fatal("agent", zap.Error(err))
	}
}

// newAgent returns the agent: c handles the check-ip message of spoe.conf,
// and a failing handler sets txn.blocklist.agent_error.
func newAgent(log *zap.Logger, c *checker) *agent.Agent {
	a := agent.New(
		agent.WithLogger(log),
		agent.WithTimeout(timeout),
		agent.WithErrorVar(agent.ScopeTransaction, "agent_error"),
	)
	a.Handle("check-ip", c)
	return a
}

// load builds the list from the file (if named) and the -block entries.
func load(file, entries string) (*list, error) {
	var b builder
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := b.addText(file, f); err != nil {
			return nil, err
		}
	}
	if err := b.addText("-block", strings.NewReader(entries)); err != nil {
		return nil, err
	}
	return b.list(), nil
}
