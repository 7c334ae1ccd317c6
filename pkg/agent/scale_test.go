//go:build scale

package agent_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// The scale tests are not part of the default run: they need a high file
// descriptor limit and take a while. Run them with scripts/scale.sh.

// TestIdleConnections holds SPOE_SCALE_CONNS (default 10,000) idle
// connections after HELLO, opened by a child process (each process stays
// under its file descriptor limit), and reports the agent's memory per idle
// connection.
func TestIdleConnections(t *testing.T) {
	if addr := os.Getenv("SPOE_SCALE_CHILD"); addr != "" {
		scaleChild(t, addr, net.Dial)
		return
	}
	a := agent.New()
	a.Message("m", echo)
	addr := start(t, a)
	idle := holdIdle(t, a, addr, "TestIdleConnections", "idle", nil, time.Minute)
	// One goroutine (the reader) and at most 8 KiB per idle connection:
	// the stages that have nothing to do hold no goroutine.
	require.LessOrEqual(t, idle.perHeap+idle.perStack, 8.0*1024, "memory per idle connection")
	require.Less(t, idle.goroutines, 1.1, "goroutines per idle connection")

	// A NOTIFY on a new connection is still answered at once.
	c := spoptest.Dial(t, addr)
	c.Hello("pipelining", 16380)
	s := time.Now()
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	c.ReadAck()
	t.Logf("round trip beside %d idle connections: %v", idle.n, time.Since(s))

	idle.release()
	require.Eventually(t, func() bool { return a.Connections() == 1 }, time.Minute, 10*time.Millisecond)
}

// idleConns is what holdIdle measured, per idle connection.
type idleConns struct {
	n                         int
	goroutines                float64
	perHeap, perStack, perRSS float64
	release                   func() // the child closes its connections and exits
}

// holdIdle has a child process (this test binary running test run with
// SPOE_SCALE_CHILD=addr and env) open SPOE_SCALE_CONNS (default 10,000)
// connections to a and say HELLO on each, waits until a counts them all
// (for at most wait), and measures a's memory and goroutines per connection,
// logged as what connections.
func holdIdle(t *testing.T, a *agent.Agent, addr, run, what string, env []string, wait time.Duration) idleConns {
	t.Helper()
	n := 10000
	if s := os.Getenv("SPOE_SCALE_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rssBefore := rss(t)
	g0 := runtime.NumGoroutine()

	child := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.v")
	child.Env = append(append(os.Environ(), "SPOE_SCALE_CHILD="+addr, "SPOE_SCALE_CONNS="+strconv.Itoa(n)), env...)
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "READY") {
			ready = true
			break
		}
		t.Log("child:", sc.Text())
	}
	require.True(t, ready, "the child did not open its connections")
	require.Eventually(t, func() bool { return a.Connections() == n }, wait, 10*time.Millisecond)
	time.Sleep(time.Second) // let every reader settle into its idle read
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rssAfter := rss(t)
	idle := idleConns{
		n:          n,
		goroutines: float64(runtime.NumGoroutine()-g0) / float64(n),
		perHeap:    float64(after.HeapInuse-before.HeapInuse) / float64(n),
		perStack:   float64(after.StackInuse-before.StackInuse) / float64(n),
		perRSS:     float64(rssAfter-rssBefore) / float64(n),
		release: func() {
			_ = stdin.Close()
			require.NoError(t, child.Wait())
		},
	}
	t.Logf("%d %s connections: %.1f goroutines each; per connection: heap %.0f B, stacks %.0f B, RSS %.0f B (total RSS growth %.1f MiB)",
		n, what, idle.goroutines, idle.perHeap, idle.perStack, idle.perRSS, float64(rssAfter-rssBefore)/(1<<20))
	return idle
}

// scaleChild is the child of holdIdle: it opens SPOE_SCALE_CONNS
// connections to addr with dial, says HELLO on each, prints READY, and
// closes them all when its stdin closes.
func scaleChild(t *testing.T, addr string, dial func(network, addr string) (net.Conn, error)) {
	n, _ := strconv.Atoi(os.Getenv("SPOE_SCALE_CONNS"))
	hello := spoptest.HelloFrame("pipelining", 16380)
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 256)
	for i := range n {
		nc, err := dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if _, err := nc.Write(hello); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Read(buf); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	fmt.Println("READY")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	for _, c := range conns {
		_ = c.Close()
	}
}

func rss(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
