package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/fleettest"
	"github.com/spoe-forge/spoe-forge/internal/haproxytest"
	"github.com/stretchr/testify/require"
)

// The fleet tests run three cmd/example agents, as child processes, behind
// one backend of a real HAProxy, and restart or kill them under load. The
// health checks are fast so that the tests are: "check inter 200ms fall 2
// rise 2" marks a server DOWN within about 2 × 200 ms of its first failed
// check, and the agents' lame-duck period (1 s) is over that.
const (
	fleetSize      = 3
	fleetInter     = 200 * time.Millisecond
	fleetFall      = 2
	fleetRise      = 2
	fleetLameDuck  = time.Second
	fleetShutdown  = 5 * time.Second
	fleetClients   = 8
	fleetMaxPerCli = 20000 // a bound on each client's loop
	// fleetCheckTime bounds how long HAProxy may take to change a server's
	// state: fall (or rise) checks one inter apart, the first one up to an
	// inter away, plus room for a loaded machine.
	fleetCheckTime = (fleetFall+1)*fleetInter + time.Second
)

// fleetHAProxy is the HAProxy configuration of the fleet tests: the
// example's check-request message on every request, answered by the agents
// of be_spoa (a1, a2, a3), and the agent's variables in the response body.
var fleetHAProxy = template.Must(template.New("fleet").Funcs(template.FuncMap{"inc": func(i int) int { return i + 1 }}).Parse(`
global
    log stderr format raw local0 info
    stats socket {{.Dir}}/admin.sock mode 600 level admin
    hard-stop-after 15s

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 2s

frontend fe_main
    bind {{.FE}}
    filter spoe engine fleet config {{.Dir}}/spoe.conf
    http-request return status 200 content-type text/plain lf-string "arg=%[var(txn.fleet.test_arg,ABSENT)]\nerr=%[var(txn.fleet.spoe_error,ABSENT)]\n"

backend be_spoa
    mode {{if .V.Legacy}}tcp{{else}}spop{{end}}
    balance roundrobin
    timeout connect 1s
    timeout server 60s
    # A connection refused by a dead agent is retried on another server.
    retries 2
    option redispatch 1
    option spop-check
    default-server check inter {{.Inter}} fall {{.Fall}} rise {{.Rise}}
{{- range $i, $a := .Agents}}
    server a{{inc $i}} {{$a}}
{{- end}}
`))

var fleetSPOE = template.Must(template.New("spoe").Parse(`
[fleet]
spoe-agent fleet-agent
    messages check-request
    option var-prefix fleet
    option set-on-error spoe_error
{{- if .V.Legacy}}
    timeout hello 2s
    timeout idle 60s
{{- end}}
    timeout processing 1s
    use-backend be_spoa
    log global

spoe-message check-request
    args client_ip=src path=path user_agent=req.hdr(user-agent)
    event on-frontend-http-request
`))

// fleetAgent is one agent of the fleet: cmd/example on a fixed address,
// restarted there when needed.
type fleetAgent struct {
	Name    string // the server's name in be_spoa
	Addr    string
	Metrics string // its /metrics address
	Proc    *fleettest.Proc
}

// fleet is three agents behind one HAProxy.
type fleet struct {
	V       haproxytest.Version
	Dir, FE string
	Inter   time.Duration
	Fall    int
	Rise    int
	Agents  []string
	agents  []*fleetAgent
	example string
	hap     *haproxytest.Proc
	client  *http.Client
}

// repoRoot is the module's root folder.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// startFleet builds cmd/example (once per test binary), starts fleetSize
// agents and HAProxy v in front of them, and waits until every server is
// UP.
func startFleet(t *testing.T, v haproxytest.Version, bin string, lameDuck time.Duration) *fleet {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleet") // short: the stats socket's path is limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	f := &fleet{
		V: v, Dir: dir, FE: fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)),
		Inter: fleetInter, Fall: fleetFall, Rise: fleetRise,
		example: fleettest.Build(t, repoRoot(t), "./cmd/example"),
	}
	for i := range fleetSize {
		a := &fleetAgent{
			Name:    fmt.Sprintf("a%d", i+1),
			Addr:    fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)),
			Metrics: fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)),
		}
		f.agents = append(f.agents, a)
		f.Agents = append(f.Agents, a.Addr)
		f.startAgent(t, a, lameDuck)
	}
	var cfg, spoe bytes.Buffer
	require.NoError(t, fleetHAProxy.Execute(&cfg, f))
	require.NoError(t, fleetSPOE.Execute(&spoe, f))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "spoe.conf"), spoe.Bytes(), 0o644))
	f.hap = haproxytest.Start(t, bin, cfg.String(), f.FE)
	for _, a := range f.agents {
		fleettest.WaitServer(t, f.stats(), "be_spoa", a.Name, "UP", pollTimeout)
	}
	f.client = newClient(t, fleetClients)
	return f
}

