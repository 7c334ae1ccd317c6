package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stuckAgent serves an agent whose handler "m" ignores its context and
// blocks until the test ends, with NOTIFYs in flight on one connection.
func stuckAgent(t *testing.T, n int) (*agent.Agent, chan error) {
	t.Helper()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	a := agent.New(agent.WithTimeout(time.Minute)) // the deadline watch will not save us
	var returned sync.WaitGroup
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		returned.Add(1)
		defer returned.Done()
		started.Done()
		<-release
		return nil
	})
	t.Cleanup(func() {
		close(release)
		returned.Wait() // for goleak: the handlers end when the test does
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()
	c := spoptest.Dial(t, l.Addr().String())
	c.Hello("pipelining", 16380)
	for i := range n {
		c.Notify(uint64(i+1), 1, spoptest.Msg{Name: "m"})
	}
	started.Wait()
	return a, served
}

// TestShutdownReturnsWhenCtxEnds: Shutdown returns ctx's error when ctx
// ends, even though handlers ignore their context and never return.
func TestShutdownReturnsWhenCtxEnds(t *testing.T) {
	a, served := stuckAgent(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s := time.Now()
	err := a.Shutdown(ctx)
	took := time.Since(s)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, took, 2*time.Second, "Shutdown waited for handlers that ignore their context")
	require.ErrorIs(t, <-served, agent.ErrAgentClosed)
}

// TestCloseReturnsAtOnce: Close does not wait for handlers.
func TestCloseReturnsAtOnce(t *testing.T) {
	a, served := stuckAgent(t, 5)
	s := time.Now()
	require.NoError(t, a.Close())
	assert.Less(t, time.Since(s), time.Second, "Close waited for handlers that ignore their context")
	require.ErrorIs(t, <-served, agent.ErrAgentClosed)
}

// TestRunSIGTERM runs an agent with Run in a child process, keeps NOTIFYs
// in flight, sends SIGTERM, and checks the drain: every NOTIFY answered,
// then AGENT-DISCONNECT status 0, a closed listener, exit status 0.
func TestRunSIGTERM(t *testing.T) {
	if os.Getenv("SPOE_RUN_CHILD") != "" {
		runChild()
		return
	}
	const n = 20
	child := exec.Command(os.Args[0], "-test.run=^TestRunSIGTERM$")
	child.Env = append(os.Environ(), "SPOE_RUN_CHILD=1")
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill() })
	lines := make(chan string, 2*n)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the child exited early")
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("the child said nothing for 10 s")
			return ""
		}
	}
	addr, ok := strings.CutPrefix(next(), "LISTENING ")
	require.True(t, ok)
	c := spoptest.Dial(t, addr)
	c.Hello("pipelining", 16380)
	for i := range n {
		c.Notify(uint64(i+1), 1, spoptest.Msg{Name: "slow"})
	}
	for range n { // every NOTIFY reached a handler
		require.True(t, strings.HasPrefix(next(), "HANDLING "))
	}
	require.NoError(t, child.Process.Signal(syscall.SIGTERM))
	seen := map[uint64]bool{}
	for range n {
		ack := c.ReadAck()
		_, ok := ack.Var("done")
		require.True(t, ok, "ACK %d lost its actions", ack.StreamID)
		seen[ack.StreamID] = true
	}
	require.Len(t, seen, n)
	d := c.ReadDisconnect()
	assert.Equal(t, codec.StatusNormal, d.Status)
	c.ExpectClosed()
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "the listener is closed after SIGTERM")
	require.NoError(t, child.Wait(), "Run returned an error, or the child did not exit 0")
}

// runChild is the child of TestRunSIGTERM: an agent whose handlers take
// 300 ms, served by Run.
func runChild() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(3)
	}
	addr := l.Addr().String()
	_ = l.Close()
	a := agent.New(agent.WithTimeout(5 * time.Second))
	a.Message("slow", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		fmt.Printf("HANDLING %d\n", m.StreamID())
		time.Sleep(300 * time.Millisecond)
		act.SetBool(agent.ScopeTransaction, "done", true)
		return nil
	})
	go func() {
		// Run has listened once a dial succeeds.
		for {
			if c, err := net.Dial("tcp", addr); err == nil {
				_ = c.Close()
				fmt.Println("LISTENING " + addr)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	if err := a.Run(addr); err != nil {
		fmt.Fprintln(os.Stderr, "Run:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

type tenantKey struct{}

// TestBaseContext: on a default (not async) connection, handlers' contexts
// take their values from WithBaseContext and are cancelled with it.
func TestBaseContext(t *testing.T) {
	base, cancel := context.WithCancel(context.WithValue(context.Background(), tenantKey{}, "tenant-a"))
	defer cancel()
	got := make(chan any, 1)
	a := agent.New(agent.WithBaseContext(base), agent.WithTimeout(time.Minute),
		agent.WithErrorVar(agent.ScopeTransaction, "err"))
	a.Message("m", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
		got <- ctx.Value(tenantKey{})
		<-ctx.Done()
		return ctx.Err()
	})
	c := spoptest.Dial(t, start(t, a))
	c.Hello("pipelining", 16380)
	c.Notify(1, 1, spoptest.Msg{Name: "m"})
	require.Equal(t, "tenant-a", <-got)
	cancel()
	ack := c.ReadAck()
	v, ok := ack.Var("err")
	require.True(t, ok, "the handler's context was not cancelled with the base context")
	code, _ := v.Value.Int()
	assert.EqualValues(t, agent.ErrCodeTimeout, code)
}
