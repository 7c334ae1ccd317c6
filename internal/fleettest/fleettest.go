// Package fleettest runs several agents behind one real HAProxy in tests:
// the agents as child processes (so that they get real signals: SIGTERM for
// a rolling restart, SIGKILL for a crash), HAProxy through
// internal/haproxytest, and HAProxy's view of its servers through the stats
// socket.
//
// [Build] compiles a command once per test binary; [Start] runs it with its
// output captured and stops it when the test ends; [ShowStat] and
// [WaitServer] read the state HAProxy's health checks gave each server;
// [Load] sends a bounded loop of concurrent requests and records each
// outcome with its time. Everything listens on 127.0.0.1.
package fleettest

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/childproc"
)

// Bounds of this package's waits.
const (
	buildTimeout = 3 * time.Minute
	stopTimeout  = 5 * time.Second
)

var builds = struct {
	sync.Mutex
	dir string
	m   map[string]string // "dir\x00pkg" -> binary
}{m: map[string]string{}}

// Build compiles package pkg ("./cmd/example", ".") of the module in dir
// once per test binary and returns the path of the binary. Call
// RemoveBuilds when the tests are done (from TestMain, through
// RemovingBuilds).
func Build(t testing.TB, dir, pkg string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	key := dir + "\x00" + pkg
	if bin, ok := builds.m[key]; ok {
		return bin
	}
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "spoe-forge-fleettest-")
		if err != nil {
			t.Fatalf("fleettest: %v", err)
		}
		builds.dir = d
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("fleettest: the go command is needed to build %s: %v", pkg, err)
	}
	bin := filepath.Join(builds.dir, fmt.Sprintf("bin%d", len(builds.m)))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fleettest: go build %s in %s: %v\n%s", pkg, dir, err, out)
	}
	builds.m[key] = bin
	return bin
}

// RemoveBuilds deletes what Build compiled.
func RemoveBuilds() {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
		builds.dir = ""
		builds.m = map[string]string{}
	}
}

// RemovingBuilds wraps m so that its Run calls RemoveBuilds once the tests
// have run; TestMain passes it to goleak (leakcheck.VerifyTestMain), which
// runs it.
func RemovingBuilds(m *testing.M) interface{ Run() int } { return removing{m} }

type removing struct{ m *testing.M }

func (r removing) Run() int {
	defer RemoveBuilds()
	return r.m.Run()
}

// Proc is a child process started by Start.
type Proc struct {
	Name string
	p    *childproc.Proc
}

// Start runs bin with args and the extra environment env ("K=V", added to
// the test's own), captures its output, and stops it when the test ends
// (SIGTERM, then SIGKILL), logging its output if the test failed. name
// labels it in messages.
func Start(t testing.TB, name, bin string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cp, err := childproc.Start(cmd) // killed with the test binary if its cleanups never run
	if err != nil {
		t.Fatalf("fleettest: starting %s (%s): %v", name, bin, err)
	}
	p := &Proc{Name: name, p: cp}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("fleettest: stopping %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("output of %s (%s %s):\n%s", name, bin, strings.Join(args, " "), tail(cp.Output(), 200))
		}
	})
	return p
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.p.Pid() }

// Output returns what the process wrote so far.
func (p *Proc) Output() string { return p.p.Output() }

// Signal sends sig.
func (p *Proc) Signal(sig os.Signal) error { return p.p.Signal(sig) }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool { return p.p.Exited(0) }

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0), or an error if it is still running.
func (p *Proc) Wait(timeout time.Duration) error {
	if !p.p.Exited(timeout) {
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.Pid(), timeout)
	}
	return p.p.Err()
}

// Stop ends the process if it still runs: SIGTERM, then SIGKILL after 5 s
// (and then an error matching childproc.ErrKilled: it did not stop on
// SIGTERM).
func (p *Proc) Stop() error { return p.p.Stop(syscall.SIGTERM, stopTimeout) }

// Kill sends SIGKILL and waits for the process to be reaped.
func (p *Proc) Kill() error {
	if err := p.p.Stop(syscall.SIGKILL, stopTimeout); err != nil {
		return fmt.Errorf("%s (pid %d): %w", p.Name, p.Pid(), err)
	}
	return nil
}

// WaitListening waits until addr accepts TCP connections, failing the test
// if p exits first or this takes longer than within.
func WaitListening(t testing.TB, p *Proc, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if p != nil && p.Exited() {
			t.Fatalf("fleettest: %s exited (%v) before listening on %s; output:\n%s", p.Name, p.p.Err(), addr, tail(p.Output(), 50))
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleettest: %s not listening within %v: %v", addr, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ShowStat runs "show stat" on HAProxy's stats socket and returns each
// row as field name -> value, keyed by "proxy/server".
func ShowStat(sock string) (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return nil, err
	}
	text := strings.TrimPrefix(strings.TrimSpace(string(data)), "# ")
	r := csv.NewReader(strings.NewReader(text))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("parsing show stat: %w\n%s", err, data)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("show stat returned no rows: %q", data)
	}
	out := map[string]map[string]string{}
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, name := range rows[0] {
			if i < len(row) {
				m[name] = row[i]
			}
		}
		out[m["pxname"]+"/"+m["svname"]] = m
	}
	return out, nil
}

// WaitServer polls the stats socket every 10 ms until proxy/server's status
// starts with status ("UP", "DOWN"), and returns how long that took and
// the server's row. It fails the test after within.
func WaitServer(t testing.TB, sock, proxy, server, status string, within time.Duration) (time.Duration, map[string]string) {
	t.Helper()
	start := time.Now()
	var last map[string]string
	var lastErr error
	for time.Since(start) < within {
		st, err := ShowStat(sock)
		lastErr = err
		if err == nil {
			last = st[proxy+"/"+server]
			// "UP 1/2" while going down, "DOWN 1/2" while coming up.
			if last != nil && last["status"] == status {
				return time.Since(start), last
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fleettest: %s/%s did not become %s within %v: last row %v, last error %v",
		proxy, server, status, within, last, lastErr)
	return 0, nil
}

// Outcome is what one request of a Load got.
type Outcome struct {
	// ID is the request's unique id ("g-i").
	ID string
	// At is when the request was sent, and Took how long it took.
	At   time.Time
	Took time.Duration
	// OK says the request got the answer it should have; Why says what was
	// wrong otherwise.
	OK  bool
	Why string
}

// Run is a running Load.
type Run struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	out      []Outcome
	count    int
}

// Load runs do from n goroutines in a loop until Stop (or until each has
// sent max requests), each call with a unique id, and records every
// outcome. do returns "" when the answer was right, else what was wrong;
// it must return within a bounded time.
func Load(n, max int, do func(id string) string) *Run {
	r := &Run{stop: make(chan struct{})}
	for g := range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for i := 0; i < max; i++ {
				select {
				case <-r.stop:
					return
				default:
				}
				id := fmt.Sprintf("%d-%d", g, i)
				at := time.Now()
				why := do(id)
				o := Outcome{ID: id, At: at, Took: time.Since(at), OK: why == "", Why: why}
				r.mu.Lock()
				r.out = append(r.out, o)
				r.count++
				r.mu.Unlock()
			}
		}()
	}
	return r
}

// Count returns how many requests have completed so far.
func (r *Run) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Stop ends the loop, waits for the requests in flight and returns every
// outcome, in completion order.
func (r *Run) Stop() []Outcome {
	r.stopOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out
}

// Failures returns the outcomes that were not OK.
func Failures(out []Outcome) []Outcome {
	var bad []Outcome
	for _, o := range out {
		if !o.OK {
			bad = append(bad, o)
		}
	}
	return bad
}
