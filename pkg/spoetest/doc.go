// Package spoetest tests SPOE handlers and agents, as net/http/httptest
// tests HTTP handlers and servers. It has three layers:
//
//   - Build a message in one line, with typed arguments as HAProxy sends
//     them: [NewMessage]("check-request", [IP]("ip", "192.0.2.1"),
//     [Str]("path", "/x"), [Null]("ua")).
//   - Run one handler on it in process with [Call] (or [Run], which fails
//     the test on a harness error). The message is encoded to SPOP and
//     decoded back, so the handler sees exactly what it would see from
//     HAProxy; the actions it adds are encoded and decoded as the agent's
//     ACK would carry them. The [Result] says which variables the handler
//     set and unset, and how it ended ([Result.Code] is what the agent would
//     put in its error variable).
//   - Run a whole agent in process with [NewServer], on a 127.0.0.1 port,
//     and play HAProxy against it with a [Client] ([Dial] or
//     [Server.Client]): the HELLO handshake as HAProxy 2.6/3.0 or 3.1+ make
//     it, NOTIFYs one at a time or pipelined, and decoded ACKs. [Healthcheck]
//     does what HAProxy's "option spop-check" does.
//
// ACKs ([Ack]) and handler results ([Result]) share the same lookups,
// through [Actions]: String, Int, Bool, IP, Bytes and Value read a
// variable's final value, Unset and Has tell whether it was removed or
// touched at all, and Map returns every variable at once, which suits
// table-driven tests:
//
//	res := spoetest.Run(t, h.HandleMessage, spoetest.NewMessage("check-request", spoetest.IP("ip", "192.0.2.1")))
//	require.Equal(t, map[string]any{"txn.blocked": true}, res.Map())
//
// Variables are named by scope and bare name, as handlers set them: HAProxy
// adds the var-prefix of the spoe-agent section, which neither the agent nor
// this package knows.
//
// The Client API takes no testing.T: every method returns an error, and
// every wait is bounded ([WithTimeout], 5 s by default). [MustDial] wraps a
// Client for use on a test's goroutine, failing the test on any error.
package spoetest
