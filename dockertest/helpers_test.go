package dockertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/childproc"
	"github.com/stretchr/testify/require"
)

// Bounds of the waits in this package.
const (
	buildTimeout = 3 * time.Minute  // go build of the two commands
	checkTimeout = 60 * time.Second // one "haproxy -c" (it may resolve names)
	readyTimeout = 10 * time.Second // a started process answering
	stopTimeout  = 5 * time.Second  // each step of stopping a process
	httpTimeout  = 5 * time.Second  // one HTTP request through HAProxy
)

// The environment variables the HAProxy configurations of docker/ read.
var configEnv = []string{"FRONTEND_BIND", "BACKEND_ADDR", "AGENT_ADDR", "AGENT_CHECK_INTER", "SPOE_CONF", "TRUSTED_PROXIES",
	"AGENT_CA", "AGENT_CLIENT_CERT", "AGENT_SERVER_NAME", "AGENT_SOCKET"}

// optionalEnv are the variables read only inside ".if defined(NAME)": they
// have no presetenv default.
var optionalEnv = []string{"TRUSTED_PROXIES", "AGENT_CA", "AGENT_SOCKET"}

var tmpRoot string // removed by TestMain; holds the built binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spoe-forge-dockertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockertest:", err)
		os.Exit(1)
	}
	tmpRoot = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot returns the repository's root folder (this package's parent).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the repository root must hold go.mod")
	return root
}

// dockerDir returns the absolute path of docker/, or of a file in it.
func dockerDir(t testing.TB, name ...string) string {
	t.Helper()
	return filepath.Join(append([]string{repoRoot(t), "docker"}, name...)...)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

var built struct {
	once               sync.Once
	example, spoeForge string
	err                error
}

// binaries builds cmd/example and cmd/spoe-forge once per test run and
// returns their paths.
func binaries(t testing.TB) (example, spoeForge string) {
	t.Helper()
	built.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("the go command is needed to build the binaries: %w", err)
			return
		}
		dir := filepath.Join(tmpRoot, "bin")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+string(filepath.Separator), "./cmd/example", "./cmd/spoe-forge")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built.example, built.spoeForge = filepath.Join(dir, "example"), filepath.Join(dir, "spoe-forge")
	})
	require.NoError(t, built.err)
	return built.example, built.spoeForge
}

// runStatus runs a command to completion within timeout and returns its
// exit status and combined output.
func runStatus(t testing.TB, timeout time.Duration, env []string, dir, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "%s %s did not finish within %v; output:\n%s", bin, strings.Join(args, " "), timeout, out)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	require.NoError(t, err, "running %s", bin)
	return 0, string(out)
}

// healthcheck runs "spoe-forge healthcheck" against 127.0.0.1:port.
func healthcheck(t testing.TB, spoeForge string, port int, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"healthcheck", "--port", strconv.Itoa(port), "--timeout", "2s"}, extra...)
	return runStatus(t, 10*time.Second, os.Environ(), "", spoeForge, args...)
}

// startProcess starts bin args..., captures its output, and stops it
// (SIGTERM, then SIGKILL) when the test ends.
func startProcess(t testing.TB, bin string, args ...string) *childproc.Proc {
	t.Helper()
	return startCmd(t, exec.Command(bin, args...))
}

// startCmd is startProcess for a prepared command (environment, folder).
// The process is killed with the test binary if its cleanups never run.
func startCmd(t testing.TB, cmd *exec.Cmd) *childproc.Proc {
	t.Helper()
	bin, args := cmd.Path, cmd.Args[1:]
	p, err := childproc.Start(cmd)
	require.NoError(t, err, "starting %s", bin)
	t.Cleanup(func() {
		if err := p.Stop(syscall.SIGTERM, stopTimeout); err != nil {
			t.Errorf("stopping %s: %v", bin, err)
		}
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", bin, strings.Join(args, " "), p.Output())
		}
	})
	return p
}

// startAgent runs the example agent on 127.0.0.1:port and waits until
// "spoe-forge healthcheck" passes against it.
func startAgent(t testing.TB, example, spoeForge string, port int) *childproc.Proc {
	t.Helper()
	return startAgentWith(t, example, spoeForge,
		[]string{"-addr", "127.0.0.1:" + strconv.Itoa(port)}, []string{"--port", strconv.Itoa(port)})
}