func (f *fleet) stats() string { return filepath.Join(f.Dir, "admin.sock") }

// startAgent starts (or restarts) agent a and waits until it listens.
func (f *fleet) startAgent(t *testing.T, a *fleetAgent, lameDuck time.Duration) {
	t.Helper()
	a.Proc = fleettest.Start(t, a.Name, f.example, nil,
		"-addr", a.Addr, "-metrics-addr", a.Metrics, "-log-level", "info",
		"-lame-duck", lameDuck.String(), "-shutdown-timeout", fleetShutdown.String())
	fleettest.WaitListening(t, a.Proc, a.Addr, pollTimeout)
	fleettest.WaitListening(t, a.Proc, a.Metrics, pollTimeout)
}

// request sends GET /fleet/<id> and returns "" if the answer carries the
// agent's variable for this very request and no error, else what was
// wrong.
func (f *fleet) request(id string) string {
	path := "/fleet/" + id
	r, err := do(f.client, "GET", "http://"+f.FE+path, nil, nil)
	switch {
	case err != nil:
		return err.Error()
	case r.Status != http.StatusOK:
		return fmt.Sprintf("status %d", r.Status)
	}
	vars := r.Vars()
	if vars["arg"] != path || vars["err"] != "ABSENT" {
		return fmt.Sprintf("arg=%s err=%s", vars["arg"], vars["err"])
	}
	return ""
}

