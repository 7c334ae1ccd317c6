// Package dispatch runs the handlers: it owns the worker pool, the
// reassembly of fragmented NOTIFY frames and the routing of each message to
// its handler. It never sees a socket: a connection is a [pipeline.Conn]
// that hands over batches of frames and takes ACKs back.
//
// # Goroutines
//
// [Dispatcher.Serve] runs in a goroutine of its own per connection (pkg/conn
// starts it after the HELLO). It owns that connection's reassembly table and
// decodes each NOTIFY into a task on the connection's run queue. The pool is
// one fixed-capacity ants.PoolWithFuncGeneric shared by every connection,
// invoked with the connection's session (never a closure); its workers take
// tasks from the run queue until it is empty, run the handlers and encode the
// ACKs. Before each task a worker makes sure another one is on its way if
// more tasks wait, so a slow handler never holds up the ones behind it, while
// a burst of fast ones costs about two invocations instead of one per
// NOTIFY. [Dispatcher.Close] releases the pool.
//
// User-facing types ([Message], [Actions], [HandlerFunc]) are re-exported by
// pkg/agent, which is the API we promise; this package carries no stability
// promise of its own.
package dispatch
