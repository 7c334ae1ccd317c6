package agent_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/spoptest"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/stretchr/testify/require"
)

func nop(context.Context, *agent.Message, *agent.Actions) error { return nil }

// TestRegistrationMisuse: every registration that cannot be what the caller
// meant panics at once, with a message that names the mistake, the way
// http.ServeMux does, instead of being ignored or replacing a handler
// silently.
func TestRegistrationMisuse(t *testing.T) {
	var nilFunc agent.HandlerFunc
	for _, tc := range []struct {
		name  string
		setup func(a *agent.Agent) // registrations that succeed
		call  func(a *agent.Agent) // the misuse
		want  string               // the panic message
	}{
		{"message twice", func(a *agent.Agent) { a.Message("m", nop) },
			func(a *agent.Agent) { a.Message("m", nop) },
			`spoe-forge: multiple registrations for message "m"`},
		{"Handle after Message", func(a *agent.Agent) { a.Message("m", nop) },
			func(a *agent.Agent) { a.Handle("m", agent.HandlerFunc(nop)) },
			`spoe-forge: multiple registrations for message "m"`},
		{"nil HandlerFunc", nil,
			func(a *agent.Agent) { a.Message("m", nil) },
			`spoe-forge: nil handler for message "m"`},
		{"nil Handler", nil,
			func(a *agent.Agent) { a.Handle("m", nil) },
			`spoe-forge: nil handler for message "m"`},
		{"nil HandlerFunc in a Handler", nil,
			func(a *agent.Agent) { a.Handle("m", nilFunc) },
			`spoe-forge: nil handler for message "m"`},
		{"empty name", nil,
			func(a *agent.Agent) { a.Message("", nop) },
			`spoe-forge: Message with an empty message name (HAProxy never sends one)`},
		{"nil fallback", nil,
			func(a *agent.Agent) { a.Fallback(nil) },
			`spoe-forge: nil fallback handler`},
		{"fallback twice", func(a *agent.Agent) { a.Fallback(nop) },
			func(a *agent.Agent) { a.Fallback(nop) },
			`spoe-forge: multiple registrations of the fallback handler`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.New()
			if tc.setup != nil {
				tc.setup(a)
			}
			require.PanicsWithValue(t, tc.want, func() { tc.call(a) })
		})
	}
}

// TestRegistrationAfterServe: Message, Handle, Fallback and Use once Serve
// has started would never take effect (handlers are composed when serving
// starts), so each panics and says so. The agent keeps serving what was
// registered before.
func TestRegistrationAfterServe(t *testing.T) {
	const after = " after the agent started serving or was stopped: register handlers and middleware before Serve, ListenAndServe or Run"
	for _, tc := range []struct {
		name string
		call func(a *agent.Agent)
		want string
	}{
		{"Message", func(a *agent.Agent) { a.Message("late", nop) }, `spoe-forge: Message("late")` + after},
		{"Handle", func(a *agent.Agent) { a.Handle("late", agent.HandlerFunc(nop)) }, `spoe-forge: Handle("late")` + after},
		{"Fallback", func(a *agent.Agent) { a.Fallback(nop) }, `spoe-forge: Fallback` + after},
		{"Use", func(a *agent.Agent) { a.Use() }, `spoe-forge: Use` + after},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.New()
			a.Message("m", echo)
			addr := start(t, a)
			c := spoptest.Dial(t, addr)
			c.Hello("pipelining", 16380)
			require.PanicsWithValue(t, tc.want, func() { tc.call(a) })

			// What was registered before still serves, and the late one
			// does not.
			c.Notify(1, 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("id", codec.String("x"))}})
			ack := c.ReadAck()
			v, ok := ack.Var("id")
			require.True(t, ok)
			s, _ := v.Value.String()
			require.Equal(t, "x", s)
		})
	}

	t.Run("after Close", func(t *testing.T) {
		a := agent.New()
		require.NoError(t, a.Close())
		require.PanicsWithValue(t, `spoe-forge: Message("m")`+after, func() { a.Message("m", nop) })
	})
}

