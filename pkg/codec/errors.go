package codec

import (
	"errors"
	"io"
	"os"
)

// Error is a protocol error. Status is the SPOP status code the agent sends
// in its AGENT-DISCONNECT; Reason is a short, static description that is safe
// to send to the peer and to log (it never contains peer bytes).
//
// The package's sentinels are *Error values and are compared by identity with
// errors.Is. In addition, a target that carries only a status (an *Error with
// an empty Reason) matches every *Error with that status:
//
//	errors.Is(err, &codec.Error{Status: codec.StatusInvalid})
type Error struct {
	Status Status
	Reason string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Reason == "" {
		return "spop: " + e.Status.String()
	}
	return "spop: " + e.Status.String() + ": " + e.Reason
}

// Is reports whether target is a status-only *Error with e's status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == "" && t.Status == e.Status
}

// Sentinel errors. Each carries the status that answers it.
var (
	// ErrTruncated: the input ends inside a varint, a length-prefixed
	// string, a typed value or a list.
	ErrTruncated = &Error{StatusInvalid, "truncated input"}
	// ErrVarintOverflow: a varint whose value exceeds 2^64-1 or that needs
	// more than 10 bytes.
	ErrVarintOverflow = &Error{StatusInvalid, "varint overflows 64 bits"}
	// ErrFrameTooSmall: a LENGTH below 7, the smallest valid frame.
	ErrFrameTooSmall = &Error{StatusInvalid, "frame shorter than 7 bytes"}
	// ErrFrameTooBig: a LENGTH above the negotiated or configured limit.
	ErrFrameTooBig = &Error{StatusFrameTooBig, "frame exceeds max-frame-size"}
	// ErrUnknownDataType: a type byte whose low nibble is 10 to 15.
	ErrUnknownDataType = &Error{StatusInvalid, "unknown data type"}
	// ErrBadKVType: a HELLO or DISCONNECT item whose value has the wrong type.
	ErrBadKVType = &Error{StatusInvalid, "item has the wrong data type"}
	// ErrBadIDs: a HELLO or DISCONNECT frame whose stream-id or frame-id is not 0.
	ErrBadIDs = &Error{StatusInvalid, "stream-id and frame-id must be 0"}
	// ErrUnexpectedFrame: a frame type that is not valid at this point.
	ErrUnexpectedFrame = &Error{StatusInvalid, "unexpected frame type"}
	// ErrTrailingData: bytes left after a value that must end its frame.
	ErrTrailingData = &Error{StatusInvalid, "trailing data"}
	// ErrBadAction: an action with an unknown type, a wrong nb-args or an
	// unknown scope.
	ErrBadAction = &Error{StatusInvalid, "malformed action"}
	// ErrNoVersion: an AGENT-HELLO without a version item.
	ErrNoVersion = &Error{StatusNoVersion, "version missing"}
	// ErrNoSupportedVersions: a HAPROXY-HELLO without supported-versions.
	ErrNoSupportedVersions = &Error{StatusBadVersion, "supported-versions missing"}
	// ErrUnsupportedVersion: no common SPOP version (we speak 2.0 only).
	ErrUnsupportedVersion = &Error{StatusBadVersion, "no supported version"}
	// ErrNoFrameSize: a HELLO without max-frame-size.
	ErrNoFrameSize = &Error{StatusNoFrameSize, "max-frame-size missing"}
	// ErrBadFrameSize: a max-frame-size outside the allowed range.
	ErrBadFrameSize = &Error{StatusBadFrameSize, "max-frame-size out of range"}
	// ErrNoCapabilities: an AGENT-HELLO without capabilities (health checks of
	// HAProxy 3.1+ require the item).
	ErrNoCapabilities = &Error{StatusNoCapabilities, "capabilities missing"}
	// ErrFragmentation: a fragment (FIN clear, or a type-0 frame) where
	// fragmentation was not negotiated.
	ErrFragmentation = &Error{StatusFragNotSupported, "fragmentation not supported"}
	// ErrInterlaced: fragments that do not continue the message in progress.
	ErrInterlaced = &Error{StatusInterlaced, "invalid interlaced frames"}
	// ErrVarNameTooLong: a variable name longer than MaxVarNameLen bytes.
	ErrVarNameTooLong = &Error{StatusInvalid, "variable name longer than 63 bytes"}
	// ErrVarNameEmpty: an empty variable name.
	ErrVarNameEmpty = &Error{StatusInvalid, "empty variable name"}
	// ErrBadScope: a variable scope above ScopeResponse.
	ErrBadScope = &Error{StatusInvalid, "unknown variable scope"}
	// ErrTooManyArgs: a message with more than 255 arguments.
	ErrTooManyArgs = &Error{StatusInvalid, "more than 255 arguments"}
	// ErrValueTooLong: a string longer than a length-limited item allows.
	ErrValueTooLong = &Error{StatusInvalid, "value too long"}
)

// StatusOf maps any error to the status code an AGENT-DISCONNECT carries for
// it: StatusNormal for nil and for a clean end of stream, the carried status
// for an *Error, StatusTimeout for a deadline, StatusIO for a stream cut
// short, and StatusUnknown otherwise. An *Error anywhere in err's tree wins
// over the others: a protocol error that also wraps io.EOF is not a normal
// end.
func StatusOf(err error) Status {
	var e *Error
	switch {
	case err == nil:
		return StatusNormal
	case errors.As(err, &e):
		return e.Status
	case errors.Is(err, io.EOF):
		return StatusNormal
	case errors.Is(err, os.ErrDeadlineExceeded):
		return StatusTimeout
	case errors.Is(err, io.ErrUnexpectedEOF):
		return StatusIO
	default:
		return StatusUnknown
	}
}
