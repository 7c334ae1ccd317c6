package conn

import (
	"time"

	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"go.uber.org/zap"
)

// decodeLoop is the decoder stage; it runs in Serve's goroutine and owns the
// protocol state. It parses each frame's header, answers the HELLO, and
// passes NOTIFY and UNSET frames on to the dispatcher in the batch they came
// in. It returns why the connection must end.
//
// Draining (Drain) does not stop it at once: as advised for a graceful close,
// the connection keeps answering until it has nothing in flight, and only
// then ends (the caller then sends AGENT-DISCONNECT status 0). A NOTIFY that
// crosses the DISCONNECT is lost; the agent's shutdown deadline bounds the
// wait on a connection that is never idle.
func (c *Conn) decodeLoop(out chan<- *pipeline.Batch, startDispatcher func()) error {
	hello := false
	drain := c.drain
	var idle <-chan time.Time
	for {
		var b *pipeline.Batch
		select {
		case b = <-c.rx:
		case <-drain:
			if !hello {
				return ErrDrained
			}
			drain = nil // seen; poll for idleness from now on
			t := time.NewTicker(drainPoll)
			defer t.Stop()
			idle = t.C
			continue
		case <-idle:
			if c.gate.inFlight() == 0 && len(out) == 0 && len(c.rx) == 0 {
				return ErrDrained
			}
			continue
		case <-c.failed:
			return c.failErr
		}
		if b == nil { // rx closed: the reader has stopped
			if !hello && c.readErr == nil {
				return codec.ErrTruncated
			}
			return c.readErr
		}
		keep := b.Frames[:0]
		for i := range b.Frames {
			raw := b.Frames[i].Payload
			f, err := codec.ParseFrame(raw)
			if err != nil {
				c.putBatch(b)
				return err
			}
			c.cfg.Observer.FrameIn(f.Type, len(raw))
			if !hello {
				if f.Type != codec.FrameHAProxyHello {
					c.putBatch(b)
					return codec.ErrUnexpectedFrame
				}
				hc, err := c.handleHello(&f)
				if err != nil {
					c.putBatch(b)
					return err
				}
				if hc {
					c.putBatch(b)
					return ErrHealthcheck
				}
				hello = true
				startDispatcher()
				continue
			}
			if uint32(len(raw)) > c.sess.MaxFrameSize {
				c.putBatch(b)
				return codec.ErrFrameTooBig
			}
			switch f.Type {
			case codec.FrameNotify, codec.FrameUnset:
				if (f.Type == codec.FrameUnset || !f.Flags.Fin()) && !c.sess.Capabilities.Has(codec.CapFragmentation) {
					c.putBatch(b)
					return codec.ErrFragmentation
				}
				keep = append(keep, f)
			case codec.FrameHAProxyDisconnect:
				var d codec.Disconnect
				if err := d.Decode(f.Payload); err != nil {
					c.log.Debug("malformed HAPROXY-DISCONNECT", zap.String("remote", c.sess.Remote), zap.Error(err))
				} else {
					c.cfg.Observer.DisconnectReceived(d.Status)
				}
				if ce := c.log.Check(zap.DebugLevel, "HAPROXY-DISCONNECT received"); ce != nil {
					ce.Write(zap.String("remote", c.sess.Remote), zap.Uint32("status", uint32(d.Status)), zap.ByteString("message", d.Message))
				}
				c.putBatch(b)
				return ErrPeerDisconnect
			case codec.FrameHAProxyHello:
				c.putBatch(b)
				return codec.ErrUnexpectedFrame
			default:
				// Unknown or agent-side types: ignore them on a stream,
				// refuse them on stream 0.
				if f.StreamID == 0 {
					c.putBatch(b)
					return codec.ErrUnexpectedFrame
				}
			}
		}
		b.Frames = keep
		if len(keep) == 0 {
			c.putBatch(b)
			continue
		}
		select {
		case out <- b: // ownership of b and its buffer reference passes to the dispatcher
		case <-c.failed:
			c.putBatch(b)
			return c.failErr
		}
	}
}

// drainPoll is how often a draining connection checks whether it is idle.
const drainPoll = 5 * time.Millisecond

// handleHello answers a HAPROXY-HELLO. It reports whether the connection was
// a health check. On success the AGENT-HELLO is queued and the session is
// set; on failure the error carries the status to disconnect with.
func (c *Conn) handleHello(f *codec.Frame) (healthcheck bool, err error) {
	if f.StreamID != 0 || f.FrameID != 0 {
		return false, codec.ErrBadIDs
	}
	if !f.Flags.Fin() {
		return false, codec.ErrFragmentation
	}
	var h codec.HAProxyHello
	if err := h.Decode(f.Payload); err != nil {
		return false, err
	}
	if err := h.Validate(); err != nil {
		return false, err
	}
	mfs := min(h.MaxFrameSize, c.cfg.MaxFrameSize)
	caps := h.Capabilities & c.cfg.Capabilities & (codec.CapPipelining | codec.CapAsync)
	caps |= c.cfg.Capabilities & codec.CapFragmentation
	c.sess.MaxFrameSize = mfs
	c.sess.Capabilities = caps
	c.sess.EngineID = string(h.EngineID)
	c.limit.Store(mfs)
	if h.Healthcheck && c.cfg.Healthcheck != nil {
		if ok, st, msg := c.cfg.Healthcheck(); !ok {
			// Failing the check on purpose: HAProxy marks the server DOWN
			// after "fall" of these, and stops sending it new work.
			c.out.push(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, st, msg), false)
			c.cfg.Observer.Hello(true)
			c.cfg.Observer.DisconnectSent(st)
			return true, nil
		}
	}
	var buf [64]byte
	c.out.push(codec.AppendAgentHello(buf[:0], mfs, caps), false)
	c.cfg.Observer.Hello(h.Healthcheck)
	if h.Healthcheck {
		return true, nil
	}
	if c.cfg.IdleTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.helloDone.Store(true)
	if ce := c.log.Check(zap.DebugLevel, "HELLO negotiated"); ce != nil {
		ce.Write(zap.String("remote", c.sess.Remote), zap.String("engine_id", c.sess.EngineID),
			zap.Uint32("max_frame_size", mfs), zap.Stringer("capabilities", caps))
	}
	return false, nil
}