// TestZeroAgent: a zero Agent{} works as agent.New() does: handlers
// register, it serves with the defaults, and it shuts down.
func TestZeroAgent(t *testing.T) {
	t.Run("serves", func(t *testing.T) {
		a := &agent.Agent{}
		a.Use(func(next agent.Handler) agent.Handler { return next })
		a.Message("m", echo)
		addr := start(t, a)
		c := spoptest.Dial(t, addr)
		h := c.Hello("pipelining", 16380)
		require.EqualValues(t, 16380, h.MaxFrameSize)
		c.Notify(1, 1, spoptest.Msg{Name: "m", Args: []codec.Arg{spoptest.A("id", codec.String("zero"))}})
		ack := c.ReadAck()
		v, ok := ack.Var("id")
		require.True(t, ok)
		s, _ := v.Value.String()
		require.Equal(t, "zero", s)
		require.Panics(t, func() { a.Message("other", nop) }, "a zero Agent refuses late registrations too")
	})
	t.Run("Close first", func(t *testing.T) {
		a := &agent.Agent{}
		require.NoError(t, a.Close())
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		require.ErrorIs(t, a.Serve(l), agent.ErrAgentClosed)
	})
	t.Run("Shutdown first", func(t *testing.T) {
		a := &agent.Agent{}
		require.NoError(t, a.Shutdown(context.Background()))
		require.Zero(t, a.Connections())
		running, waiting := a.Workers()
		require.Zero(t, running+waiting)
	})
}

