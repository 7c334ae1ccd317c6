// Package codec is the SPOP wire format: it turns bytes into SPOP frames and
// frames into bytes, and nothing more. It knows no sockets, loggers or
// goroutines; pkg/conn, pkg/dispatch and cmd/bench build on it.
//
// # Layout of a frame
//
// Every frame is a 4-byte big-endian LENGTH (which does not count itself)
// followed by LENGTH bytes: a type byte, 32-bit FLAGS, the stream-id and
// frame-id as SPOP varints, and the payload. [NextFrame] splits a byte stream
// into frames, checking LENGTH against a limit before anything is allocated;
// [ParseFrame] splits a frame into its [Header] and payload.
//
// # Decoding
//
// Decoders work in place: the names, strings and binaries they return alias
// the frame buffer they were given and are valid only while that buffer is.
// [Notify.Decode] and [Ack.Decode] reuse their slices, so a warm decoder
// allocates nothing. Arguments are looked up by name with a scan
// ([Message.Arg]), which is cheaper than building a map for the handful of
// arguments a message carries.
//
// # Encoding
//
// Encoders append to a caller's buffer, in the style of strconv.AppendInt:
// [AppendVarint], [AppendValue], [AppendSetVar], [AppendAgentHello]. A frame is
// built with [BeginFrame], which reserves the length prefix, and
// [FinishFrame], which patches it in.
//
// # HTTP header blocks
//
// [Headers] reads the BINARY argument of "args headers=req.hdrs_bin" (or
// res.hdrs_bin): HAProxy's block of length-prefixed header names and
// values. [Headers.Get] looks one header up ignoring ASCII case,
// [Headers.Iter] walks every pair, and neither allocates.
// [AppendHeaderPair] and [AppendHeadersEnd] build a block.
//
// # Errors
//
// Every error returned by this package is, or wraps, a [*Error] carrying the
// SPOP status code that the agent sends in its AGENT-DISCONNECT; [StatusOf]
// maps any error to that code. No input makes a decoder panic.
//
// # Stability
//
// This package is useful on its own (pkg/spoetest, cmd/bench and the
// spoe-forge command build on it, and so can tools of yours), and it carries
// the same promise as pkg/agent: from v1.0.0 on, within a major version, its
// exported names change only compatibly. New frame types, value kinds, error
// codes, fields and functions may be added; what a function returns for a
// valid input does not change. The exceptions are the fields that exist for
// reuse (the backing slices of Notify and Ack), whose capacity and contents
// past their length are not part of the promise.
package codec
