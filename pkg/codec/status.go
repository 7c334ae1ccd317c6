package codec

import "strconv"

// Status is an SPOP status code, as carried by the status-code item of
// HAPROXY-DISCONNECT and AGENT-DISCONNECT frames. Its zero value is
// StatusNormal.
type Status uint32

// The status codes defined by SPOP. HAProxy reports a code N that an agent
// sends as 256+N in the variable named by "option set-on-error"; codes of 100
// and above are free for agent-specific errors.
const (
	StatusNormal           Status = 0  // normal end of connection
	StatusIO               Status = 1  // I/O error
	StatusTimeout          Status = 2  // a timeout occurred
	StatusFrameTooBig      Status = 3  // frame is too big
	StatusInvalid          Status = 4  // invalid frame received
	StatusNoVersion        Status = 5  // version value not found
	StatusNoFrameSize      Status = 6  // max-frame-size value not found
	StatusNoCapabilities   Status = 7  // capabilities value not found
	StatusBadVersion       Status = 8  // unsupported version
	StatusBadFrameSize     Status = 9  // max-frame-size too big or too small
	StatusFragNotSupported Status = 10 // fragmentation not supported
	StatusInterlaced       Status = 11 // invalid interlaced frames
	StatusFrameIDNotFound  Status = 12 // frame-id not found
	StatusResource         Status = 13 // resource allocation error
	StatusUnknown          Status = 99 // an unknown error occurred
)

// statusText holds the messages HAProxy itself puts on the wire for codes
// 0-13, so that our AGENT-DISCONNECT frames read like HAProxy's.
var statusText = [...]string{
	StatusNormal:           "normal",
	StatusIO:               "I/O error",
	StatusTimeout:          "a timeout occurred",
	StatusFrameTooBig:      "frame is too big",
	StatusInvalid:          "invalid frame received",
	StatusNoVersion:        "version value not found",
	StatusNoFrameSize:      "max-frame-size value not found",
	StatusNoCapabilities:   "capabilities value not found",
	StatusBadVersion:       "unsupported version",
	StatusBadFrameSize:     "max-frame-size too big or too small",
	StatusFragNotSupported: "fragmentation not supported",
	StatusInterlaced:       "invalid interlaced frames",
	StatusFrameIDNotFound:  "frame-id not found",
	StatusResource:         "resource allocation error",
}

// String returns HAProxy's text for the code ("normal", "frame is too big",
// ...), "an unknown error occurred" for 99 and "status N" for other codes.
func (s Status) String() string {
	// Compared as Status: int(s) is negative for s >= 2^31 on 32-bit
	// platforms, and s comes off the wire.
	if s < Status(len(statusText)) {
		return statusText[s]
	}
	if s == StatusUnknown {
		return "an unknown error occurred"
	}
	return "status " + strconv.FormatUint(uint64(s), 10)
}