// metric returns the value of the sample named series (name and labels,
// as exposed) on agent a's /metrics.
func metric(a *fleetAgent, series string) (int, error) {
	r, err := do(&http.Client{Timeout: 2 * time.Second}, "GET", "http://"+a.Metrics+"/metrics", nil, nil)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(r.Body)
	if m == nil {
		return 0, fmt.Errorf("no %s in %s's metrics", series, a.Name)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	return int(n), err
}

// messages returns how many check-request messages agent a handled.
func messages(a *fleetAgent) (int, error) {
	return metric(a, `spoe_messages_total{message="check-request"}`)
}

// crossed checks the failures of a drain under load. On 3.1+ there may be
// none: HAProxy sends a DOWN agent no new work, so nothing crosses its
// AGENT-DISCONNECT. The legacy engine of 2.6/3.0 keeps sending NOTIFYs on
// the connections it has to a DOWN agent, and one that crosses the agent's
// AGENT-DISCONNECT (status 0) fails with set-on-error 256 (spop.md §7.3),
// or waits for HAProxy's timeout processing and fails with 1 (seen on 2.6
// and 3.0 when capturing: testdata/vectors/README.md, the row "NOTIFY
// crossing an agent-initiated AGENT-DISCONNECT").
// HAProxy has at most max-waiting-frames (20) NOTIFYs unanswered on a
// connection, so at most 20 per connection drained can cross. It returns
// how many failures crossed a DISCONNECT.
func crossed(t *testing.T, v haproxytest.Version, bad []fleettest.Outcome, drained int) int {
	t.Helper()
	if !v.Legacy() {
		require.Empty(t, bad, "requests without their own answer:\n%s", summary(bad))
		return 0
	}
	for _, o := range bad {
		require.Contains(t, []string{"arg=ABSENT err=256", "arg=ABSENT err=1"}, o.Why,
			"%s failed, and not by crossing an AGENT-DISCONNECT 0:\n%s", o.ID, summary(bad))
	}
	require.LessOrEqual(t, len(bad), 20*drained, "more failures than NOTIFYs that can cross the DISCONNECTs of %d connections", drained)
	return len(bad)
}

func mustMessages(t *testing.T, a *fleetAgent) int {
	t.Helper()
	n, err := messages(a)
	require.NoError(t, err)
	return n
}

// waitTraffic waits until agent a handles messages.
func waitTraffic(t *testing.T, a *fleetAgent) {
	t.Helper()
	waitFor(t, a.Name+" to get traffic", func() bool { n, err := messages(a); return err == nil && n > 0 })
}

// waitLoad waits until the load has completed n more requests than now.
func waitLoad(t *testing.T, run *fleettest.Run, n int) {
	t.Helper()
	want := run.Count() + n
	waitFor(t, fmt.Sprintf("%d more requests", n), func() bool { return run.Count() >= want })
}

// summary renders failures for a message: a count per reason and the
// first few.
func summary(bad []fleettest.Outcome) string {
	var b strings.Builder
	for i, o := range bad {
		if i == 10 {
			fmt.Fprintf(&b, "... and %d more\n", len(bad)-10)
			break
		}
		fmt.Fprintf(&b, "%s at %s: %s\n", o.ID, o.At.Format("15:04:05.000"), o.Why)
	}
	return b.String()
}

// TestFleet_LameDuck: what HAProxy does with an agent in its lame-duck
// period (SIGTERM, 3 s of failing health checks before the drain), under
// load. The server goes DOWN within the check time while the agent still
// runs; "spoe-forge healthcheck" says unhealthy (exit 1) and why; every
// request gets its own answer (the agent keeps serving what it is sent);
// and the agent exits 0 after draining. On 3.1+ (SPOP multiplexer) HAProxy
// sends the agent no new work once the server is DOWN. On 2.6/3.0 the
// legacy engine keeps using the connections it has to a DOWN server: the
// agent keeps getting work until it drains them, which the test shows
// (and does not treat as a failure: it serves that work).
func TestFleet_LameDuck(t *testing.T) {
	const lame = 3 * time.Second
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		f := startFleet(t, v, bin, lame)
		spoeForge := fleettest.Build(t, repoRoot(t), "./cmd/spoe-forge")
		run := fleettest.Load(fleetClients, fleetMaxPerCli, f.request)
		defer run.Stop()
		waitLoad(t, run, 200)

		a := f.agents[0]
		conns, err := metric(a, "spoe_connections_open")
		require.NoError(t, err)
		require.NoError(t, a.Proc.Signal(syscall.SIGTERM))
		sent := time.Now()
		down, row := fleettest.WaitServer(t, f.stats(), "be_spoa", a.Name, "DOWN", fleetCheckTime)
		require.False(t, a.Proc.Exited(), "the agent must still run in its lame-duck period")
		require.Less(t, time.Since(sent), lame, "DOWN must come within the lame-duck period")
		t.Logf("HAProxy %s: %s DOWN %v after SIGTERM; check_status=%s check_code=%s last_chk=%q",
			v, a.Name, down.Round(time.Millisecond), row["check_status"], row["check_code"], row["last_chk"])

		port := a.Addr[strings.LastIndexByte(a.Addr, ':')+1:]
		out, err := exec.Command(spoeForge, "healthcheck", "--port", port).CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "spoe-forge healthcheck must fail in the lame-duck period: %s", out)
		require.Equal(t, 1, ee.ExitCode(), "%s", out)
		require.Contains(t, string(out), "AGENT-DISCONNECT")
		require.Contains(t, string(out), "status 100")
		require.Contains(t, string(out), "lame duck")
		t.Logf("spoe-forge healthcheck: %s", strings.TrimSpace(string(out)))

		// Once DOWN: does HAProxy still send the agent work?
		time.Sleep(100 * time.Millisecond) // checks already assigned finish
		n0 := mustMessages(t, a)
		time.Sleep(time.Second)
		n1 := mustMessages(t, a)
		t.Logf("HAProxy %s: %s handled %d messages in the second after it was DOWN (still serving its connections)", v, a.Name, n1-n0)
		if !v.Legacy() {
			require.Zero(t, n1-n0, "3.1+ must send no new work to a DOWN server")
		}

		require.NoError(t, a.Proc.Wait(lame+fleetShutdown+5*time.Second), "the agent must drain and exit 0")
		waitLoad(t, run, 200)
		out2 := run.Stop()
		bad := fleettest.Failures(out2)
		n := crossed(t, v, bad, conns)
		t.Logf("HAProxy %s: %d requests, %d failed (%d NOTIFYs crossed the AGENT-DISCONNECT of one of %d connections drained)", v, len(out2), len(bad), n, conns)
		requireAgentLog(t, a.Proc.Output())
	})
}

