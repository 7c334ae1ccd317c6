// Package dispatch runs the handlers: it owns the worker pool, the
// reassembly of fragmented NOTIFY frames and the routing of each message to
// its handler. It never sees a socket: a connection is a [pipeline.Conn]
// that hands over batches of frames and takes ACKs back.
//
// # Goroutines
//
// [Dispatcher.Serve] runs in a goroutine of its own per connection (pkg/conn
// starts it after the HELLO). It owns that connection's reassembly table,
// decodes each NOTIFY and hands it to the pool with Invoke. The pool is one
// fixed-capacity ants.PoolWithFuncGeneric shared by every connection; its
// workers run the handlers and encode the ACKs. [Dispatcher.Close] releases
// the pool.
//
// User-facing types ([Message], [Actions], [HandlerFunc]) are re-exported by
// pkg/agent, which is the API we promise; this package carries no stability
// promise of its own.
package dispatch
