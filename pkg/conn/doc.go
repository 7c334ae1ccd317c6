// Package conn serves one SPOP connection: the HELLO handshake, the reader,
// decoder and writer stages, back-pressure, deadlines and DISCONNECT. It never
// sees a handler: NOTIFY frames are handed to a [Dispatcher] in batches and
// ACKs come back through the connection's [pipeline.Conn] methods.
//
// # Stages and goroutines
//
// The reader, decoder, dispatcher and writer are separate stages in the code,
// connected by batches of frames and pooled buffers, but a stage holds a
// goroutine only while it has work, so that an idle connection costs one
// goroutine and a few kilobytes:
//
//   - the reader is the goroutine that runs [Conn.Serve]. It owns the
//     socket's read side, reads into pooled buffers (many frames per read),
//     checks every LENGTH against the limit before anything is sized from it,
//     and hands each read's whole frames as one batch to the decoder;
//   - the decoder, in the same goroutine, checks each frame's type and state
//     (HELLO, NOTIFY, fragments, DISCONNECT) and passes the NOTIFYs of a batch
//     to the dispatcher stage;
//   - the dispatcher stage is the [Dispatcher]'s pipeline.Stage for this
//     connection (pkg/dispatch), called in the reader's goroutine for each
//     batch: it queues the NOTIFYs for the shared worker pool and returns;
//   - the writer owns the socket's write side. It takes every frame queued
//     since its last write and sends them with one write call, under a write
//     deadline, so that a frame is never split across writes. It runs only
//     when something is queued: inline in the goroutine that queued the last
//     ACK of a burst, or in a goroutine of its own while a long queue drains.
//
// Every goroutine of a connection has exited when Serve returns. Buffers
// (NewBuffers) holds the pools that every connection of an agent shares;
// who returns a pooled buffer is written where it is handed over.
//
// # Stability
//
// This package is the engine's, not the API: it carries no stability promise
// and changes as the engine needs. Its exported surface is what pkg/agent
// needs to run a connection (New, Config, Buffers, Serve, Drain, Abort) and
// the methods through which the dispatcher stage answers (Session, Context,
// Acquire, TryAcquire, Reply, Forward, InFlight). The types from
// internal/pipeline in some signatures are the seam between this package and
// pkg/dispatch, which must not import each other: code outside this module
// cannot name them, so the seam stays ours to change.
// pkg/agent is the API.
package conn
