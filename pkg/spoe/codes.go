package spoe

// The values the agent sets its error variable to (agent.WithErrorVar,
// middleware.ErrorVar, Actions.SetErrorVar) when the handling of a message
// fails.
//
// They start at 1001 so that they can never be mistaken for a value that
// HAProxy's own "option set-on-error" writes: HAProxy uses 1 to 5 (1 timeout
// processing, 2 resources or I/O, 3 too big, 4 and 5 interrupted or
// fragmentation aborted), 255 (unknown) and 256+N when an AGENT-DISCONNECT
// with status N ends the event (a spoe-forge agent sends the SPOP statuses
// 0 to 13 and 99, and agent.StatusLameDuck, 100: 256 to 356). Point the two at
// different variables all the same ("option set-on-error spoe_error" in the
// SPOE file, agent.WithErrorVar(ScopeTransaction, "agent_error") in the
// agent), so that a rule tells who failed by the variable's name; the
// README's "Error variables" table lists every value of both.
const (
	ErrCodeHandler  = 1001 // the handler returned an error
	ErrCodePanic    = 1002 // the handler panicked
	ErrCodeTimeout  = 1003 // the deadline passed before the handler returned, or it returned its context's error
	ErrCodeTooLarge = 1004 // the actions did not fit in one ACK frame
	ErrCodeAction   = 1005 // an action was invalid (empty or over-long name, bad scope)
)
