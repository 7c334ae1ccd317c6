//go:build scale

package agent_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/internal/testpki"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/stretchr/testify/require"
)

// TestIdleConnectionsTLS is TestIdleConnections over mutual TLS: it holds
// SPOE_SCALE_CONNS (default 10,000) idle connections after their handshake
// and HELLO, opened by a child process, and reports the agent's memory per
// idle TLS connection, to compare with the plain one's.
func TestIdleConnectionsTLS(t *testing.T) {
	if addr := os.Getenv("SPOE_SCALE_CHILD"); addr != "" {
		scaleChildTLS(t, addr, os.Getenv("SPOE_SCALE_TLS_DIR"))
		return
	}
	n := 10000
	if s := os.Getenv("SPOE_SCALE_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	p := newPKI(t)
	dir := t.TempDir()
	p.client.WriteFiles(t, dir, "client")
	testpki.WriteCAFile(t, filepath.Join(dir, "ca.crt"), p.ca)
	a := agent.New(agent.WithTLS(p.serverConfig(t)))
	a.Message("m", echo)
	addr := start(t, a)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rssBefore := rss(t)
	g0 := runtime.NumGoroutine()

	child := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionsTLS$", "-test.v")
	child.Env = append(os.Environ(), "SPOE_SCALE_CHILD="+addr, "SPOE_SCALE_CONNS="+strconv.Itoa(n), "SPOE_SCALE_TLS_DIR="+dir)
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
	require.Eventually(t, func() bool { return a.Connections() == n }, 2*time.Minute, 10*time.Millisecond)
	time.Sleep(time.Second) // let every reader settle into its idle read
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rssAfter := rss(t)
	perHeap := float64(after.HeapInuse-before.HeapInuse) / float64(n)
	perStack := float64(after.StackInuse-before.StackInuse) / float64(n)
	perRSS := float64(rssAfter-rssBefore) / float64(n)
	t.Logf("%d idle mutual TLS connections: %.1f goroutines each; per connection: heap %.0f B, stacks %.0f B, RSS %.0f B (total RSS growth %.1f MiB)",
		n, float64(runtime.NumGoroutine()-g0)/float64(n), perHeap, perStack, perRSS, float64(rssAfter-rssBefore)/(1<<20))

	_ = stdin.Close() // the child closes everything and exits
	require.NoError(t, child.Wait())
	require.Eventually(t, func() bool { return a.Connections() == 0 }, time.Minute, 10*time.Millisecond)
}

func scaleChildTLS(t *testing.T, addr, dir string) {
	n, _ := strconv.Atoi(os.Getenv("SPOE_SCALE_CONNS"))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	pem, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: testpki.ServerName}
	hello := spoptest.HelloFrame("pipelining", 16380)
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 256)
	for i := range n {
		nc, err := tls.Dial("tcp", addr, cfg)
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
