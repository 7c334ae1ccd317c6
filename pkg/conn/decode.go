package conn

import (
	"github.com/spoe-forge/spoe-forge/internal/pipeline"
	"github.com/spoe-forge/spoe-forge/pkg/codec"
	"go.uber.org/zap"
)

// decode is the decoder stage; it runs on the reader's goroutine and owns
// the protocol state. It parses each frame's header, answers the HELLO,
// and passes the NOTIFY and UNSET frames of the batch on to the dispatcher
// stage together. It returns an error when the connection must end.
//
// Draining (Drain) does not stop it: as advised for a graceful close, the
// connection keeps answering until it has nothing in flight, and only then
// ends (the reader decides; the caller then sends AGENT-DISCONNECT status
// 0). A NOTIFY that crosses the DISCONNECT is lost; the agent's shutdown
// deadline bounds the wait on a connection that is never idle.
func (c *Conn) decode(b *pipeline.Batch) error {
	keep := b.Frames[:0]
	for i := range b.Frames {
		raw := b.Frames[i].Payload
		f, err := codec.ParseFrame(raw)
		if err != nil {
			return err
		}
		c.cfg.Observer.FrameIn(f.Type, len(raw))
		if c.stage == nil {
			if f.Type != codec.FrameHAProxyHello {
				return codec.ErrUnexpectedFrame
			}
			hc, err := c.handleHello(&f)
			if err != nil {
				return err
			}
			if hc {
				return ErrHealthcheck
			}
			c.stage = c.d.Open(c)
			continue
		}
		if uint32(len(raw)) > c.limit {
			return codec.ErrFrameTooBig
		}
		switch f.Type {
		case codec.FrameNotify, codec.FrameUnset:
			if (f.Type == codec.FrameUnset || !f.Flags.Fin()) && !c.sess.Capabilities.Has(codec.CapFragmentation) {
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
			return ErrPeerDisconnect
		case codec.FrameHAProxyHello:
			return codec.ErrUnexpectedFrame
		default:
			// Unknown or agent-side types: ignore them on a stream,
			// refuse them on stream 0.
			if f.StreamID == 0 {
				return codec.ErrUnexpectedFrame
			}
		}
	}
	b.Frames = keep
	if len(keep) == 0 {
		return nil
	}
	return c.stage.Dispatch(b)
}

// handleHello answers a HAPROXY-HELLO. It reports whether the connection was
// a health check. On success the AGENT-HELLO is written and the session is
// set; on failure the error carries the status to disconnect with.
//
// The agent answers min(HAProxy's offer, Config.MaxFrameSize), and accepts
// frames up to the offer itself (bounded by Config.MaxFrameSize's receive
// limit, MaxReceiveSize): HAProxy 3.1.0 may send frames larger than the
// size negotiated.
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
	c.limit = max(mfs, min(h.MaxFrameSize, c.cfg.MaxReceiveSize))
	if h.Healthcheck && c.cfg.Healthcheck != nil {
		if ok, st, msg := c.cfg.Healthcheck(); !ok {
			// Failing the check on purpose: HAProxy marks the server DOWN
			// after "fall" of these, and stops sending it new work.
			c.out.push(codec.AppendDisconnect(nil, codec.FrameAgentDisconnect, st, msg), false, true)
			c.cfg.Observer.Hello(true)
			c.cfg.Observer.DisconnectSent(st)
			return true, nil
		}
	}
	var buf [64]byte
	c.out.push(codec.AppendAgentHello(buf[:0], mfs, caps), false, true)
	c.cfg.Observer.Hello(h.Healthcheck)
	if h.Healthcheck {
		return true, nil
	}
	if ce := c.log.Check(zap.DebugLevel, "HELLO negotiated"); ce != nil {
		ce.Write(zap.String("remote", c.sess.Remote), zap.String("engine_id", c.sess.EngineID),
			zap.Uint32("max_frame_size", mfs), zap.Stringer("capabilities", caps))
	}
	return false, nil
}
