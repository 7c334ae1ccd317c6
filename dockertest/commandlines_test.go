package dockertest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/childproc"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/stretchr/testify/require"
)

// entrypoints returns the ENTRYPOINT binary of each stage of
// docker/Dockerfile that has one.
func entrypoints(t *testing.T) map[string]string {
	t.Helper()
	df := readFile(t, dockerDir(t, "Dockerfile"))
	out := map[string]string{}
	stage := ""
	for _, line := range strings.Split(df, "\n") {
		if m := regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+(\S+)`).FindStringSubmatch(line); m != nil {
			stage = m[1]
		}
		if m := regexp.MustCompile(`^ENTRYPOINT \["([^"]+)"\]`).FindStringSubmatch(line); m != nil {
			out[stage] = m[1]
		}
	}
	return out
}

// buildBench builds cmd/bench next to the other binaries.
func buildBench(t *testing.T) string {
	t.Helper()
	example, _ := binaries(t)
	bin := filepath.Join(filepath.Dir(example), "bench")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/bench")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/bench: %s", out)
	return bin
}

// TestComposeCommandLines runs every service of docker/compose.yaml as
// compose would, without Docker: the binary its image runs (the Dockerfile
// stage's ENTRYPOINT for the images built here, the HAProxy binary of the
// image's branch), with the service's command line and environment, the
// service names rewritten to 127.0.0.1 addresses, and compose variables
// set as a user could (ports, short durations). So a flag or a file that
// drifts from the code fails here: the agent must start from its
// environment alone and pass its own healthcheck command and serve
// /metrics; HAProxy must load its mounted files and answer through the
// agent; bench must run its command line to the end against the agent;
// and SIGTERM must stop the agent within stop_grace_period. A service this
// test does not know how to run fails it.
func TestComposeCommandLines(t *testing.T) {
	example, spoeForge := binaries(t)
	agentPort, metricsPort := haproxytest.FreePort(t), haproxytest.FreePort(t)
	vars := map[string]string{
		"AGENT_PORT":        strconv.Itoa(agentPort),
		"METRICS_PORT":      strconv.Itoa(metricsPort),
		"AGENT_CHECK_INTER": "100ms",
		"SPOE_LAME_DUCK":    "1s",
		"BENCH_DURATION":    "1s",
	}
	c := loadComposeWith(t, vars)
	stages := entrypoints(t)
	backend := newEchoBackend(t)
	agentAddr := "127.0.0.1:" + strconv.Itoa(agentPort)

	// native rewrites a compose value for this machine: service names and
	// "every interface" become loopback addresses.
	native := func(v string) string {
		if strings.HasPrefix(v, "/certs/") || strings.HasPrefix(v, "/usr/local/etc/haproxy/certs/") {
			v = hostPath(t, v) // the certs service's volume: devCerts
		}
		v = strings.ReplaceAll(v, "agent:"+strconv.Itoa(agentPort), agentAddr)
		v = strings.ReplaceAll(v, "whoami:80", backend.addr())
		v = strings.ReplaceAll(v, "0.0.0.0:", "127.0.0.1:")
		return v
	}
	envOf := func(s composeService) []string {
		env := cleanEnv()
		for k, v := range s.Environment {
			if k == "FRONTEND_BIND" && strings.HasPrefix(v, ":") {
				v = "127.0.0.1:" + strconv.Itoa(haproxytest.FreePort(t))
			}
			env = append(env, k+"="+native(v))
		}
		return env
	}
	bins := map[string]string{"example": example, "spoe-forge": spoeForge}
	binOf := func(target string) string {
		name, ok := stages[target]
		require.True(t, ok, "Dockerfile stage %s has no ENTRYPOINT", target)
		if name == "bench" {
			return buildBench(t)
		}
		bin, ok := bins[name]
		require.True(t, ok, "no native build of %s, the ENTRYPOINT of stage %s", name, target)
		return bin
	}

	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	// The certificates, then the agent: the others need them.
	order := []string{"certs", "agent"}
	for _, n := range names {
		if n != "agent" && n != "certs" {
			order = append(order, n)
		}
	}
	var agentProc *childproc.Proc
	parent := t // the agent lives as long as the whole test
	for _, name := range order {
		s := c.Services[name]
		switch {
		case s.Build != nil && s.Build.Target == "certs":
			t.Run(name, func(t *testing.T) {
				// devCerts runs docker/gen-dev-certs.sh as this service
				// does, into the folder native() maps /certs to.
				require.Equal(t, "/certs", s.Environment["CERTS_DIR"])
				require.Equal(t, []string{"certs:/certs"}, s.Volumes)
				require.FileExists(t, filepath.Join(devCerts(t), "ca.crt"))
			})
		case s.Build != nil && s.Build.Target == "agent":
			t.Run(name, func(t *testing.T) {
				require.Empty(t, s.Command, "the agent runs its ENTRYPOINT with its environment")
				cmd := exec.Command(binOf("agent"))
				cmd.Env = envOf(s)
				agentProc = startCmd(parent, cmd)
				waitListening(t, agentProc, agentAddr)
				hc := nativeArgs(native, s.Healthcheck.Test[1:]) // after "CMD"
				require.Equal(t, "spoe-forge", hc[0])
				code, out := runStatus(t, 10*time.Second, cleanEnv(), "", bins[hc[0]], hc[1:]...)
				require.Equal(t, 0, code, "the healthcheck command fails against the agent: %s", out)
				metrics := native(s.Environment["SPOE_METRICS_ADDR"])
				r, err := http.Get("http://" + metrics + "/metrics")
				require.NoError(t, err, "the agent serves no metrics on SPOE_METRICS_ADDR")
				_ = r.Body.Close()
				require.Equal(t, http.StatusOK, r.StatusCode)
			})
		case strings.HasPrefix(s.Image, "haproxy:"):
			t.Run(name, func(t *testing.T) {
				v := haproxytest.Version(strings.TrimPrefix(s.Image, "haproxy:"))
				bin := haproxytest.Binary(t, v)
				var cfg string
				for _, vol := range s.Volumes {
					if strings.HasSuffix(vol, ":/usr/local/etc/haproxy/haproxy.cfg:ro") {
						cfg = dockerDir(t, strings.TrimPrefix(strings.Split(vol, ":")[0], "./"))
					}
				}
				require.NotEmpty(t, cfg, "%s mounts no haproxy.cfg", name)
				env := envOf(s)
				cmd := exec.Command(bin, "-db", "-f", cfg)
				cmd.Env = env
				cmd.Dir = t.TempDir() // the SPOE file must be found beside the configuration
				p := startCmd(t, cmd)
				var fe string
				for _, kv := range env {
					if v, ok := strings.CutPrefix(kv, "FRONTEND_BIND="); ok {
						fe = v
					}
				}
				waitListening(t, p, fe)
				deadline := time.Now().Add(readyTimeout)
				for {
					r := get(t, "http://"+fe, "/hello")
					if r.status == http.StatusOK && r.header.Get("X-Test-Arg") == "/hello" {
						break
					}
					require.True(t, time.Now().Before(deadline), "no answer through the agent: %d %v\n%s", r.status, r.header, p.Output())
					time.Sleep(50 * time.Millisecond)
				}
			})
		case s.Build != nil && s.Build.Target == "bench":
			t.Run(name, func(t *testing.T) {
				args := make([]string, len(s.Command))
				for i, a := range s.Command {
					args[i] = native(a)
				}
				code, out := runStatus(t, 60*time.Second, cleanEnv(), "", binOf("bench"), args...)
				require.Equal(t, 0, code, "bench %s:\n%s", strings.Join(args, " "), out)
				require.NotContains(t, out, "flag provided but not defined")
			})
		case s.Image == "traefik/whoami":
			// The application: a Go HTTP server stands in for it (it has
			// no command line of ours); HAProxy's subtests reach it.
			require.Empty(t, s.Command)
		case strings.HasPrefix(s.Image, "fortio/fortio"):
			// A third-party load generator whose binary is not installed
			// here: its command line is fortio's. What is ours in it, the
			// URL, must reach the haproxy service's frontend.
			_, port := hostPort(t, c.Services["haproxy"].Environment["FRONTEND_BIND"])
			require.Contains(t, s.Command, "http://haproxy:"+port+"/hello")
		default:
			t.Fatalf("service %s (image %s): TestComposeCommandLines does not know how to run it natively; add it", name, s.Image)
		}
	}

	t.Run("SIGTERM within stop_grace_period", func(t *testing.T) {
		require.NotNil(t, agentProc)
		grace, err := time.ParseDuration(c.Services["agent"].StopGracePeriod)
		require.NoError(t, err)
		// Docker's own healthcheck checks it every few seconds (the
		// HAProxy processes above have stopped).
		hc := nativeArgs(native, c.Services["agent"].Healthcheck.Test[1:])
		code, out := runStatus(t, 10*time.Second, cleanEnv(), "", bins[hc[0]], hc[1:]...)
		require.Equal(t, 0, code, out)
		start := time.Now()
		require.NoError(t, agentProc.Signal(syscall.SIGTERM))
		select {
		case <-agentProc.Done():
		case <-time.After(grace):
			t.Fatalf("the agent did not stop within stop_grace_period (%v)", grace)
		}
		require.NoError(t, agentProc.Err(), "the agent's exit status")
		require.Contains(t, agentProc.Output(), "lame duck: failing health checks", "the agent was checked: SIGTERM starts the lame-duck period")
		t.Logf("the agent stopped %v after SIGTERM (lame duck %s, grace %v)", time.Since(start).Round(time.Millisecond), vars["SPOE_LAME_DUCK"], grace)
	})
}

// nativeArgs applies native to every argument.
func nativeArgs(native func(string) string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = native(a)
	}
	return out
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, p *childproc.Proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		if c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond); err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("exited (%v) before listening on %s:\n%s", p.Err(), addr, p.Output())
		default:
		}
		require.True(t, time.Now().Before(deadline), fmt.Sprintf("%s not listening within %v:\n%s", addr, readyTimeout, p.Output()))
		time.Sleep(20 * time.Millisecond)
	}
}
