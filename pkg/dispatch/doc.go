// Package dispatch runs the handlers: it owns the worker pool, the
// reassembly of fragmented NOTIFY frames and the routing of each message to
// its handler. It never sees a socket: a connection is a [pipeline.Conn]
// that hands over batches of frames and takes ACKs back.
//
// # Goroutines and ownership
//
// [Dispatcher.Open] gives each connection a dispatcher stage, which its
// reader goroutine calls for every batch of frames: the stage reassembles
// fragmented NOTIFYs, decodes each NOTIFY into a task and queues the batch's
// tasks, under one lock, on one FIFO run queue shared by every connection.
// Workers from one fixed-capacity ants pool take tasks from that queue in
// arrival order, run the handlers, encode the ACKs and hand them to the
// connection. Before each task a worker makes sure another one is on its way
// if more tasks wait, so that a slow handler never holds up the ones behind
// it. A deadline watch (one timer) answers every NOTIFY whose handlers have
// not returned by its deadline, with only the error variable, and drops the
// late result. Each handler call gets a context of its own (internal/hctx),
// ended when the handler returns, at its deadline or when its connection
// dies, and valid to use afterwards.
//
// [Dispatcher.Close] releases the pool; [Dispatcher.Wait] waits, bounded by
// its context, until no worker runs.
//
// # Stability
//
// The handler-facing types are defined in pkg/spoe and re-exported by
// pkg/agent, which is the API we promise. This package is the engine's: it
// carries no stability promise of its own, and exports what pkg/agent needs
// to build and run a dispatcher (New, Config, Open, Rescue, Wait, Close, the
// Running/Waiting gauges and its errors). The internal/pipeline types in the
// signatures of Open and Rescue are the seam with pkg/conn: code outside this
// module cannot name them.
package dispatch