// requireAgentLog checks an agent's output: the lame-duck period began,
// and nothing was logged above info.
func requireAgentLog(t *testing.T, out string) {
	t.Helper()
	require.Contains(t, out, "lame duck: failing health checks")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		require.NotRegexp(t, `"level":"(warn|error|fatal|panic)"`, l, "the agent logged a problem")
	}
}

// TestFleet_RollingRestart: each of the three agents in turn gets SIGTERM
// while 8 clients send requests, drains, exits 0 and is started again; the
// next one is restarted once HAProxy has it UP. No request may fail: each
// must carry its own answer from an agent, without set-on-error, and no
// 5xx. Every restarted agent gets traffic again.
func TestFleet_RollingRestart(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		f := startFleet(t, v, bin, fleetLameDuck)
		run := fleettest.Load(fleetClients, fleetMaxPerCli, f.request)
		defer run.Stop()
		waitLoad(t, run, 200)
		start := time.Now()
		var downs, ups []time.Duration
		drained := 0
		for _, a := range f.agents {
			old := a.Proc
			conns, err := metric(a, "spoe_connections_open")
			require.NoError(t, err)
			drained += conns
			require.NoError(t, old.Signal(syscall.SIGTERM))
			d, _ := fleettest.WaitServer(t, f.stats(), "be_spoa", a.Name, "DOWN", fleetCheckTime)
			downs = append(downs, d.Round(time.Millisecond))
			require.NoError(t, old.Wait(fleetLameDuck+fleetShutdown+5*time.Second), "%s must drain and exit 0", a.Name)
			requireAgentLog(t, old.Output())
			f.startAgent(t, a, fleetLameDuck)
			u, _ := fleettest.WaitServer(t, f.stats(), "be_spoa", a.Name, "UP", fleetCheckTime)
			ups = append(ups, u.Round(time.Millisecond))
			if !v.Legacy() {
				waitTraffic(t, a)
			}
		}
		if v.Legacy() {
			// 2.6/3.0 keep the connections they have and open new ones
			// only when they have no idle one: an agent that comes back
			// gets traffic once the connections to another agent close,
			// here when the next agent is restarted, and then only if
			// HAProxy opens enough new connections for balancing to reach
			// it. So at least one of those restarted before the last gets
			// traffic again; the last gets none until something else
			// changes.
			waitFor(t, "an agent restarted before the last to get traffic", func() bool {
				for _, a := range f.agents[:fleetSize-1] {
					if n, err := messages(a); err == nil && n > 0 {
						return true
					}
				}
				return false
			})
			for _, a := range f.agents {
				n, err := messages(a)
				require.NoError(t, err)
				t.Logf("HAProxy %s: %s handled %d messages since its restart", v, a.Name, n)
			}
		}
		took := time.Since(start)
		waitLoad(t, run, 100)
		out := run.Stop()
		bad := fleettest.Failures(out)
		n := crossed(t, v, bad, drained)
		t.Logf("HAProxy %s: rolling restart of %d agents in %v under %d clients: %d requests, %d failed (%d crossed the AGENT-DISCONNECT of one of the %d connections drained); DOWN after SIGTERM in %v, UP after restart in %v",
			v, fleetSize, took.Round(time.Millisecond), fleetClients, len(out), len(bad), n, drained, downs, ups)
	})
}

