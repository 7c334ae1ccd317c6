package dispatch

import "github.com/spoe-forge/spoe-forge/internal/pipeline"

// Serve plays the connection's part for the tests: it opens c's stage,
// hands it every batch read from in (as the reader does, one at a time on
// this goroutine, the batch's own reference released after each), stops
// dispatching after a protocol error (reported to c.Fail) and closes the
// stage once in is closed.
func (d *Dispatcher) Serve(c *fakeConn, in <-chan *pipeline.Batch) {
	st := d.Open(c)
	failed := false
	for b := range in {
		if !failed {
			if err := st.Dispatch(b); err != nil {
				failed = true
				c.Fail(err)
			}
		}
		b.Release()
	}
	st.Close()
}
