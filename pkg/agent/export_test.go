package agent

import "time"

// ReadBuffersOutstanding returns how many read buffers are out of the
// agent's pool, for tests that prove no path leaks one.
func ReadBuffersOutstanding(a *Agent) int64 {
	if a.connCfg.Buffers == nil {
		return 0
	}
	return a.connCfg.Buffers.ReadOutstanding()
}

// WithRefusalLogEvery sets how often refused connections may be logged at
// Warn level (a minute by default), so that tests see the limit work
// without waiting for it.
func WithRefusalLogEvery(d time.Duration) Option { return func(c *config) { c.tr.logEvery = d } }
