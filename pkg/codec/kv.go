package codec

import (
	"strings"
)

// KV is one item of a KV-LIST, the payload of HELLO and DISCONNECT frames:
// an untyped name and a typed value. Name and Value alias the frame.
type KV struct {
	Name  []byte
	Value Value
}

// NextKV decodes the item at the start of b and returns it with the number of
// bytes it used.
func NextKV(b []byte) (KV, int, error) {
	name, n, err := ParseBytes(b)
	if err != nil {
		return KV{}, 0, err
	}
	v, m, err := ParseValue(b[n:])
	if err != nil {
		return KV{}, 0, err
	}
	return KV{Name: name, Value: v}, n + m, nil
}

// ParseKVList decodes a whole KV-LIST, appending its items to dst.
func ParseKVList(dst []KV, b []byte) ([]KV, error) {
	for len(b) > 0 {
		kv, n, err := NextKV(b)
		if err != nil {
			return dst, err
		}
		dst = append(dst, kv)
		b = b[n:]
	}
	return dst, nil
}

// AppendKV appends one KV-LIST item.
func AppendKV(dst []byte, name string, v Value) []byte {
	return AppendValue(AppendString(dst, name), v)
}

// Capabilities is a set of SPOP capabilities.
type Capabilities uint8

// The capabilities spoe-forge knows. Other words are ignored when parsed.
const (
	CapPipelining Capabilities = 1 << iota
	CapAsync
	CapFragmentation
)

var capNames = [...]struct {
	c    Capabilities
	name string
}{{CapPipelining, "pipelining"}, {CapAsync, "async"}, {CapFragmentation, "fragmentation"}}

// ParseCapabilities parses a comma-separated capabilities value. Spaces
// around words are ignored, words are compared exactly, and unknown words
// are skipped.
func ParseCapabilities(s []byte) Capabilities {
	var c Capabilities
	for len(s) > 0 {
		var w []byte
		if i := indexByte(s, ','); i >= 0 {
			w, s = s[:i], s[i+1:]
		} else {
			w, s = s, nil
		}
		w = trimSpace(w)
		for _, cn := range capNames {
			if string(w) == cn.name {
				c |= cn.c
			}
		}
	}
	return c
}

// String returns the comma-separated list, in the order pipelining, async,
// fragmentation ("" for none).
func (c Capabilities) String() string {
	var b strings.Builder
	for _, cn := range capNames {
		if c&cn.c != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(cn.name)
		}
	}
	return b.String()
}

// appendCapabilities appends c's list as String does, without allocating.
func appendCapabilities(dst []byte, c Capabilities) []byte {
	first := true
	for _, cn := range capNames {
		if c&cn.c != 0 {
			if !first {
				dst = append(dst, ',')
			}
			dst = append(dst, cn.name...)
			first = false
		}
	}
	return dst
}

// Has reports whether c contains every capability of d.
func (c Capabilities) Has(d Capabilities) bool { return c&d == d }

// SupportsVersion2 reports whether a supported-versions value (a
// comma-separated list such as "2.0" or " 2.0 , 3.0") names a version whose
// major number is 2, the only one HAProxy and spoe-forge speak.
func SupportsVersion2(versions []byte) bool {
	for len(versions) > 0 {
		var w []byte
		if i := indexByte(versions, ','); i >= 0 {
			w, versions = versions[:i], versions[i+1:]
		} else {
			w, versions = versions, nil
		}
		if major, _, ok := parseVersion(w); ok && major == 2 {
			return true
		}
	}
	return false
}

// parseVersion reads "major.minor" with optional surrounding white space,
// as HAProxy's spoe_str_to_vsn() does: both numbers are decimal digits, the
// major is not 0 and the minor at most 999, so "2.0", " 2.0 " and "2.00" are
// all version 2.0.
func parseVersion(b []byte) (major, minor int, ok bool) {
	b = trimSpace(b)
	dot := indexByte(b, '.')
	if dot < 1 || dot == len(b)-1 {
		return 0, 0, false
	}
	major, ok = decimal(b[:dot], 1<<20)
	if !ok || major == 0 {
		return 0, 0, false
	}
	minor, ok = decimal(b[dot+1:], 999)
	if !ok {
		return 0, 0, false
	}
	return major, minor, true
}

// decimal parses a non-empty run of digits whose value is at most limit.
func decimal(b []byte, limit int) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > limit {
			return 0, false
		}
	}
	return n, true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// trimSpace removes the white space C's isspace() knows (HAProxy trims
// with it) from both ends of b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

// HAProxyHello is the decoded payload of a HAPROXY-HELLO frame. Byte slices
// alias the frame.
type HAProxyHello struct {
	// SupportedVersions is the raw supported-versions value, e.g. "2.0";
	// nil when the item is missing.
	SupportedVersions []byte
	// MaxFrameSize is HAProxy's max-frame-size offer; HasMaxFrameSize says
	// whether the item was present.
	MaxFrameSize    uint32
	HasMaxFrameSize bool
	// Capabilities is the parsed capabilities item; RawCapabilities its raw
	// value (nil when the item is missing).
	Capabilities    Capabilities
	RawCapabilities []byte
	// EngineID identifies interchangeable connections (absent in health
	// checks).
	EngineID []byte
	// Healthcheck is true for the HELLO of "option spop-check".
	Healthcheck bool
}

