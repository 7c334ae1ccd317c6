package codec

// Scope is the scope of a variable set or unset by an ACK. HAProxy names the
// variable "<scope>.<var-prefix>.<name>".
type Scope uint8

// The five variable scopes.
const (
	ScopeProcess     Scope = 0 // proc: needs "option force-set-var" in HAProxy
	ScopeSession     Scope = 1 // sess
	ScopeTransaction Scope = 2 // txn
	ScopeRequest     Scope = 3 // req
	ScopeResponse    Scope = 4 // res
)

var scopeNames = [...]string{"proc", "sess", "txn", "req", "res"}

// String returns HAProxy's name of the scope ("proc", "sess", "txn", "req",
// "res").
func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return "scope?"
}

// ActionType is the type of an ACK action.
type ActionType uint8

// The two actions an agent can send.
const (
	ActionSetVar   ActionType = 1
	ActionUnsetVar ActionType = 2
)

// String returns "set-var" or "unset-var".
func (t ActionType) String() string {
	switch t {
	case ActionSetVar:
		return "set-var"
	case ActionUnsetVar:
		return "unset-var"
	}
	return "action?"
}

// MaxVarNameLen is the longest variable name HAProxy can hold: it formats
// "<scope>.<prefix>.<name>" into a 64-byte buffer, and longer names are
// silently truncated (and then match no variable). The bare name must fit on
// its own; users should also keep scope and prefix in mind.
const MaxVarNameLen = 63

func checkVar(scope Scope, name string) error {
	switch {
	case scope > ScopeResponse:
		return ErrBadScope
	case name == "":
		return ErrVarNameEmpty
	case len(name) > MaxVarNameLen:
		return ErrVarNameTooLong
	}
	return nil
}

// AppendSetVar appends a set-var action: 01 03 <scope> <name> <value>. It
// appends nothing and fails if the scope is unknown or the name is empty or
// longer than MaxVarNameLen. A NULL value makes HAProxy unset the variable.
func AppendSetVar(dst []byte, scope Scope, name string, v Value) ([]byte, error) {
	if err := checkVar(scope, name); err != nil {
		return dst, err
	}
	dst = append(dst, byte(ActionSetVar), 3, byte(scope))
	return AppendValue(AppendString(dst, name), v), nil
}

// AppendUnsetVar appends an unset-var action: 02 02 <scope> <name>.
func AppendUnsetVar(dst []byte, scope Scope, name string) ([]byte, error) {
	if err := checkVar(scope, name); err != nil {
		return dst, err
	}
	dst = append(dst, byte(ActionUnsetVar), 2, byte(scope))
	return AppendString(dst, name), nil
}

// AppendAck appends a whole ACK frame for the NOTIFY (streamID, frameID)
// whose payload is actions, a list built with AppendSetVar and
// AppendUnsetVar.
func AppendAck(dst []byte, streamID, frameID uint64, actions []byte) []byte {
	return AppendFrame(dst, Header{Type: FrameAck, Flags: FlagFin, StreamID: streamID, FrameID: frameID}, actions)
}

// Action is one decoded ACK action. Name and Value alias the frame; Value is
// NULL for unset-var.
type Action struct {
	Type  ActionType
	Scope Scope
	Name  []byte
	Value Value
}

// Ack is a decoded ACK payload. Like Notify it is reusable and aliases the
// payload it decoded. cmd/bench and tests use it to play HAProxy.
type Ack struct {
	Actions []Action
}

// Decode decodes an ACK payload strictly: each action must be a set-var with
// nb-args 3 or an unset-var with nb-args 2, with a scope of at most 4.
// (HAProxy stops at the first bad action without an error; a test tool
// wants to know.)
func (a *Ack) Decode(payload []byte) error {
	a.Actions = a.Actions[:0]
	for b := payload; len(b) > 0; {
		if len(b) < 3 {
			return a.fail(ErrTruncated)
		}
		t, nargs, scope := ActionType(b[0]), b[1], Scope(b[2])
		if (t != ActionSetVar || nargs != 3) && (t != ActionUnsetVar || nargs != 2) || scope > ScopeResponse {
			return a.fail(ErrBadAction)
		}
		b = b[3:]
		name, l, err := ParseBytes(b)
		if err != nil {
			return a.fail(err)
		}
		b = b[l:]
		act := Action{Type: t, Scope: scope, Name: name}
		if t == ActionSetVar {
			v, l, err := ParseValue(b)
			if err != nil {
				return a.fail(err)
			}
			b = b[l:]
			act.Value = v
		}
		a.Actions = append(a.Actions, act)
	}
	return nil
}

func (a *Ack) fail(err error) error {
	a.Actions = a.Actions[:0]
	return err
}

// Action returns the first action on the variable name.
func (a *Ack) Action(name string) (*Action, bool) {
	for i := range a.Actions {
		if string(a.Actions[i].Name) == name {
			return &a.Actions[i], true
		}
	}
	return nil, false
}
