package main

import (
	"fmt"
	"sync/atomic"
)

// idStyle is how stream-ids and frame-ids are assigned to NOTIFYs, after one
// of HAProxy's two SPOE engines (spop.md §8.1).
type idStyle int

const (
	// ids32 is the SPOP multiplexer of HAProxy 3.1+ (3.2 and 3.4 assign
	// the same ids): every NOTIFY is a new stream of its connection, with
	// odd stream-ids 1, 3, 5 … counted per connection, and frame-id 1.
	ids32 idStyle = iota
	// ids26 is the legacy engine of HAProxy 2.6/3.0: the stream-id is the
	// process-wide HAProxy stream number (starting at 0, shared by all
	// connections), and frame-id 1 (one event per stream).
	ids26
)

func parseIDStyle(s string) (idStyle, error) {
	switch s {
	case "3.4", "3.2", "3.1", "mux":
		return ids32, nil
	case "2.6", "3.0", "legacy":
		return ids26, nil
	}
	return 0, fmt.Errorf("unknown -ids %q (want 2.6, 3.2 or 3.4)", s)
}

func (s idStyle) String() string {
	if s == ids26 {
		return "2.6"
	}
	return "3.2"
}

// idGen hands out the ids of one connection's NOTIFYs. It is owned by that
// connection's writer; the 2.6 counter it may point to is shared by all
// connections of a run.
type idGen struct {
	style  idStyle
	next   uint64         // 3.2: the next odd stream-id of this connection
	global *atomic.Uint64 // 2.6: the process-wide stream counter
}

func newIDGen(style idStyle, global *atomic.Uint64) idGen {
	return idGen{style: style, next: 1, global: global}
}

// reserve reserves the ids of n NOTIFYs: the i-th (0-based) gets stream-id
// first+i*step and frame-id 1. One call per write batch keeps the shared
// 2.6 counter off the per-NOTIFY path.
func (g *idGen) reserve(n int) (first, step uint64) {
	if g.style == ids26 {
		return g.global.Add(uint64(n)) - uint64(n), 1
	}
	first = g.next
	g.next += 2 * uint64(n)
	return first, 2
}

// frameID is the frame-id of every NOTIFY in both styles: HAProxy 3.1+
// always uses 1, and 2.6/3.0 use 1 for the first event of a stream, which is
// the only one a load generator sends per stream.
const frameID = 1
