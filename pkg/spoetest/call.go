package spoetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spoe-forge/spoe-forge/internal/hctx"
	"github.com/spoe-forge/spoe-forge/pkg/agent"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"github.com/spoe-forge/spoe-forge/pkg/spoe"
)

// Result is what a handler did with one message (Call): the actions the
// agent would put in the ACK, and how the handler ended.
//
// It follows the agent's rules: after a panic or a missed deadline the
// handler's actions are dropped (Actions is empty), after a returned error
// they are kept, and an invalid action is left out. Actions too large for
// one ACK frame are dropped too. The error variable itself is not among
// the Actions (Call does not know its name): Code says what it would be.
type Result struct {
	// Actions are the variables the agent would set and unset, as decoded
	// from the encoded ACK payload.
	Actions
	// Err is the error the handler returned.
	Err error
	// Panic is the value the handler panicked with; nil if it did not.
	Panic any
	// Late is true when the handler returned at or after its deadline.
	Late bool
	// ActionErr is the first action the handler could not add (an empty or
	// over-long name, an unknown scope), as Actions.Err reports it.
	ActionErr error
	// TooLarge is true when the actions would not fit in one ACK frame of
	// HAProxy's default max-frame-size (16380): the agent would send none.
	TooLarge bool
}

// Code returns what the agent would set its error variable to
// (agent.WithErrorVar) for this result: 0 when the handler succeeded, else
// agent.ErrCodePanic, agent.ErrCodeTimeout (late, or returned its context's
// error), agent.ErrCodeTooLarge, agent.ErrCodeHandler or agent.ErrCodeAction,
// in that order of precedence, as the agent decides.
func (r *Result) Code() int {
	switch {
	case r.Panic != nil:
		return agent.ErrCodePanic
	case r.timedOut():
		return agent.ErrCodeTimeout
	case r.TooLarge:
		return agent.ErrCodeTooLarge
	case r.Err != nil:
		return agent.ErrCodeHandler
	case r.ActionErr != nil:
		return agent.ErrCodeAction
	}
	return 0
}

// timedOut reports whether the agent counts the call as a missed deadline.
func (r *Result) timedOut() bool {
	return r.Late || errors.Is(r.Err, context.DeadlineExceeded) || errors.Is(r.Err, context.Canceled)
}

// ackLimit is the largest ACK LENGTH an agent sends with HAProxy's default
// max-frame-size (one less: HAProxy 3.2.0 never processes a frame of
// exactly max-frame-size).
const ackLimit = codec.DefaultMaxFrameSize - 1

// poison is written over a message's frame once its handler has returned,
// as the agent reuses the frame for the next NOTIFY.
const poison = 0xA5

// Call runs the handler h on m, in process, as the agent would: m is
// encoded as a NOTIFY message and decoded back, h runs with the agent's own
// context type, whose deadline is ctx's, or agent.DefaultTimeout from now if
// ctx has none, and whose values come from ctx; the actions h adds are
// encoded and decoded as the ACK would carry them. A panic in h is
// recovered into the Result.
//
// Once h has returned, its context is cancelled (Err reports
// context.Canceled, or DeadlineExceeded if h was late), and the frame m was
// decoded from is overwritten, as the agent's pooled frames are: a handler
// that kept a []byte of its message past its return sees garbage, in tests
// as in production.
//
// Call fails only when m cannot be encoded (more than 255 arguments). A
// handler method value (h.HandleMessage) is an agent.HandlerFunc too.
func Call(ctx context.Context, h agent.HandlerFunc, m Message) (*Result, error) {
	payload, err := appendNotify(nil, []Message{m})
	if err != nil {
		return nil, err
	}
	var n codec.Notify
	if err := n.Decode(payload); err != nil || len(n.Messages) != 1 {
		return nil, fmt.Errorf("spoetest: message %q does not decode back: %w", m.Name, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(agent.DefaultTimeout)
	}
	hc := hctx.New(ctx, deadline)
	msg := spoe.NewMessage(m.Name, &n.Messages[0])
	acts := spoe.NewActions()
	res := &Result{}
	func() {
		defer func() { res.Panic = recover() }()
		res.Err = h(hc, msg, acts)
	}()
	late := hc.Finish()
	if res.Panic == nil {
		res.Late = late
	}
	for i := range payload {
		payload[i] = poison
	}
	res.ActionErr = acts.Err()
	if res.Panic != nil || res.timedOut() {
		return res, nil // the agent drops the actions
	}
	b := acts.Bytes()
	if codec.MinFrameLen+len(b) > ackLimit {
		res.TooLarge = true
		return res, nil
	}
	if res.Actions, err = decodeActions(append([]byte(nil), b...)); err != nil {
		return nil, fmt.Errorf("spoetest: the actions of %q do not decode: %w", m.Name, err)
	}
	return res, nil
}

// Run is Call for a test: it runs h on m with a background context (so the
// deadline is agent.DefaultTimeout) and fails the test if m cannot be
// encoded. Call it from the test's goroutine.
func Run(t testing.TB, h agent.HandlerFunc, m Message) *Result {
	t.Helper()
	res, err := Call(context.Background(), h, m)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return res
}
