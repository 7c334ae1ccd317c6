// Package haproxytest finds, checks and runs real HAProxy binaries for
// end-to-end tests of SPOE agents.
//
// Four HAProxy branches are supported: 2.6 and 3.0 (the legacy, applet-based
// SPOE engine, whose agent backend is "mode tcp") and 3.2 and 3.4 (the SPOP
// multiplexer, agent backend "mode spop"). scripts/install-haproxy.sh makes
// them available and writes an env file that sets SPOE_HAPROXY_2_6,
// SPOE_HAPROXY_3_0, SPOE_HAPROXY_3_2 and SPOE_HAPROXY_3_4; [Binary] also
// finds them in their default places without it.
//
// A test that needs a version calls [Binary], which skips the test (loudly)
// when that version is missing, or fails it when SPOE_REQUIRE_HAPROXY=1 (as
// CI sets); [ForEachVersion] runs a test as one subtest per version. [Start]
// runs HAProxy in the foreground with a configuration given as a string and
// stops it when the test ends; [Reload] replaces a running process the
// classic way (-sf). Everything listens on 127.0.0.1 only; get ports from
// [FreePort]. [Warnings] picks out of HAProxy's output the warnings and
// alerts a test should fail on.
//
// The helpers that take a testing.TB call its Fatal methods, so they must be
// called from the goroutine running the test.
package haproxytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/childproc"
)

// Version is an HAProxy branch, "X.Y".
type Version string

// The HAProxy branches spoe-forge is tested against.
const (
	// V26 is HAProxy 2.6 (Debian 12's package): legacy SPOE engine.
	V26 Version = "2.6"
	// V30 is HAProxy 3.0 (Debian 13's package): legacy SPOE engine.
	V30 Version = "3.0"
	// V32 is HAProxy 3.2: SPOP multiplexer ("mode spop" agent backends).
	V32 Version = "3.2"
	// V34 is HAProxy 3.4 (Debian experimental's package): SPOP multiplexer,
	// as 3.2.
	V34 Version = "3.4"
)

// All lists every supported version, oldest first. Tests loop over it.
var All = []Version{V26, V30, V32, V34}

// Legacy reports whether v uses the legacy (applet-based) SPOE engine of
// HAProxy 2.6/3.0, whose agent backend must be "mode tcp". It is false for
// 3.2 and 3.4, whose agent backend is "mode spop" (a mode HAProxy 2.6/3.0
// reject).
func (v Version) Legacy() bool {
	return v == V26 || v == V30
}

// EnvVar is the environment variable that may name the binary for v, e.g.
// SPOE_HAPROXY_3_2 for 3.2.
func (v Version) EnvVar() string {
	return "SPOE_HAPROXY_" + strings.ReplaceAll(string(v), ".", "_")
}

// Environment variables and defaults read by Binary.
const (
	// RequireEnv, when set to "1", makes Binary fail a test instead of
	// skipping it when a version is missing.
	RequireEnv = "SPOE_REQUIRE_HAPROXY"
	// CacheEnv overrides DefaultCache, the folder where
	// scripts/install-haproxy.sh unpacks HAProxy 3.0, 3.2 and 3.4.
	CacheEnv = "SPOE_HAPROXY_CACHE"
	// DefaultCache is where scripts/install-haproxy.sh unpacks HAProxy 3.0,
	// 3.2 and 3.4 (in subfolders "3.0", "3.2" and "3.4") when CacheEnv is
	// not set.
	DefaultCache = "/var/cache/spoe-forge/haproxy"
	// SystemBinary is where Debian's haproxy package (2.6 on Debian 12)
	// installs the binary.
	SystemBinary = "/usr/sbin/haproxy"
)

const (
	// versionTimeout bounds "haproxy -v" and "haproxy -c".
	versionTimeout = 30 * time.Second
	// startTimeout bounds the wait for a started process's listeners.
	startTimeout = 10 * time.Second
	// stopTimeout bounds each step (SIGTERM, SIGKILL) of the cleanup.
	stopTimeout = 5 * time.Second
)

// lookup is the result of looking for one version's binary.
type lookup struct {
	path string
	why  string // why nothing was found, when path is ""
}

// binaries caches lookups for the life of the process, keyed by version.
var binaries = struct {
	sync.Mutex
	m map[Version]lookup
}{m: map[Version]lookup{}}

// Binary returns the path of an HAProxy binary of branch v, after checking
// that its "-v" output names that branch. It looks, in order, at the
// environment variable v.EnvVar() (when set, nothing else is tried), at
// SystemBinary (2.6 only) and at the wrapper that scripts/install-haproxy.sh
// writes, $SPOE_HAPROXY_CACHE/<v>/haproxy (default DefaultCache). Results are
// cached per process.
//
// If no binary is found, the test is skipped with a message starting with
// "SKIP (no HAProxy X.Y binary)", or failed if SPOE_REQUIRE_HAPROXY=1.
func Binary(t testing.TB, v Version) string {
	t.Helper()
	binaries.Lock()
	r, ok := binaries.m[v]
	if !ok {
		r = find(v)
		binaries.m[v] = r
	}
	binaries.Unlock()
	if r.path != "" {
		return r.path
	}
	cache := os.Getenv(CacheEnv)
	if cache == "" {
		cache = DefaultCache
	}
	hint := fmt.Sprintf("run scripts/install-haproxy.sh, then `. %s/env.sh` (or set %s)", cache, v.EnvVar())
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("no HAProxy %s binary, and %s=1 requires one: %s; %s", v, RequireEnv, r.why, hint)
	}
	t.Skipf("SKIP (no HAProxy %s binary): %s; %s. Set %s=1 to make this a failure.", v, r.why, hint, RequireEnv)
	return ""
}

