package codec

// Arg is one argument of a message: a possibly empty name and a typed value,
// both aliasing the frame.
type Arg struct {
	Name  []byte
	Value Value
}

// Message is one message of a NOTIFY: its name and its arguments in the
// order HAProxy sent them. Everything aliases the frame.
type Message struct {
	Name []byte
	Args []Arg
}

// Arg returns the value of the first argument called name. Names need not be
// unique, and unnamed arguments have the empty name. It allocates nothing.
func (m *Message) Arg(name string) (Value, bool) {
	for i := range m.Args {
		if string(m.Args[i].Name) == name {
			return m.Args[i].Value, true
		}
	}
	return Value{}, false
}

// Notify is a decoded NOTIFY payload: its list of messages. The zero value is
// ready to use, and a Notify is meant to be reused: Decode keeps the slices
// it grew, so once warm it allocates nothing.
//
// Everything in Messages aliases the payload given to Decode and is valid
// only while that buffer is and until the next Decode.
type Notify struct {
	Messages []Message
	args     []Arg
	spans    []int // end index in args of each message's arguments
}

// maxArgs is the most arguments a message can carry: nb-args is one byte.
const maxArgs = 255

// Decode decodes a NOTIFY payload (the list of messages; possibly empty).
// On error Messages is left empty.
func (n *Notify) Decode(payload []byte) error {
	n.clear()
	b := payload
	for len(b) > 0 {
		name, l, err := ParseBytes(b)
		if err != nil {
			return n.fail(err)
		}
		b = b[l:]
		if len(b) == 0 {
			return n.fail(ErrTruncated)
		}
		nargs := int(b[0])
		b = b[1:]
		// Each argument takes at least two bytes (an empty name and a NULL):
		// refuse impossible counts before growing anything.
		if 2*nargs > len(b) {
			return n.fail(ErrTruncated)
		}
		for range nargs {
			aname, l, err := ParseBytes(b)
			if err != nil {
				return n.fail(err)
			}
			b = b[l:]
			// Grow by one and decode in place (see parseValueInto).
			k := len(n.args)
			if k < cap(n.args) {
				n.args = n.args[:k+1]
			} else {
				n.args = append(n.args, Arg{})
			}
			a := &n.args[k]
			a.Name = aname
			l, err = parseValueInto(&a.Value, b)
			if err != nil {
				return n.fail(err)
			}
			b = b[l:]
		}
		n.Messages = append(n.Messages, Message{Name: name})
		n.spans = append(n.spans, len(n.args))
	}
	// The args slice has stopped growing: point each message into it.
	start := 0
	for i, end := range n.spans {
		n.Messages[i].Args = n.args[start:end:end]
		start = end
	}
	return nil
}

func (n *Notify) fail(err error) error {
	n.clear()
	return err
}

// clear empties n, dropping the references its used slots hold. Slots past
// the length hold none (every shrink goes through here), so a pooled Notify
// clears what its last payload used, not its whole capacity.
func (n *Notify) clear() {
	clear(n.Messages)
	clear(n.args)
	n.Messages, n.args, n.spans = n.Messages[:0], n.args[:0], n.spans[:0]
}

// Message returns the first message called name.
func (n *Notify) Message(name string) (*Message, bool) {
	for i := range n.Messages {
		if string(n.Messages[i].Name) == name {
			return &n.Messages[i], true
		}
	}
	return nil, false
}

// Reset drops every reference to the last decoded payload, keeping the
// capacity, so that a pooled Notify does not pin a frame buffer.
func (n *Notify) Reset() { n.clear() }

// AppendMessage appends one message of a NOTIFY payload (to play HAProxy,
// in tests and cmd/bench). It fails with ErrTooManyArgs past 255 arguments.
func AppendMessage(dst []byte, name string, args ...Arg) ([]byte, error) {
	if len(args) > maxArgs {
		return dst, ErrTooManyArgs
	}
	dst = append(AppendString(dst, name), byte(len(args)))
	for _, a := range args {
		dst = AppendValue(AppendBytes(dst, a.Name), a.Value)
	}
	return dst, nil
}
