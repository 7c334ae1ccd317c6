package main

import (
	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// slot is one NOTIFY in flight on a connection. A connection has exactly
// `pipeline` slots; a slot is free, or holds the NOTIFY that took it until
// its ACK arrives or it times out.
type slot struct {
	sid, fid uint64
	intended int64 // when the NOTIFY was meant to leave, on the run's clock (ns)
	sent     int64 // when it was written (the timeout counts from here)
	busy     bool
}

// pendingTable maps the stream-id of each NOTIFY in flight on a connection
// to its slot. Stream-ids in flight are unique in both id styles (§8.1), so
// the stream-id is the key and the frame-id is checked against the slot.
// It is an open-addressing table with linear probing and backward-shift
// deletion, sized once: it never allocates after newPendingTable.
type pendingTable struct {
	keys  []uint64
	vals  []int32 // slot index + 1; 0 marks an empty bucket
	mask  uint64
	shift uint
	n     int
}

func newPendingTable(capacity int) *pendingTable {
	size, shift := 8, uint(61)
	for size < 4*capacity {
		size *= 2
		shift--
	}
	return &pendingTable{
		keys:  make([]uint64, size),
		vals:  make([]int32, size),
		mask:  uint64(size - 1),
		shift: shift,
	}
}

func (t *pendingTable) home(sid uint64) uint64 {
	return (sid * 0x9E3779B97F4A7C15) >> t.shift & t.mask
}

// put records that sid is in flight in slot i. It reports false if sid is
// already in flight (a caller bug) or the table is full.
func (t *pendingTable) put(sid uint64, i int) bool {
	if t.n >= len(t.keys)-1 {
		return false
	}
	for b := t.home(sid); ; b = (b + 1) & t.mask {
		switch {
		case t.vals[b] == 0:
			t.keys[b], t.vals[b] = sid, int32(i+1)
			t.n++
			return true
		case t.keys[b] == sid:
			return false
		}
	}
}

// get returns the slot of sid.
func (t *pendingTable) get(sid uint64) (int, bool) {
	for b := t.home(sid); t.vals[b] != 0; b = (b + 1) & t.mask {
		if t.keys[b] == sid {
			return int(t.vals[b] - 1), true
		}
	}
	return 0, false
}

// del forgets sid.
func (t *pendingTable) del(sid uint64) bool {
	b := t.home(sid)
	for ; ; b = (b + 1) & t.mask {
		if t.vals[b] == 0 {
			return false
		}
		if t.keys[b] == sid {
			break
		}
	}
	// Backward-shift deletion: pull later entries of the cluster into the
	// hole when their home allows it, so lookups never need tombstones.
	for j := (b + 1) & t.mask; t.vals[j] != 0; j = (j + 1) & t.mask {
		h := t.home(t.keys[j])
		// Move j to b if h is not cyclically in (b, j].
		if (j > b && (h <= b || h > j)) || (j < b && h <= b && h > j) {
			t.keys[b], t.vals[b] = t.keys[j], t.vals[j]
			b = j
		}
	}
	t.vals[b] = 0
	t.n--
	return true
}

func (t *pendingTable) len() int { return t.n }

// errKind classifies what went wrong with a frame from the agent.
type errKind int

const (
	errNone         errKind = iota
	errUnknownID            // ACK for a stream-id not in flight (and not one that timed out)
	errWrongFrameID         // ACK for a stream-id in flight, with another frame-id
	errBadAck               // ACK payload that does not decode (strictly)
	errMissingVar           // ACK without a set-var of an -expect-var variable
	errTimeout              // NOTIFY not acknowledged within -timeout (a later ACK for it is only counted as late)
	errDisconnect           // AGENT-DISCONNECT during the run
	errUnexpected           // a frame that is neither ACK nor AGENT-DISCONNECT, or not a frame
	errIO                   // connection error before the end of the run
	numErrKinds
)

var errKindNames = [numErrKinds]string{
	errNone:         "none",
	errUnknownID:    "unknown_id",
	errWrongFrameID: "wrong_frame_id",
	errBadAck:       "bad_ack",
	errMissingVar:   "missing_var",
	errTimeout:      "timeout",
	errDisconnect:   "disconnect",
	errUnexpected:   "unexpected_frame",
	errIO:           "io",
}

func (k errKind) String() string { return errKindNames[k] }

// ackChecker checks the payload of an ACK whose ids matched. It keeps its
// decoded Ack between calls, so that once warm it allocates nothing.
type ackChecker struct {
	expect []string
	ack    codec.Ack
}

// check decodes the actions strictly and requires a set-var for every
// expected name.
func (c *ackChecker) check(payload []byte) errKind {
	if err := c.ack.Decode(payload); err != nil {
		return errBadAck
	}
	for _, name := range c.expect {
		a, ok := c.ack.Action(name)
		if !ok || a.Type != codec.ActionSetVar {
			return errMissingVar
		}
	}
	return errNone
}

// match looks up the ids of an ACK among the NOTIFYs in flight: it returns
// the slot, or the reason there is none. A frame-id mismatch leaves the
// NOTIFY in flight (HAProxy 3.2 would kill the connection; 2.6 ignores the
// ACK), so it will also time out.
func match(t *pendingTable, slots []slot, sid, fid uint64) (int, errKind) {
	i, ok := t.get(sid)
	if !ok {
		return 0, errUnknownID
	}
	if slots[i].fid != fid {
		return 0, errWrongFrameID
	}
	return i, errNone
}

// expiredRing remembers the stream-ids of the last NOTIFYs that timed out,
// so that an ACK arriving for one of them afterwards is told apart from an
// ACK with ids that were never sent: the timeout was already counted as an
// error, the late ACK itself is not another one.
type expiredRing struct {
	sids []uint64
	next int
	n    int
}

func newExpiredRing(size int) expiredRing { return expiredRing{sids: make([]uint64, size)} }

func (e *expiredRing) add(sid uint64) {
	e.sids[e.next] = sid
	e.next = (e.next + 1) % len(e.sids)
	e.n = min(e.n+1, len(e.sids))
}

// take reports whether sid timed out recently, and forgets it.
func (e *expiredRing) take(sid uint64) bool {
	for i := range e.n {
		j := (e.next - 1 - i + len(e.sids)) % len(e.sids)
		if e.sids[j] == sid {
			e.sids[j] = ^uint64(0) // cannot match again
			return true
		}
	}
	return false
}