// find looks for the binary of branch v (see Binary).
func find(v Version) lookup {
	if !slices.Contains(All, v) {
		return lookup{why: fmt.Sprintf("unsupported version %q (want one of %v)", string(v), All)}
	}
	if p := os.Getenv(v.EnvVar()); p != "" {
		if err := verify(p, v); err != nil {
			return lookup{why: fmt.Sprintf("%s=%s: %v", v.EnvVar(), p, err)}
		}
		return lookup{path: p}
	}
	var candidates []string
	if v == V26 {
		candidates = append(candidates, SystemBinary)
	}
	cache := os.Getenv(CacheEnv)
	if cache == "" {
		cache = DefaultCache
	}
	candidates = append(candidates, filepath.Join(cache, string(v), "haproxy"))
	var why []string
	for _, p := range candidates {
		if _, err := os.Stat(p); err != nil {
			why = append(why, fmt.Sprintf("%s does not exist", p))
			continue
		}
		if err := verify(p, v); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		return lookup{path: p}
	}
	return lookup{why: fmt.Sprintf("%s is not set and %s", v.EnvVar(), strings.Join(why, ", "))}
}

// versionRE finds the branch in "haproxy -v" output ("HAProxy version
// 3.2.26-1 ..." or, in old releases, "HA-Proxy version 2.0.1 ...").
var versionRE = regexp.MustCompile(`(?m)^HA-?Proxy version (\d+\.\d+)[.-]`)

// verify runs "bin -v" and checks that it reports branch v.
func verify(bin string, v Version) error {
	ctx, cancel := context.WithTimeout(context.Background(), versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%q -v failed: %v: %s", bin, err, firstLine(out))
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("%q -v printed no HAProxy version: %s", bin, firstLine(out))
	}
	if got := Version(m[1]); got != v {
		return fmt.Errorf("it is HAProxy %s, not %s (%s)", got, v, firstLine(out))
	}
	return nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago (the
// kernel picked it for a listener that was then closed).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("haproxytest: FreePort: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("haproxytest: FreePort: %v", err)
	}
	return port
}

// writeConfig writes cfg as haproxy.cfg in a new temporary folder of t.
func writeConfig(t testing.TB, cfg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatalf("haproxytest: writing the configuration: %v", err)
	}
	return path
}

// Check writes cfg to a temporary file and runs "bin -c -f file" on it. It
// returns nil if HAProxy accepts the configuration without a warning (see
// Warnings; "haproxy -c" exits 0 despite warnings), else an error that
// includes HAProxy's combined stdout and stderr.
func Check(t testing.TB, bin, cfg string) error {
	t.Helper()
	path := writeConfig(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -c -f %s: %v\n%s", bin, path, err, out)
	}
	if w := Warnings(string(out)); len(w) > 0 {
		return fmt.Errorf("%s -c -f %s: accepted with %d warning(s), first %q\n%s", bin, path, len(w), w[0], out)
	}
	return nil
}

// Proc is a running (or finished) HAProxy process started by Start or
// Reload. It is stopped when the test that started it ends.
type Proc struct {
	p *childproc.Proc
}

// Start writes cfg into a temporary folder and runs "bin -db -f cfgfile"
// (foreground, no master-worker), with stdout and stderr captured (see
// Proc.Output; both are logged if the test fails). It waits until every
// address in waitAddrs ("127.0.0.1:port") accepts TCP connections, failing
// the test with HAProxy's output if HAProxy exits first or this takes more
// than 10 s. When the test ends, the process is sent SIGTERM, then SIGKILL
// if it has not exited within 5 s, and reaped.
func Start(t testing.TB, bin, cfg string, waitAddrs ...string) *Proc {
	t.Helper()
	p := start(t, bin, writeConfig(t, cfg), nil)
	p.waitReady(t, 0, waitAddrs)
	return p
}

// Reload starts a new HAProxy with cfg the classic way, "bin -db -f cfgfile
// -sf <old pid>": the new process binds its listeners next to the old one's
// and then tells the old one to stop softly (SIGUSR1). It waits like Start,
// and also until the new process itself holds a listening socket on the port
// of each address in waitAddrs, so these must be listeners of the new
// configuration. The old process's stop is left to HAProxy (see Proc.Wait).
func Reload(t testing.TB, old *Proc, bin, cfg string, waitAddrs ...string) *Proc {
	t.Helper()
	if old == nil {
		t.Fatalf("haproxytest: Reload: old process is nil")
	}
	p := start(t, bin, writeConfig(t, cfg), []string{"-sf", strconv.Itoa(old.Pid())})
	p.waitReady(t, 0, waitAddrs)
	p.waitReady(t, p.Pid(), waitAddrs)
	return p
}