// TestBadOptions: an option value that cannot work makes Serve,
// ListenAndServe and Run return an error that matches ErrBadOption and
// names the option, instead of the value being replaced by a default.
// Zero stays "the default" everywhere, and WithLameDuck's negative
// NoLameDuck stays valid.
func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []agent.Option
		want []string // substrings of the error, one per bad option
	}{
		{"negative timeout", []agent.Option{agent.WithTimeout(-1)}, []string{"WithTimeout(-1ns): negative duration"}},
		{"negative hello timeout", []agent.Option{agent.WithHelloTimeout(-time.Second)}, []string{"WithHelloTimeout(-1s)"}},
		{"negative write timeout", []agent.Option{agent.WithWriteTimeout(-time.Second)}, []string{"WithWriteTimeout(-1s)"}},
		{"negative idle timeout", []agent.Option{agent.WithIdleTimeout(-time.Minute)}, []string{"WithIdleTimeout(-1m0s)"}},
		{"negative shutdown timeout", []agent.Option{agent.WithShutdownTimeout(-time.Second)}, []string{"WithShutdownTimeout(-1s)"}},
		{"negative workers", []agent.Option{agent.WithWorkers(-3)}, []string{"WithWorkers(-3): negative"}},
		{"negative in-flight", []agent.Option{agent.WithMaxInFlight(-1)}, []string{"WithMaxInFlight(-1): negative"}},
		{"negative message size", []agent.Option{agent.WithMaxMessageSize(-1)}, []string{"WithMaxMessageSize(-1): negative"}},
		{"negative connections", []agent.Option{agent.WithMaxConnections(-1)}, []string{"WithMaxConnections(-1): negative"}},
		{"frame size below 256", []agent.Option{agent.WithMaxFrameSize(255)}, []string{"WithMaxFrameSize(255): max frame size 255 is below 256"}},
		{"frame size 1", []agent.Option{agent.WithMaxFrameSize(1)}, []string{"WithMaxFrameSize(1)"}},
		{"error variable without a name", []agent.Option{agent.WithErrorVar(agent.ScopeTransaction, "")}, []string{`WithErrorVar(txn, ""): `}},
		{"error variable name too long", []agent.Option{agent.WithErrorVar(agent.ScopeTransaction, strings.Repeat("n", 64))}, []string{`WithErrorVar(txn, "nnnn`}},
		{"error variable in no scope", []agent.Option{agent.WithErrorVar(agent.Scope(9), "agent_error")}, []string{`WithErrorVar(`}},
		{"invalid network", []agent.Option{agent.WithAllowedNetworks(netip.Prefix{})}, []string{"WithAllowedNetworks: an invalid prefix"}},
		{"TLS without a certificate", []agent.Option{agent.WithTLS(&tls.Config{})}, []string{"WithTLS: the TLS configuration has no certificate"}},
		{"every bad option at once", []agent.Option{agent.WithTimeout(-1), agent.WithWorkers(-3), agent.WithMaxInFlight(-1)},
			[]string{"WithTimeout(-1ns)", "WithWorkers(-3)", "WithMaxInFlight(-1)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(t *testing.T, err error) {
				t.Helper()
				require.ErrorIs(t, err, agent.ErrBadOption)
				for _, w := range tc.want {
					require.ErrorContains(t, err, w)
				}
				require.Equal(t, len(tc.want), strings.Count(err.Error(), agent.ErrBadOption.Error()), "one line per bad option: %v", err)
			}
			t.Run("Serve", func(t *testing.T) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				a := agent.New(tc.opts...)
				a.Message("m", nop)
				check(t, a.Serve(l))
				// Serve closed the listener: nobody answers there.
				_, err = net.DialTimeout("tcp", l.Addr().String(), time.Second)
				require.Error(t, err)
				require.NoError(t, a.Close())
			})
			t.Run("ListenAndServe", func(t *testing.T) {
				// A unix socket: ListenAndServe must refuse before it
				// creates the file.
				path := filepath.Join(t.TempDir(), "a.sock")
				a := agent.New(tc.opts...)
				check(t, a.ListenAndServe("unix:"+path))
				require.NoFileExists(t, path, "the socket was created for an agent that cannot start")
			})
			t.Run("Run", func(t *testing.T) {
				a := agent.New(tc.opts...)
				done := make(chan error, 1)
				go func() { done <- a.Run("127.0.0.1:0") }()
				select {
				case err := <-done:
					check(t, err)
				case <-time.After(5 * time.Second):
					require.NoError(t, a.Close())
					t.Fatal("Run served with an option that cannot work")
				}
			})
		})
	}
}

// TestGoodOptions: zero means the default for every option, and
// WithLameDuck(NoLameDuck) (negative on purpose) is valid: such agents
// serve.
func TestGoodOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []agent.Option
	}{
		{"zeros", []agent.Option{agent.WithTimeout(0), agent.WithHelloTimeout(0), agent.WithWriteTimeout(0),
			agent.WithIdleTimeout(0), agent.WithShutdownTimeout(0), agent.WithWorkers(0), agent.WithMaxInFlight(0),
			agent.WithMaxMessageSize(0), agent.WithMaxConnections(0), agent.WithMaxFrameSize(0), agent.WithLameDuck(0)}},
		{"no lame duck", []agent.Option{agent.WithLameDuck(agent.NoLameDuck)}},
		{"any negative lame duck", []agent.Option{agent.WithLameDuck(-time.Hour)}},
		{"smallest frame size", []agent.Option{agent.WithMaxFrameSize(codec.MinMaxFrameSize)}},
		{"error variable of 63 bytes", []agent.Option{agent.WithErrorVar(agent.ScopeRequest, strings.Repeat("n", codec.MaxVarNameLen))}},
		{"no network", []agent.Option{agent.WithAllowedNetworks()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := agent.New(tc.opts...)
			a.Message("m", nop)
			addr := start(t, a)
			c := spoptest.Dial(t, addr)
			if tc.name == "no network" {
				c.ExpectClosed() // refused at accept, as documented
				return
			}
			c.Hello("pipelining", 16380)
		})
	}
}
