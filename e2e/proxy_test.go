package e2e

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// proxy is a TCP proxy between HAProxy and the agent whose connections the
// test can cut one by one. It remembers which connection carried a given
// byte string from HAProxy to the agent (a marker in a NOTIFY argument).
type proxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	pairs []*proxyPair
	wg    sync.WaitGroup
}

// proxyPair is one proxied connection.
type proxyPair struct {
	hap, agent *net.TCPConn

	mu   sync.Mutex
	seen []byte // bytes from HAProxy, kept to look for markers

	// agentEOF is closed when the agent has closed its write side (or the
	// connection failed): the agent will not write on it any more.
	agentEOF chan struct{}
}

// startProxy listens on 127.0.0.1 and forwards every connection to target.
// Everything is closed when the test ends.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{l: l, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.stop)
	return p
}

// Addr returns the proxy's address.
func (p *proxy) Addr() string { return p.l.Addr().String() }

// Count returns the number of connections proxied so far.
func (p *proxy) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

// Marked returns the connection whose HAProxy-to-agent bytes contain
// marker, or nil.
func (p *proxy) Marked(marker string) *proxyPair {
	p.mu.Lock()
	pairs := append([]*proxyPair(nil), p.pairs...)
	p.mu.Unlock()
	for _, pp := range pairs {
		pp.mu.Lock()
		ok := bytes.Contains(pp.seen, []byte(marker))
		pp.mu.Unlock()
		if ok {
			return pp
		}
	}
	return nil
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		a, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pp := &proxyPair{hap: c.(*net.TCPConn), agent: a.(*net.TCPConn), agentEOF: make(chan struct{})}
		p.mu.Lock()
		p.pairs = append(p.pairs, pp)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { // HAProxy -> agent
			defer p.wg.Done()
			_, _ = io.Copy(pp.agent, recorder{pp})
			_ = pp.agent.CloseWrite()
		}()
		go func() { // agent -> HAProxy
			defer p.wg.Done()
			_, _ = io.Copy(pp.hap, pp.agent)
			close(pp.agentEOF)
			_ = pp.hap.CloseWrite()
		}()
	}
}

// recorder reads from HAProxy's side and keeps what it read.
type recorder struct{ pp *proxyPair }

func (r recorder) Read(b []byte) (int, error) {
	n, err := r.pp.hap.Read(b)
	if n > 0 {
		r.pp.mu.Lock()
		r.pp.seen = append(r.pp.seen, b[:n]...)
		if len(r.pp.seen) > 1<<20 {
			r.pp.seen = append([]byte(nil), r.pp.seen[len(r.pp.seen)-4096:]...)
		}
		r.pp.mu.Unlock()
	}
	return n, err
}

// cutAgentSide makes the agent read EOF, as if HAProxy had closed the
// connection, without closing HAProxy's side yet.
func (pp *proxyPair) cutAgentSide() { _ = pp.agent.CloseWrite() }

// close closes both sides.
func (pp *proxyPair) close() {
	_ = pp.hap.Close()
	_ = pp.agent.Close()
}

func (p *proxy) stop() {
	_ = p.l.Close()
	p.mu.Lock()
	for _, pp := range p.pairs {
		pp.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
