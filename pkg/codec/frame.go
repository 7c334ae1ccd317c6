package codec

import (
	"encoding/binary"
	"strconv"
)

// FrameType is the type byte of a frame.
type FrameType uint8

// The SPOP frame types.
const (
	// FrameUnset continues a fragmented NOTIFY (HAProxy 2.6/3.0, only when
	// the agent announced fragmentation).
	FrameUnset             FrameType = 0
	FrameHAProxyHello      FrameType = 1
	FrameHAProxyDisconnect FrameType = 2
	FrameNotify            FrameType = 3
	FrameAgentHello        FrameType = 101
	FrameAgentDisconnect   FrameType = 102
	FrameAck               FrameType = 103
)

// String returns the frame type's name as the SPOP documentation spells it.
func (t FrameType) String() string {
	switch t {
	case FrameUnset:
		return "UNSET"
	case FrameHAProxyHello:
		return "HAPROXY-HELLO"
	case FrameHAProxyDisconnect:
		return "HAPROXY-DISCONNECT"
	case FrameNotify:
		return "NOTIFY"
	case FrameAgentHello:
		return "AGENT-HELLO"
	case FrameAgentDisconnect:
		return "AGENT-DISCONNECT"
	case FrameAck:
		return "ACK"
	}
	return "FRAME(" + strconv.Itoa(int(t)) + ")"
}

// Flags is the 32-bit FLAGS field of a frame.
type Flags uint32

// The defined flags. The other 30 bits are reserved: send 0, ignore on read.
const (
	FlagFin   Flags = 0x00000001 // last (or only) fragment of a payload
	FlagAbort Flags = 0x00000002 // cancel the fragmented frame in progress
)

// Fin reports whether FIN is set.
func (f Flags) Fin() bool { return f&FlagFin != 0 }

// Abort reports whether ABORT is set.
func (f Flags) Abort() bool { return f&FlagAbort != 0 }

// Frame size limits.
const (
	// LengthPrefixLen is the size of the big-endian LENGTH that precedes
	// every frame and does not count itself.
	LengthPrefixLen = 4
	// MinFrameLen is the smallest valid LENGTH: a type byte, four flag bytes
	// and two one-byte ids.
	MinFrameLen = 7
	// MinMaxFrameSize is the smallest max-frame-size either side may use.
	MinMaxFrameSize = 256
	// DefaultMaxFrameSize is HAProxy's default offer: tune.bufsize (16384)
	// minus the length prefix.
	DefaultMaxFrameSize = 16380
	// MaxFrameLen is the largest LENGTH a 32-bit prefix can carry.
	MaxFrameLen = 1<<32 - 1
)

// Header is the fixed part of a frame after the length prefix.
type Header struct {
	Type     FrameType
	Flags    Flags
	StreamID uint64
	FrameID  uint64
}

// Frame is a parsed frame. Payload aliases the buffer the frame was parsed
// from.
type Frame struct {
	Header
	Payload []byte
}

// NextFrame finds the first frame in b, a stream of frames each preceded by
// its length prefix. It returns the frame (without the prefix, aliasing b)
// and the number of bytes of b it spans, prefix included.
//
// When b does not yet hold the whole frame, NextFrame returns a nil frame,
// n = 0 and need, the total number of bytes (prefix included) that b must
// hold; need is 0 while the prefix itself is incomplete. The LENGTH is
// checked before any of that: below MinFrameLen it fails with
// ErrFrameTooSmall, above limit (or, on a 32-bit platform, beyond what an
// int can index) with ErrFrameTooBig, so a caller never sizes a buffer from
// an unchecked length.
func NextFrame(b []byte, limit uint32) (frame []byte, n, need int, err error) {
	if len(b) < LengthPrefixLen {
		return nil, 0, 0, nil
	}
	l, err := ParseLength(b, limit)
	if err != nil {
		return nil, 0, 0, err
	}
	// Computed in 64 bits: on a 32-bit platform LengthPrefixLen+int(l) can
	// overflow int (to a negative "total" that would then slice b out of
	// range). A frame that no int can measure cannot be held either.
	total64 := LengthPrefixLen + uint64(l)
	if total64 > uint64(maxInt) {
		return nil, 0, 0, ErrFrameTooBig
	}
	total := int(total64)
	if len(b) < total {
		return nil, 0, total, nil
	}
	return b[LengthPrefixLen:total:total], total, total, nil
}