// TestFleet_Crash: the busiest of three agents gets SIGKILL while 8 clients send
// requests. The requests that may fail are those in flight on it (at most
// one per client) and those HAProxy sends on its connections before it has
// read their resets (observed: within 15 ms of the kill; a connection the
// dead agent refuses is retried on another server thanks to "retries" and
// "option redispatch"). The bound is two per client (16), each sent within
// 100 ms of the kill, with set-on-error 257 (an I/O error), or on 2.6/3.0
// also 1: an event the legacy engine had queued for the dead agent's
// applet when it died waits out timeout processing (seen once in a loaded
// full run on 2.6). HAProxy marks the server DOWN
// within the check time; restarted, it comes back UP and gets traffic
// again (on 2.6/3.0 once HAProxy opens new connections, which they do only
// when they have no idle one: here when the two other agents are restarted
// in turn).
func TestFleet_Crash(t *testing.T) {
	haproxytest.ForEachVersion(t, func(t *testing.T, v haproxytest.Version, bin string) {
		f := startFleet(t, v, bin, fleetLameDuck)
		run := fleettest.Load(fleetClients, fleetMaxPerCli, f.request)
		defer run.Stop()
		waitLoad(t, run, 200)

		// The victim is the busiest agent (2.6/3.0 may leave one with
		// hardly any traffic).
		a, before := f.agents[0], -1
		var others []*fleetAgent
		for _, c := range f.agents {
			if n := mustMessages(t, c); n > before {
				a, before = c, n
			}
		}
		for _, c := range f.agents {
			if c != a {
				others = append(others, c)
			}
		}
		killed := time.Now()
		require.NoError(t, a.Proc.Kill())
		down, _ := fleettest.WaitServer(t, f.stats(), "be_spoa", a.Name, "DOWN", fleetCheckTime)
		waitLoad(t, run, 200) // the others carry the load
		crashEnd := time.Now()
		f.startAgent(t, a, fleetLameDuck)
		up, _ := fleettest.WaitServer(t, f.stats(), "be_spoa", a.Name, "UP", fleetCheckTime)
		drained := 0
		if v.Legacy() {
			// 2.6/3.0 open a connection only when they have no idle one:
			// restart the two other agents, one after the other, so
			// that HAProxy must open new connections.
			for _, other := range others {
				conns, err := metric(other, "spoe_connections_open")
				require.NoError(t, err)
				drained += conns
				require.NoError(t, other.Proc.Signal(syscall.SIGTERM))
				require.NoError(t, other.Proc.Wait(fleetLameDuck+fleetShutdown+5*time.Second))
				f.startAgent(t, other, fleetLameDuck)
				fleettest.WaitServer(t, f.stats(), "be_spoa", other.Name, "UP", fleetCheckTime)
			}
		}
		waitTraffic(t, a)
		waitLoad(t, run, 200)
		out := run.Stop()
		var crash, drain []fleettest.Outcome
		for _, o := range fleettest.Failures(out) {
			if o.At.Before(crashEnd) {
				crash = append(crash, o)
				t.Logf("failed: %s sent %v after the kill, took %v: %s", o.ID, o.At.Sub(killed).Round(time.Microsecond), o.Took.Round(time.Microsecond), o.Why)
			} else {
				drain = append(drain, o)
			}
		}
		n := crossed(t, v, drain, drained)
		t.Logf("HAProxy %s: SIGKILL of %s (%d messages handled before): %d requests, %d failed at the crash (bound: %d, two per client), %d crossed a drain's DISCONNECT; DOWN %v after the kill (bound %v), UP %v after the restart",
			v, a.Name, before, len(out), len(crash), 2*fleetClients, n, down.Round(time.Millisecond), fleetCheckTime, up.Round(time.Millisecond))
		require.LessOrEqual(t, len(crash), 2*fleetClients, "more failures than the bound:\n%s", summary(crash))
		clients := map[string]int{}
		for _, o := range crash {
			g, _, _ := strings.Cut(o.ID, "-")
			clients[g]++
			require.LessOrEqual(t, clients[g], 2, "client %s failed more than twice: HAProxy kept sending it to the dead agent:\n%s", g, summary(crash))
			want := []string{"arg=ABSENT err=257"}
			if v.Legacy() {
				want = append(want, "arg=ABSENT err=1")
			}
			require.Contains(t, want, o.Why, "%s did not fail on the dead agent's connection", o.ID)
			require.Less(t, o.At.Sub(killed), 100*time.Millisecond, "%s was sent to the dead agent %v after the kill", o.ID, o.At.Sub(killed))
		}
	})
}
