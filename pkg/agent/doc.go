// Package agent is spoe-forge's public API: it turns handlers into an HAProxy
// SPOE agent.
//
// Register one handler per SPOE message name, then serve:
//
//	a := agent.New(agent.WithLogger(log))
//	a.Message("check-request", func(ctx context.Context, m *agent.Message, act *agent.Actions) error {
//		ip, _ := m.IP("ip")
//		act.SetBool(agent.ScopeTransaction, "blocked", blocklist.Contains(ip))
//		return nil
//	})
//	err := a.Run("127.0.0.1:12345") // returns after SIGTERM/SIGINT and a graceful drain
//
// The agent speaks SPOP 2.0 as HAProxy 2.6 to 3.4 do: it answers HELLOs
// (health checks from "option spop-check" included), processes the NOTIFYs of
// a connection concurrently and acknowledges each with the variables its
// handlers set, in whatever order they finish. It reassembles fragmented
// NOTIFYs (2.6/3.0) and optionally replies on another connection of the same
// engine when one dies ("async", 2.6/3.0).
//
// # Lifetimes
//
// What a handler receives, and how long each piece stays valid:
//
//   - The context.Context is the handler call's own and is never reused. It
//     honours the whole context contract during the call and after it:
//     when the handler returns it ends, Err reports context.Canceled (or
//     context.DeadlineExceeded if the deadline came first) and Done is
//     closed, while Value (from WithBaseContext) and Deadline keep
//     answering as they did. Derive from it (WithTimeout, WithCancel,
//     errgroup, context.AfterFunc, WithoutCancel) and hand it to database
//     and HTTP clients as any Go code does; a goroutine or library that
//     keeps it past the handler sees an ended context, never a later
//     NOTIFY's. It ends at the NOTIFY's deadline (WithTimeout), when the
//     connection dies, when the agent stops, and when the handler returns.
//     It costs 1/128 of an allocation; asking for Done costs a channel.
//   - The *Message, every []byte obtained from it (Bytes, Arg, Args) and the
//     *Actions are valid only until the handler returns: they alias the
//     frame and the ACK being built, which are reused for the next NOTIFY.
//     Copy what must outlive the handler; Message.String already copies.
//     pkg/spoetest overwrites them once a handler returns, so a test shows
//     a handler that keeps them.
//
// # Deadlines
//
// A NOTIFY that its handlers have not answered by its deadline
// (WithTimeout, 200 ms by default) is answered then, with no actions but the
// error variable (ErrCodeTimeout, 1003, WithErrorVar); whatever its
// handlers do afterwards is dropped. The agent never sends an ACK after the deadline: HAProxy
// 2.6/3.0 can take a late ACK for the next event of the same stream. Keep
// the deadline below HAProxy's "timeout processing".
//
// # Variables
//
// HAProxy names a variable "<scope>.<var-prefix>.<name>": the handler gives
// the scope and the bare name, the spoe-agent section's "option var-prefix"
// gives the prefix. HAProxy ignores variables its configuration does not
// reference (or list with register-var-names) and names longer than 63 bytes
// in all.
//
// # Transports
//
// ListenAndServe and Run take "host:port" or "unix:/path"; Serve takes any
// net.Listener. Whoever can connect is served, so an agent that other
// machines can reach should require client certificates: WithTLS with a
// configuration from LoadCertFiles, whose files are reloaded without a
// restart. WithAllowedNetworks filters TCP sources before anything is read,
// WithSocketMode sets who may use a unix socket, and WithMaxConnections,
// WithHelloTimeout (which covers the TLS handshake) and the size limits
// bound what a peer can hold.
//
// # Goroutines
//
// Serve starts, per connection, a reader, a decoder, a dispatcher and a
// writer goroutine (after the TLS handshake, which runs in the
// connection's first goroutine); handlers run on a fixed-capacity worker
// pool shared by every connection (WithWorkers), which takes NOTIFYs from
// all connections in arrival order. Shutdown and Close stop them all,
// except handlers that ignore their context: those finish in the
// background, their results dropped.
package agent