// start runs bin on cfgPath and registers its cleanup.
func start(t testing.TB, bin, cfgPath string, extra []string) *Proc {
	t.Helper()
	args := append([]string{"-db", "-f", cfgPath}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(cfgPath)
	// Killed with the test binary if it dies without running its cleanups
	// (e.g. go test's timeout panic).
	cp, err := childproc.Start(cmd)
	if err != nil {
		t.Fatalf("haproxytest: starting %s %s: %v", bin, strings.Join(args, " "), err)
	}
	p := &Proc{p: cp}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("haproxytest: stopping HAProxy (pid %d): %v", p.Pid(), err)
		}
		if t.Failed() {
			t.Logf("HAProxy (pid %d, %s %s) output:\n%s", p.Pid(), bin, strings.Join(args, " "), p.Output())
		}
	})
	return p
}

// waitReady waits until every address accepts TCP connections and, when
// ownerPid is not 0, until that process holds a listening socket on each
// address's port. It fails the test if the process exits or time runs out.
func (p *Proc) waitReady(t testing.TB, ownerPid int, addrs []string) {
	t.Helper()
	ports := make([]int, len(addrs))
	for i, a := range addrs {
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("haproxytest: bad wait address %q: %v", a, err)
		}
		if ports[i], err = strconv.Atoi(ps); err != nil {
			t.Fatalf("haproxytest: bad port in wait address %q: %v", a, err)
		}
	}
	deadline := time.Now().Add(startTimeout)
	ready := make([]bool, len(addrs))
	for {
		pending := ""
		for i, a := range addrs {
			if ready[i] {
				continue
			}
			if ownerPid != 0 {
				ready[i] = ownsListener(ownerPid, ports[i])
			} else if c, err := net.DialTimeout("tcp", a, 500*time.Millisecond); err == nil {
				_ = c.Close()
				ready[i] = true
			}
			if !ready[i] && pending == "" {
				pending = a
			}
		}
		if pending == "" {
			return
		}
		select {
		case <-p.p.Done():
			t.Fatalf("haproxytest: HAProxy (pid %d) exited (%v) before %s accepted connections; output:\n%s",
				p.Pid(), p.p.Err(), pending, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			what := "accept connections"
			if ownerPid != 0 {
				what = "be listened on by the new process"
			}
			t.Fatalf("haproxytest: %s did not %s within %v; HAProxy (pid %d) output:\n%s",
				pending, what, startTimeout, p.Pid(), p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ownsListener reports whether process pid has an open TCP socket in LISTEN
// state on port (any address, IPv4 or IPv6). It reads Linux's /proc.
func ownsListener(pid, port int) bool {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(data), "\n")
		for _, l := range lines[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(l)
			if len(fs) < 10 || fs[3] != "0A" { // 0A = TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if i < 0 {
				continue
			}
			if lp, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil && int(lp) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && inodes[link] {
			return true
		}
	}
	return false
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.p.Pid() }

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.p.Output() }

// SoftStop sends SIGUSR1: HAProxy stops listening and exits once its current
// connections are done (or when "hard-stop-after" expires).
func (p *Proc) SoftStop() error { return p.p.Signal(syscall.SIGUSR1) }

// Kill sends SIGKILL.
func (p *Proc) Kill() error { return p.p.Signal(syscall.SIGKILL) }

// Wait waits up to timeout for the process to exit. It returns nil if it
// exited with status 0, the *exec.ExitError if it exited otherwise (or was
// killed by a signal), or an error if it is still running after timeout.
func (p *Proc) Wait(timeout time.Duration) error {
	if !p.p.Exited(timeout) {
		return fmt.Errorf("HAProxy (pid %d) still running after %v", p.Pid(), timeout)
	}
	return p.p.Err()
}

// stop ends the process (SIGTERM, then SIGKILL) and waits for it to be
// reaped, within bounded times. HAProxy killed after ignoring SIGTERM is
// not an error.
func (p *Proc) stop() error {
	if err := p.p.Stop(syscall.SIGTERM, stopTimeout); err != nil && !errors.Is(err, childproc.ErrKilled) {
		return err
	}
	return nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: the
// output of a child process read while it runs.
type SyncBuffer = childproc.SyncBuffer

// ForEachVersion runs f as one subtest per version of All, named after it,
// with that version's binary: Binary skips (loudly) a missing version, or
// fails the subtest when SPOE_REQUIRE_HAPROXY=1. Each subtest logs how long
// it took.
func ForEachVersion(t *testing.T, f func(t *testing.T, v Version, bin string)) {
	t.Helper()
	for _, v := range All {
		t.Run(string(v), func(t *testing.T) {
			bin := Binary(t, v)
			start := time.Now()
			t.Cleanup(func() { t.Logf("HAProxy %s: %v", v, time.Since(start).Round(time.Millisecond)) })
			f(t, v, bin)
		})
	}
}