// startAgentWith runs the example agent with args and waits until
// "spoe-forge healthcheck" passes against it with check (the flags that
// say where the agent is and how to reach it). HAProxy checks every 100 ms
// (checkInter), 3 failures mark it DOWN: a lame-duck period of 500 ms is
// enough, and stops within stopTimeout.
func startAgentWith(t testing.TB, example, spoeForge string, args, check []string) *childproc.Proc {
	t.Helper()
	p := startProcess(t, example, append(args, "-log-level", "debug", "-lame-duck", "500ms")...)
	deadline := time.Now().Add(readyTimeout)
	for {
		code, out := runStatus(t, 10*time.Second, os.Environ(), "", spoeForge, append([]string{"healthcheck", "--timeout", "2s"}, check...)...)
		if code == 0 {
			return p
		}
		select {
		case <-p.Done():
			t.Fatalf("the agent exited (%v) before answering; output:\n%s", p.Err(), p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not pass its health check within %v: %s\nagent output:\n%s", readyTimeout, out, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoBackend stands in for traefik/whoami: it answers every request with
// its request line and headers, one per line, and counts requests per path.
type echoBackend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newEchoBackend(t testing.TB) *echoBackend {
	t.Helper()
	e := &echoBackend{hits: map[string]int{}}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve)) // listens on 127.0.0.1
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echoBackend) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.hits[r.URL.Path]++
	e.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "Hostname: echo-backend\nRemoteAddr: %s\n%s %s %s\nHost: %s\n", r.RemoteAddr, r.Method, r.URL.RequestURI(), r.Proto, r.Host)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

func (e *echoBackend) addr() string { return e.srv.Listener.Addr().String() }

func (e *echoBackend) port() int { return e.srv.Listener.Addr().(*net.TCPAddr).Port }

func (e *echoBackend) hitsOf(path string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hits[path]
}

// setConfigEnv sets the environment the HAProxy configurations read for the
// rest of the test: every name of configEnv missing from env is unset.
func setConfigEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for k := range env {
		require.Contains(t, configEnv, k, "unknown configuration variable")
	}
	for _, k := range configEnv {
		if v, ok := env[k]; ok {
			t.Setenv(k, v)
			continue
		}
		t.Setenv(k, "") // restores the old value when the test ends
		require.NoError(t, os.Unsetenv(k))
	}
}

// cleanEnv returns the process environment without configEnv's variables,
// plus extra ("K=V").
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, c := range configEnv {
			if k == c {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var devCertsOnce struct {
	once sync.Once
	dir  string
	err  error
}

// devCerts runs docker/gen-dev-certs.sh once per test run, as compose's
// certs service does, and returns the folder of the certificates. Without
// openssl the test skips, or fails when SPOE_REQUIRE_HAPROXY=1 (as CI sets).
func devCerts(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("SPOE_REQUIRE_HAPROXY") == "1" {
			t.Fatalf("openssl is needed to run docker/gen-dev-certs.sh (SPOE_REQUIRE_HAPROXY=1 forbids skipping): %v", err)
		}
		t.Skipf("SKIPPED: openssl is needed to run docker/gen-dev-certs.sh: %v", err)
	}
	devCertsOnce.once.Do(func() {
		dir := filepath.Join(tmpRoot, "certs")
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", dockerDir(t, "gen-dev-certs.sh"))
		cmd.Env = append(os.Environ(), "CERTS_DIR="+dir, "AGENT_NAME=agent")
		if out, err := cmd.CombinedOutput(); err != nil {
			devCertsOnce.err = fmt.Errorf("gen-dev-certs.sh: %v\n%s", err, out)
			return
		}
		devCertsOnce.dir = dir
	})
	require.NoError(t, devCertsOnce.err)
	return devCertsOnce.dir
}

// hostPath maps a path inside the compose containers' certificate mounts
// (/certs, /usr/local/etc/haproxy/certs) to the same file of devCerts.
func hostPath(t testing.TB, p string) string {
	t.Helper()
	for _, mount := range []string{"/usr/local/etc/haproxy/certs/", "/certs/"} {
		if rest, ok := strings.CutPrefix(p, mount); ok {
			return filepath.Join(devCerts(t), rest)
		}
	}
	return p
}
