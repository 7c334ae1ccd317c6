package agent

// ReadBuffersOutstanding returns how many read buffers are out of the
// agent's pool, for tests that prove no path leaks one.
func ReadBuffersOutstanding(a *Agent) int64 {
	if a.connCfg.ReadBuffers == nil {
		return 0
	}
	return a.connCfg.ReadBuffers.Outstanding()
}
