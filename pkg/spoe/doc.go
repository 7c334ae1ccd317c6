// Package spoe holds what an SPOE handler works with: the Message it reads
// (typed arguments by name), the Actions it fills (variables to set or
// unset in HAProxy), the Handler and Middleware types, and the error codes
// the agent reports. pkg/agent serves handlers; pkg/spoetest tests them.
//
//	func checkRequest(ctx context.Context, m *spoe.Message, act *spoe.Actions) error {
//		ip, _ := m.IP("ip")
//		path, _ := m.String("path")
//		act.SetBool(spoe.ScopeTransaction, "blocked", blocklist.Contains(ip))
//		act.SetInt(spoe.ScopeTransaction, "score", int64(len(path)))
//		return nil
//	}
//
// pkg/agent's Message, Actions, Handler, HandlerFunc, Middleware, Var and
// scope names are aliases of these, so code written against either works
// with both.
//
// # Lifetimes
//
//   - The context.Context a handler receives is the call's own and is never
//     reused. It honours the whole context contract during the call and
//     after it: when the handler returns it ends (Err reports
//     context.Canceled, or context.DeadlineExceeded if the deadline came
//     first; Done is closed), while Value and Deadline keep answering as
//     they did. Derive from it and hand it to clients and goroutines as any
//     Go code does.
//   - The *Message, every []byte obtained from it, and the *Actions are
//     valid only until the handler returns: they alias the frame and the
//     ACK being built, which are reused for the next NOTIFY. Copy what must
//     outlive the handler; Message.String already copies.
//
// # Stability
//
// This package, with pkg/agent, is spoe-forge's API: from v1.0.0 on,
// nothing in it changes incompatibly within a major version (see the
// README, "Stability and versions"). The functions under "engine hooks"
// (Bind, Begin, Encoded, MarkOf, Rollback, Failed, Succeeded) take a token
// only this module can make: they are how pkg/dispatch drives the types,
// and are not for handlers.
package spoe
