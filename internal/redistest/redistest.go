// Package redistest runs a real Redis server for tests: Debian's
// redis-server (scripts/install-redis.sh installs it), started on a
// 127.0.0.1 port of its own with its files in the test's temporary folder,
// without persistence, and stopped when the test ends.
//
// [Binary] finds redis-server, or skips the test loudly when it is missing
// (fails it when SPOE_REQUIRE_REDIS=1 or SPOE_REQUIRE_HAPROXY=1, which CI
// sets). [Start] runs a server; [Server.Kill], [Server.Pause] and
// [Server.Restart] let a test take Redis away and bring it back on the
// same address. Only the standard library is used: the library module does
// not depend on a Redis client.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/childproc"
)

// Environment variables read by Binary.
const (
	// BinaryEnv names the redis-server binary, when set.
	BinaryEnv = "SPOE_REDIS_SERVER"
	// RequireEnv, set to "1", makes a missing binary a failure.
	RequireEnv = "SPOE_REQUIRE_REDIS"
	// RequireHAProxyEnv, set to "1" (as CI does), also makes a missing
	// binary a failure: the end-to-end tests need both.
	RequireHAProxyEnv = "SPOE_REQUIRE_HAPROXY"
	// DefaultBinary is where Debian's redis-server package puts it.
	DefaultBinary = "/usr/bin/redis-server"
)

const (
	startTimeout = 10 * time.Second
	stopTimeout  = 5 * time.Second
)

// Binary returns the path of redis-server: $SPOE_REDIS_SERVER, else
// DefaultBinary, else redis-server on PATH. Without one it skips the test
// with a message starting "SKIP (no redis-server)", or fails it when
// SPOE_REQUIRE_REDIS=1 or SPOE_REQUIRE_HAPROXY=1.
func Binary(t testing.TB) string {
	t.Helper()
	var why string
	candidates := []string{DefaultBinary}
	if p := os.Getenv(BinaryEnv); p != "" {
		candidates = []string{p}
	} else if p, err := exec.LookPath("redis-server"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		out, err := exec.Command(p, "--version").CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), "Redis server") {
			return p
		}
		why += fmt.Sprintf("%s: %v %s; ", p, err, strings.TrimSpace(string(out)))
	}
	hint := "run scripts/install-redis.sh (scripts/install-haproxy.sh runs it) or set " + BinaryEnv
	if os.Getenv(RequireEnv) == "1" || os.Getenv(RequireHAProxyEnv) == "1" {
		t.Fatalf("no redis-server, and %s=1 or %s=1 requires one: %s%s", RequireEnv, RequireHAProxyEnv, why, hint)
	}
	t.Skipf("SKIP (no redis-server): %s%s. Set %s=1 to make this a failure.", why, hint, RequireEnv)
	return ""
}

// Server is a redis-server process of a test.
type Server struct {
	// Addr is "127.0.0.1:port"; it stays the same across Restart.
	Addr string

	bin, dir string
	mu       sync.Mutex
	proc     *childproc.Proc // the current process; nil before start
}

// Start runs redis-server on a free 127.0.0.1 port, with no persistence,
// waits until it answers PING, and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s := &Server{Addr: addr, bin: bin, dir: t.TempDir()}
	if err := s.start(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(syscall.SIGTERM); err != nil {
			t.Errorf("redistest: stopping redis-server: %v", err)
		}
		if t.Failed() {
			t.Logf("redis-server output:\n%s", s.Output())
		}
	})
	return s
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1", "--port", port, "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "yes", "--logfile", "")
	p, err := childproc.Start(cmd) // killed with the test binary if its cleanups never run
	if err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := Ping(s.Addr); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("redis-server exited before answering PING:\n%s", p.Output())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %v:\n%s", startTimeout, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends sig and waits for the process, then SIGKILL.
func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if !p.Exited(0) {
		_ = p.Signal(syscall.SIGCONT) // in case it was paused
	}
	return p.Stop(sig, stopTimeout)
}

// Kill ends the server with SIGKILL, as a crash would: clients see their
// connections reset, and new ones refused.
func (s *Server) Kill() error { return s.stop(syscall.SIGKILL) }

// Pause stops the process (SIGSTOP) without closing anything: clients'
// commands go unanswered, as with a Redis that hangs. Resume undoes it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return errors.New("redistest: no server")
	}
	return s.proc.Signal(sig)
}

// Restart starts a new, empty server on the same address (after Kill).
func (s *Server) Restart() error {
	if err := s.stop(syscall.SIGTERM); err != nil {
		return err
	}
	return s.start()
}

// Output returns what redis-server wrote so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return ""
	}
	return s.proc.Output()
}

// Ping sends PING to the server at addr and checks the PONG, within a
// second.
func Ping(addr string) error {
	_, err := Do(addr, "PING")
	return err
}

// Do sends one command (inline: space-separated words without spaces of
// their own) to the server at addr and returns its one-line answer, within
// a second. Errors are returned as errors.
func Do(addr string, words ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := fmt.Fprintf(c, "%s\r\n", strings.Join(words, " ")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:], nil
	case strings.HasPrefix(line, "$"):
		if n, _ := strconv.Atoi(line[1:]); n < 0 {
			return "", nil
		}
		return "", fmt.Errorf("bulk answers are not read by redistest.Do: %q", line)
	}
	return line, nil
}