// maxInt is the largest int on this platform.
const maxInt = int(^uint(0) >> 1)

// ParseLength decodes a length prefix (the first 4 bytes of b, which must be
// there) and checks it against MinFrameLen and limit.
func ParseLength(b []byte, limit uint32) (uint32, error) {
	l := binary.BigEndian.Uint32(b)
	if l < MinFrameLen {
		return 0, ErrFrameTooSmall
	}
	if l > limit {
		return 0, ErrFrameTooBig
	}
	return l, nil
}

// ParseFrame splits a frame (the LENGTH bytes after the length prefix) into
// its header and payload. The payload aliases frame.
func ParseFrame(frame []byte) (Frame, error) {
	if len(frame) < MinFrameLen {
		return Frame{}, ErrFrameTooSmall
	}
	f := Frame{Header: Header{
		Type:  FrameType(frame[0]),
		Flags: Flags(binary.BigEndian.Uint32(frame[1:5])),
	}}
	sid, n, err := ParseVarint(frame[5:])
	if err != nil {
		return Frame{}, err
	}
	fid, m, err := ParseVarint(frame[5+n:])
	if err != nil {
		return Frame{}, err
	}
	f.StreamID, f.FrameID = sid, fid
	f.Payload = frame[5+n+m:]
	return f, nil
}

// AppendHeader appends a frame header (without the length prefix).
func AppendHeader(dst []byte, h Header) []byte {
	dst = append(dst, byte(h.Type))
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Flags))
	return AppendVarint(AppendVarint(dst, h.StreamID), h.FrameID)
}

// BeginFrame appends a placeholder length prefix and the header h, and
// returns the extended buffer and the offset of the frame's start, to be
// passed to FinishFrame once the payload has been appended.
func BeginFrame(dst []byte, h Header) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	return AppendHeader(dst, h), start
}

// FinishFrame patches the length prefix of the frame that starts at start
// (as returned by BeginFrame) and returns the frame's LENGTH. It fails with
// ErrFrameTooBig, leaving dst unchanged, if LENGTH exceeds limit; the caller
// then truncates dst back to start.
func FinishFrame(dst []byte, start int, limit uint32) (uint32, error) {
	n := len(dst) - start - LengthPrefixLen
	if uint64(n) > uint64(limit) {
		return 0, ErrFrameTooBig
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return uint32(n), nil
}

// AppendFrame appends a whole frame: length prefix, header h and payload.
// It does not check LENGTH against a limit.
func AppendFrame(dst []byte, h Header, payload []byte) []byte {
	dst, start := BeginFrame(dst, h)
	dst = append(dst, payload...)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-LengthPrefixLen))
	return dst
}

// DecodeFrame decodes b as exactly one whole frame, length prefix included.
// A b shorter than its LENGTH says fails with ErrTruncated, a longer one with
// ErrTrailingData. It is the strict, single-frame form of NextFrame and
// ParseFrame, for tools and tests that hold whole frames.
func DecodeFrame(b []byte, limit uint32) (Frame, error) {
	if len(b) < LengthPrefixLen {
		return Frame{}, ErrTruncated
	}
	frame, n, _, err := NextFrame(b, limit)
	switch {
	case err != nil:
		return Frame{}, err
	case frame == nil:
		return Frame{}, ErrTruncated
	case n != len(b):
		return Frame{}, ErrTrailingData
	}
	return ParseFrame(frame)
}
