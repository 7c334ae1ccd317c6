// Package conn serves one SPOP connection: the HELLO handshake, the reader,
// decoder and writer stages, back-pressure, deadlines and DISCONNECT. It never
// sees a handler: NOTIFY frames are handed to a [Dispatcher] in batches and
// ACKs come back through the connection's [pipeline.Conn] methods.
//
// # Goroutines
//
// [Conn.Serve] runs the decoder in the calling goroutine and starts three
// more, all of which have exited when Serve returns:
//
//   - the reader owns the socket's read side. It reads into pooled buffers,
//     many frames per read, checks every LENGTH against the limit before
//     anything is sized from it, and hands each read's whole frames to the
//     decoder as one batch;
//   - the writer owns the socket's write side. It takes every frame queued
//     since its last write and sends them with one write call, under a write
//     deadline, so that a frame is never split across writes;
//   - the dispatcher (the Dispatcher's Serve) consumes the decoder's batches.
//
// This package carries no stability promise: pkg/agent is the API.
package conn