// Decode decodes a HAPROXY-HELLO payload. Unknown items are skipped and items
// may come in any order. Decode checks types only; Validate checks that the
// offer is acceptable.
func (h *HAProxyHello) Decode(payload []byte) error {
	*h = HAProxyHello{}
	if err := decodeHelloItems(payload, []helloItem{
		{name: "supported-versions", str: &h.SupportedVersions},
		{name: "max-frame-size", u32: &h.MaxFrameSize, has: &h.HasMaxFrameSize},
		{name: "capabilities", str: &h.RawCapabilities},
		{name: "engine-id", str: &h.EngineID},
		{name: "healthcheck", boolean: &h.Healthcheck},
	}); err != nil {
		return err
	}
	h.Capabilities = ParseCapabilities(h.RawCapabilities)
	return nil
}

// Validate checks the offer: a version with major number 2 and a
// max-frame-size of at least MinMaxFrameSize.
func (h *HAProxyHello) Validate() error {
	switch {
	case h.SupportedVersions == nil:
		return ErrNoSupportedVersions
	case !SupportsVersion2(h.SupportedVersions):
		return ErrUnsupportedVersion
	case !h.HasMaxFrameSize:
		return ErrNoFrameSize
	case h.MaxFrameSize < MinMaxFrameSize:
		return ErrBadFrameSize
	}
	return nil
}

// AppendHAProxyHello appends a whole HAPROXY-HELLO frame, as HAProxy builds
// it: supported-versions "2.0" (or h.SupportedVersions), max-frame-size,
// capabilities, then engine-id if set and healthcheck if true.
func AppendHAProxyHello(dst []byte, h *HAProxyHello) []byte {
	dst, start := BeginFrame(dst, Header{Type: FrameHAProxyHello, Flags: FlagFin})
	v := h.SupportedVersions
	if v == nil {
		v = []byte("2.0")
	}
	dst = AppendKV(dst, "supported-versions", StringBytes(v))
	dst = AppendKV(dst, "max-frame-size", Uint32(h.MaxFrameSize))
	caps := h.RawCapabilities
	if caps == nil {
		dst = AppendString(dst, "capabilities")
		dst = append(dst, byte(TypeString))
		l := len(dst)
		dst = append(dst, 0) // patched below; capability lists are < 240 bytes
		dst = appendCapabilities(dst, h.Capabilities)
		dst[l] = byte(len(dst) - l - 1)
	} else {
		dst = AppendKV(dst, "capabilities", StringBytes(caps))
	}
	if h.EngineID != nil {
		dst = AppendKV(dst, "engine-id", StringBytes(h.EngineID))
	}
	if h.Healthcheck {
		dst = AppendKV(dst, "healthcheck", Bool(true))
	}
	patchLength(dst, start)
	return dst
}

// AgentHello is the decoded payload of an AGENT-HELLO frame.
type AgentHello struct {
	// Version is the version item ("2.0"); nil when missing.
	Version []byte
	// MaxFrameSize is the agent's max-frame-size; HasMaxFrameSize says
	// whether the item was present.
	MaxFrameSize    uint32
	HasMaxFrameSize bool
	// Capabilities is the parsed capabilities item; HasCapabilities says
	// whether the item was present.
	Capabilities    Capabilities
	HasCapabilities bool
}

// Decode decodes an AGENT-HELLO payload. Unknown items are skipped.
func (h *AgentHello) Decode(payload []byte) error {
	*h = AgentHello{}
	var caps []byte
	if err := decodeHelloItems(payload, []helloItem{
		{name: "version", str: &h.Version},
		{name: "max-frame-size", u32: &h.MaxFrameSize, has: &h.HasMaxFrameSize},
		{name: "capabilities", str: &caps, has: &h.HasCapabilities},
	}); err != nil {
		return err
	}
	h.Capabilities = ParseCapabilities(caps)
	return nil
}

// helloItem says where decodeHelloItems stores the value of the item name,
// and so which type the item must have: str for a string (or binary), u32
// for an integer of any type, boolean for a boolean. has, if set, is set
// to true when the item is present.
type helloItem struct {
	name    string
	str     *[]byte
	u32     *uint32
	boolean *bool
	has     *bool
}

