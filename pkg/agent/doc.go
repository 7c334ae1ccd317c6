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
// A handler's Message, every []byte obtained from it, its Actions and its
// context are valid only until the handler returns: they are pooled and
// reused for the next NOTIFY, which is how a NOTIFY costs no allocation.
// Copy what must outlive the handler (Message.String already copies).
//
// # Variables
//
// HAProxy names a variable "<scope>.<var-prefix>.<name>": the handler gives
// the scope and the bare name, the spoe-agent section's "option var-prefix"
// gives the prefix. HAProxy ignores variables its configuration does not
// reference (or list with register-var-names) and names longer than 63 bytes
// in all.
//
// # Goroutines
//
// Serve starts, per connection, a reader, a decoder, a dispatcher and a
// writer goroutine; handlers run on a fixed-capacity worker pool shared by
// every connection (WithWorkers). Shutdown and Close stop them all.
package agent
