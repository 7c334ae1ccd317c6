package spoetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/agent"
)

// ShutdownTimeout bounds Server.Close's graceful shutdown of the agent.
const ShutdownTimeout = 10 * time.Second

// Server is an agent served on a 127.0.0.1 port for a test, as
// httptest.Server is for HTTP handlers.
type Server struct {
	// Addr is the address the agent listens on, "127.0.0.1:port".
	Addr string
	// Agent is the agent being served. The Server owns it: Close shuts it
	// down for good.
	Agent *agent.Agent

	served   chan struct{} // closed when Serve has returned
	serveErr error         // Serve's result; read once served is closed

	closeOnce sync.Once
	closeErr  error
}

// NewServer serves a on a new listener on 127.0.0.1 with an ephemeral port,
// in a goroutine, until Close. Register a's handlers before calling it.
// Like httptest.NewServer, it panics if it cannot listen.
func NewServer(a *agent.Agent) *Server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("spoetest: failed to listen on a port: %v", err))
	}
	s := &Server{Addr: l.Addr().String(), Agent: a, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		s.serveErr = a.Serve(l)
	}()
	return s
}

// Client dials the agent (see Dial). If the agent could not start (an
// option that cannot work, for instance), the error says why.
func (s *Server) Client(opts ...Option) (*Client, error) {
	c, err := Dial(s.Addr, opts...)
	if err == nil || !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)) {
		return c, err
	}
	// A refused or reset connection may be an agent that failed to start:
	// Serve closes the listener, then returns its error.
	select {
	case <-s.served:
		if s.serveErr != nil && !errors.Is(s.serveErr, agent.ErrAgentClosed) {
			return nil, fmt.Errorf("spoetest: the agent is not serving: %w", s.serveErr)
		}
	case <-time.After(time.Second):
	}
	return nil, err
}

// Close shuts the agent down gracefully (agent.Shutdown, bounded by
// ShutdownTimeout) and waits for Serve to return. Connections still open
// get an AGENT-DISCONNECT with status 0, and the agent waits briefly for
// their close: close Clients first to skip that wait. It returns Shutdown's
// error, or the error Serve failed with. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		err := s.Agent.Shutdown(ctx)
		<-s.served
		if s.serveErr != nil && !errors.Is(s.serveErr, agent.ErrAgentClosed) {
			err = errors.Join(err, s.serveErr)
		}
		s.closeErr = err
	})
	return s.closeErr
}