// decodeHelloItems walks the items of a HELLO payload, in any order, and
// stores each known one where items says, after checking its type
// (ErrBadKVType otherwise); unknown items are skipped, and an item given
// twice keeps its last value. It is the one decoder of both HELLO frames.
func decodeHelloItems(payload []byte, items []helloItem) error {
	for b := payload; len(b) > 0; {
		kv, n, err := NextKV(b)
		if err != nil {
			return err
		}
		b = b[n:]
		for i := range items {
			it := &items[i]
			if string(kv.Name) != it.name {
				continue
			}
			switch {
			case it.str != nil:
				*it.str, err = kvString(kv.Value)
			case it.u32 != nil:
				*it.u32, err = kvUint32(kv.Value)
			case it.boolean != nil:
				v, ok := kv.Value.Bool()
				if !ok {
					err = ErrBadKVType
				}
				*it.boolean = v
			}
			if err != nil {
				return err
			}
			if it.has != nil {
				*it.has = true
			}
			break
		}
	}
	return nil
}

// Validate checks an AGENT-HELLO the way HAProxy's health check does against
// the offer it made: version 2.0 (read as HAProxy reads it, so " 2.0 " and
// "2.00" pass and "2.1" fails), max-frame-size within MinMaxFrameSize..offer,
// and the capabilities item present.
func (h *AgentHello) Validate(offer uint32) error {
	switch {
	case h.Version == nil:
		return ErrNoVersion
	case !isVersion20(h.Version):
		return ErrUnsupportedVersion
	case !h.HasMaxFrameSize:
		return ErrNoFrameSize
	case h.MaxFrameSize < MinMaxFrameSize || h.MaxFrameSize > offer:
		return ErrBadFrameSize
	case !h.HasCapabilities:
		return ErrNoCapabilities
	}
	return nil
}

func isVersion20(v []byte) bool {
	major, minor, ok := parseVersion(v)
	return ok && major == 2 && minor == 0
}

// AppendAgentHello appends a whole AGENT-HELLO frame with exactly the three
// items HAProxy expects: version "2.0", max-frame-size (UINT32) and
// capabilities (always present, possibly empty), ids 0/0 and FIN.
func AppendAgentHello(dst []byte, maxFrameSize uint32, caps Capabilities) []byte {
	dst, start := BeginFrame(dst, Header{Type: FrameAgentHello, Flags: FlagFin})
	dst = AppendKV(dst, "version", String("2.0"))
	dst = AppendKV(dst, "max-frame-size", Uint32(maxFrameSize))
	dst = AppendString(dst, "capabilities")
	dst = append(dst, byte(TypeString))
	l := len(dst)
	dst = append(dst, 0) // capability lists are shorter than 240 bytes
	dst = appendCapabilities(dst, caps)
	dst[l] = byte(len(dst) - l - 1)
	patchLength(dst, start)
	return dst
}

// MaxDisconnectMessageLen is the longest message HAProxy 2.6/3.0 accept in an
// AGENT-DISCONNECT.
const MaxDisconnectMessageLen = 255

// Disconnect is the decoded payload of a HAPROXY-DISCONNECT or
// AGENT-DISCONNECT frame. Message aliases the frame.
type Disconnect struct {
	Status    Status
	HasStatus bool
	// Message is the human-readable reason; nil when missing.
	Message []byte
}

// Decode decodes a DISCONNECT payload. Unknown items are skipped.
func (d *Disconnect) Decode(payload []byte) error {
	*d = Disconnect{}
	for b := payload; len(b) > 0; {
		kv, n, err := NextKV(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch string(kv.Name) {
		case "status-code":
			v, err := kvUint32(kv.Value)
			if err != nil {
				return err
			}
			d.Status, d.HasStatus = Status(v), true
		case "message":
			s, err := kvString(kv.Value)
			if err != nil {
				return err
			}
			d.Message = s
		}
	}
	return nil
}

// AppendDisconnect appends a whole DISCONNECT frame of type t
// (FrameAgentDisconnect, or FrameHAProxyDisconnect to play HAProxy) with a
// status-code (UINT32) and a message. A message longer than
// MaxDisconnectMessageLen bytes is cut to that length.
func AppendDisconnect(dst []byte, t FrameType, status Status, message string) []byte {
	if len(message) > MaxDisconnectMessageLen {
		message = message[:MaxDisconnectMessageLen]
	}
	dst, start := BeginFrame(dst, Header{Type: t, Flags: FlagFin})
	dst = AppendKV(dst, "status-code", Uint32(uint32(status)))
	dst = AppendKV(dst, "message", String(message))
	patchLength(dst, start)
	return dst
}

func patchLength(dst []byte, start int) {
	n := uint32(len(dst) - start - LengthPrefixLen)
	dst[start], dst[start+1], dst[start+2], dst[start+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// kvString returns the bytes of a STRING item; HAProxy also writes some
// items as BINARY-flagged strings, so both are accepted.
func kvString(v Value) ([]byte, error) {
	if v.typ != TypeString && v.typ != TypeBinary {
		return nil, ErrBadKVType
	}
	if v.raw == nil {
		return []byte{}, nil
	}
	return v.raw, nil
}

// kvUint32 returns an integer item of any integer type, as HAProxy accepts
// them; values that do not fit 32 bits saturate at 2^32-1.
func kvUint32(v Value) (uint32, error) {
	if !v.typ.IsInt() {
		return 0, ErrBadKVType
	}
	return uint32(min(v.num, 1<<32-1)), nil
}
