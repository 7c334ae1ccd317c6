package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// config is one load run; main fills it from flags, tests directly.
type config struct {
	addr      string      // host:port, or unix:/path
	tls       *tls.Config // nil: plain text
	conns     int
	pipeline  int
	duration  time.Duration // measured window; ignored when n > 0
	n         int64         // measure until this many ACKs (0: use duration)
	warmup    time.Duration
	rate      float64 // total NOTIFY/s; 0 = closed loop
	profile   string
	largeSize int
	caps      string // capabilities offered in HAPROXY-HELLO
	mfs       uint32 // max-frame-size offered
	ids       idStyle
	expect    []string      // variables every ACK must set
	timeout   time.Duration // per NOTIFY; also bounds the final drain
	agentPID  int           // when > 0, the agent's CPU and peak RSS are read from /proc
	// progress, when not nil, gets a status line every progressEvery.
	progress      io.Writer
	progressEvery time.Duration
}

// Phases of a run's clock: [0, warmup) warms up, [warmup, measureEnd) is
// measured, then no NOTIFY is sent and the ones in flight are drained.
const (
	readBufSize  = 256 << 10 // ACKs of a whole window usually arrive in one read
	helloTimeout = 5 * time.Second
	dialTimeout  = 5 * time.Second
	maxTrackedNS = int64(60 * time.Second)
)

// run is the shared state of one load run.
type run struct {
	cfg          config
	base         time.Time // the run's clock: durations since base
	plan         notifyPlan
	conns        []*conn
	sid26        atomic.Uint64 // 2.6-style process-wide stream counter
	measureStart int64         // ns on the run's clock
	measureEnd   atomic.Int64  // ns; MaxInt64 until known (-n)
	stop         chan struct{} // closed when writers must stop sending
	stopping     atomic.Bool   // set once the drain has begun: EOF is then normal
	s0, s1       usage         // CPU samples around the measured window
}

func (r *run) now() int64 { return int64(time.Since(r.base)) }

// conn is one connection playing HAProxy.
type conn struct {
	idx int
	nc  net.Conn
	br  *bufio.Reader

	mfs      uint32 // negotiated max-frame-size
	caps     codec.Capabilities
	pipeline int // effective window: 1 without negotiated pipelining

	// mu guards slots and table: the writer takes slots, the reader frees
	// them on ACK, the sweeper on timeout.
	mu      sync.Mutex
	slots   []slot
	table   *pendingTable
	expired expiredRing // stream-ids that timed out, for late ACKs
	free    chan int32  // free slot indexes; capacity pipeline, so never full

	// open loop: pace raises dueK (NOTIFYs 0 … dueK-1 are due) and kicks
	dueK atomic.Int64
	kick chan struct{}

	// owned by the writer
	ids   idGen
	sched schedule
	batch []int32
	when  []int64
	wbuf  []byte
	lag   *histogram // open loop: actual send - intended send

	// owned by the reader
	hist    *histogram
	checker ackChecker
	scratch []byte

	// counters, read by the progress line
	sent  atomic.Int64
	done  atomic.Int64 // ACKs that matched, any phase
	late  atomic.Int64 // ACKs for NOTIFYs that had already timed out
	acked atomic.Int64 // good ACKs received in the measured window
	errs  [numErrKinds]atomic.Int64
	_     [64]byte
}

func newHist() *histogram { return newHistogram(maxTrackedNS) }

// hello performs the handshake as HAProxy does and returns the negotiated
// max-frame-size and capabilities.
func hello(nc net.Conn, br *bufio.Reader, cfg *config, engineID string) (uint32, codec.Capabilities, error) {
	frame := codec.AppendHAProxyHello(nil, &codec.HAProxyHello{
		SupportedVersions: []byte("2.0"),
		MaxFrameSize:      cfg.mfs,
		RawCapabilities:   []byte(cfg.caps),
		EngineID:          []byte(engineID),
	})
	_ = nc.SetDeadline(time.Now().Add(helloTimeout))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	if _, err := nc.Write(frame); err != nil {
		return 0, 0, fmt.Errorf("HELLO: %w", err)
	}
	var hdr [codec.LengthPrefixLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, 0, fmt.Errorf("AGENT-HELLO: %w", err)
	}
	l, err := codec.ParseLength(hdr[:], cfg.mfs)
	if err != nil {
		return 0, 0, fmt.Errorf("AGENT-HELLO: %w", err)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(br, b); err != nil {
		return 0, 0, fmt.Errorf("AGENT-HELLO: %w", err)
	}
	f, err := codec.ParseFrame(b)
	if err != nil {
		return 0, 0, fmt.Errorf("AGENT-HELLO: %w", err)
	}
	switch f.Type {
	case codec.FrameAgentHello:
	case codec.FrameAgentDisconnect:
		var d codec.Disconnect
		_ = d.Decode(f.Payload)
		return 0, 0, fmt.Errorf("agent refused HELLO: AGENT-DISCONNECT status %d %q", d.Status, d.Message)
	default:
		return 0, 0, fmt.Errorf("agent answered HELLO with %v", f.Type)
	}
	if !f.Flags.Fin() || f.StreamID != 0 || f.FrameID != 0 {
		return 0, 0, fmt.Errorf("AGENT-HELLO with flags %#x, ids %d/%d (HAProxy wants FIN and 0/0)", uint32(f.Flags), f.StreamID, f.FrameID)
	}
	var h codec.AgentHello
	if err := h.Decode(f.Payload); err != nil {
		return 0, 0, fmt.Errorf("AGENT-HELLO: %w", err)
	}
	if err := h.Validate(cfg.mfs); err != nil {
		return 0, 0, fmt.Errorf("AGENT-HELLO: %w", err)
	}
	return h.MaxFrameSize, h.Capabilities & codec.ParseCapabilities([]byte(cfg.caps)), nil
}

func randomEngineID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// dial connects to the agent: TCP or a unix socket, and TLS (handshake
// done) when configured.
func dial(ctx context.Context, cfg *config) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	network, addr := "tcp", cfg.addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
	}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil || cfg.tls == nil {
		return nc, err
	}
	tc := tls.Client(nc, cfg.tls)
	hctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// start connects, shakes hands and prepares every connection.
func start(ctx context.Context, cfg config) (*run, error) {
	if cfg.conns < 1 || cfg.pipeline < 1 {
		return nil, errors.New("-conns and -pipeline must be at least 1")
	}
	payload, err := messagePayload(cfg.profile, cfg.largeSize)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, stop: make(chan struct{})}
	engineID := randomEngineID()
	for i := range cfg.conns {
		nc, err := dial(ctx, &cfg)
		if err != nil {
			r.closeAll()
			return nil, err
		}
		c := &conn{idx: i, nc: nc, br: bufio.NewReaderSize(nc, readBufSize)}
		r.conns = append(r.conns, c)
		if c.mfs, c.caps, err = hello(nc, c.br, &cfg, engineID); err != nil {
			r.closeAll()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		plan, err := planNotify(payload, c.mfs, c.caps.Has(codec.CapFragmentation))
		if err != nil {
			r.closeAll()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		if i == 0 || plan.frames > r.plan.frames {
			r.plan = plan
		}
		c.pipeline = cfg.pipeline
		if !c.caps.Has(codec.CapPipelining) {
			c.pipeline = 1 // as HAProxy: one NOTIFY at a time without pipelining
		}
		c.slots = make([]slot, c.pipeline)
		c.table = newPendingTable(c.pipeline)
		c.expired = newExpiredRing(4 * c.pipeline)
		c.free = make(chan int32, c.pipeline)
		for s := range c.pipeline {
			c.free <- int32(s)
		}
		c.ids = newIDGen(cfg.ids, &r.sid26)
		c.sched = schedule{rate: cfg.rate, conns: cfg.conns, idx: i}
		c.kick = make(chan struct{}, 1)
		c.batch = make([]int32, c.pipeline)
		c.when = make([]int64, c.pipeline)
		c.wbuf = make([]byte, 0, c.pipeline*plan.wireLen(1<<40, 1))
		c.lag = newHist()
		c.hist = newHist()
		c.checker.expect = cfg.expect
		c.scratch = make([]byte, 0, 64<<10)
	}
	return r, nil
}

func (r *run) closeAll() {
	for _, c := range r.conns {
		_ = c.nc.Close()
	}
}

// writeClosed is the closed-loop writer: it sends a NOTIFY for every free
// slot, as many as are free at once in one write.
func (c *conn) writeClosed(r *run) error {
	for {
		select {
		case c.batch[0] = <-c.free:
		case <-r.stop:
			return nil
		}
		// Let the reader free the slots of the ACKs it has already read,
		// so that they share this write.
		runtime.Gosched()
		n := 1
	more:
		for n < len(c.batch) {
			select {
			case c.batch[n] = <-c.free:
				n++
			default:
				break more
			}
		}
		now := r.now()
		if now >= r.measureEnd.Load() {
			return nil
		}
		for i := range n {
			c.when[i] = now
		}
		if err := c.send(r, n, now); err != nil {
			return err
		}
	}
}

// pace runs the open-loop schedule of all connections as one stream: the
// j-th NOTIFY of the run is due at start + j/rate and belongs to connection
// j mod conns (its k-th, k = j div conns, see schedule). When NOTIFYs fall
// due, pace raises their connections' due counts and wakes their writers.
func (r *run) pace() {
	all := schedule{rate: r.cfg.rate, conns: 1}
	nc := int64(len(r.conns))
	var j int64
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		due := int64(all.at(j))
		if due >= r.measureEnd.Load() {
			return
		}
		now := r.now()
		if wait := due - now; wait > 0 {
			if wait > int64(2*time.Millisecond) {
				time.Sleep(time.Duration(min(wait-int64(1500*time.Microsecond), int64(10*time.Millisecond))))
			} else {
				// Go's timers overshoot sub-millisecond sleeps by about a
				// millisecond (the netpoller waits in whole ms), while
				// nanosleep(2) wakes within tens of µs. It holds this
				// thread's P: main runs open loops with GOMAXPROCS >= 2.
				ts := syscall.NsecToTimespec(wait)
				_ = syscall.Nanosleep(&ts, nil)
			}
			continue
		}
		for n := all.due(time.Duration(now)); j < n; j++ {
			c := r.conns[j%nc]
			c.dueK.Store(j/nc + 1)
			select {
			case c.kick <- struct{}{}:
			default: // already kicked
			}
		}
	}
}

// writeOpen is the open-loop writer: it sends each NOTIFY as soon as pace
// says it is due, or as soon as a slot frees up if the window is full then;
// all the NOTIFYs due at once go in one write. Their latency counts from
// the intended time, whatever delayed them.
func (c *conn) writeOpen(r *run) error {
	var k int64
	for {
		select {
		case <-c.kick:
		case <-r.stop:
			return nil
		}
		for k < c.dueK.Load() {
			select {
			case c.batch[0] = <-c.free:
			case <-r.stop:
				return nil
			}
			c.when[0] = int64(c.sched.at(k))
			k++
			n := 1
			due := c.dueK.Load()
		more:
			for n < len(c.batch) && k < due {
				select {
				case c.batch[n] = <-c.free:
					c.when[n] = int64(c.sched.at(k))
					n++
					k++
				default:
					break more
				}
			}
			now := r.now()
			if err := c.send(r, n, now); err != nil {
				return err
			}
			for i := range n {
				if c.when[i] >= r.measureStart {
					c.lag.record(now - c.when[i])
				}
			}
		}
	}
}

// send writes the NOTIFYs of the first n slots of c.batch in one write.
func (c *conn) send(r *run, n int, now int64) error {
	first, step := c.ids.reserve(n)
	c.mu.Lock()
	for i := range n {
		s := c.batch[i]
		sid := first + uint64(i)*step
		c.slots[s] = slot{sid: sid, fid: frameID, intended: c.when[i], sent: now, busy: true}
		if !c.table.put(sid, int(s)) {
			c.mu.Unlock()
			return fmt.Errorf("stream-id %d already in flight", sid) // cannot happen: ids are unique
		}
	}
	c.mu.Unlock()
	c.wbuf = c.wbuf[:0]
	for i := range n {
		c.wbuf = r.plan.appendNotify(c.wbuf, first+uint64(i)*step, frameID)
	}
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return err
	}
	c.sent.Add(int64(n))
	return nil
}

// next returns the next frame from the agent (without its length prefix).
// It aliases the read buffer and is valid until the next call.
func (c *conn) next() ([]byte, error) {
	hdr, err := c.br.Peek(codec.LengthPrefixLen)
	if err != nil {
		return nil, err
	}
	l, err := codec.ParseLength(hdr, c.mfs)
	if err != nil {
		return nil, err
	}
	total := codec.LengthPrefixLen + int(l)
	if total <= c.br.Size() {
		b, err := c.br.Peek(total)
		if err != nil {
			return nil, err
		}
		_, _ = c.br.Discard(total)
		return b[codec.LengthPrefixLen:], nil
	}
	if _, err := c.br.Discard(codec.LengthPrefixLen); err != nil {
		return nil, err
	}
	if cap(c.scratch) < int(l) {
		c.scratch = make([]byte, l) // a frame larger than the read buffer: rare
	}
	c.scratch = c.scratch[:l]
	_, err = io.ReadFull(c.br, c.scratch)
	return c.scratch, err
}

// read reads and checks every frame from the agent until the connection
// ends.
func (c *conn) read(r *run) {
	for {
		b, err := c.next()
		if err != nil {
			switch {
			case errors.Is(err, codec.ErrFrameTooBig) || errors.Is(err, codec.ErrFrameTooSmall):
				c.errs[errUnexpected].Add(1) // not a frame HAProxy would accept
			case !r.stopping.Load():
				c.errs[errIO].Add(1)
			}
			return
		}
		now := r.now()
		f, err := codec.ParseFrame(b)
		if err != nil {
			c.errs[errUnexpected].Add(1)
			continue
		}
		switch f.Type {
		case codec.FrameAck:
			c.onAck(r, f, now)
		case codec.FrameAgentDisconnect:
			if !r.stopping.Load() {
				c.errs[errDisconnect].Add(1)
			}
			return
		default:
			c.errs[errUnexpected].Add(1)
		}
	}
}

func (c *conn) onAck(r *run, f codec.Frame, now int64) {
	c.mu.Lock()
	i, kind := match(c.table, c.slots, f.StreamID, f.FrameID)
	var s slot
	late := false
	switch kind {
	case errNone:
		s = c.slots[i]
		c.slots[i].busy = false
		c.table.del(f.StreamID)
	case errUnknownID:
		late = c.expired.take(f.StreamID)
	}
	c.mu.Unlock()
	if late {
		c.late.Add(1)
		return
	}
	if kind != errNone {
		c.errs[kind].Add(1)
		return
	}
	c.free <- int32(i) // never blocks: there are only pipeline slots
	c.done.Add(1)
	if kind = c.checker.check(f.Payload); kind != errNone {
		c.errs[kind].Add(1)
		return
	}
	end := r.measureEnd.Load()
	if s.intended >= r.measureStart && s.intended < end {
		c.hist.record(now - s.intended)
	}
	if now >= r.measureStart && now < end {
		c.acked.Add(1)
	}
}

// expire frees the slots of NOTIFYs sent more than timeout ago, counting
// each as a timeout error. It returns the NOTIFYs still in flight.
func (c *conn) expire(now int64, timeout time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.slots {
		s := &c.slots[i]
		if s.busy && now-s.sent > int64(timeout) {
			s.busy = false
			c.table.del(s.sid)
			c.expired.add(s.sid)
			c.errs[errTimeout].Add(1)
			c.free <- int32(i)
		}
	}
	return c.table.len()
}

// loop runs the load until the end of the measured window, then drains and
// closes. It returns the measured window.
func (r *run) loop(ctx context.Context) (time.Duration, error) {
	cfg := &r.cfg
	r.measureStart = int64(cfg.warmup)
	if cfg.n > 0 {
		r.measureEnd.Store(math.MaxInt64)
	} else {
		r.measureEnd.Store(int64(cfg.warmup + cfg.duration))
	}
	var writers, readers sync.WaitGroup
	var werrMu sync.Mutex
	var werr error
	r.base = time.Now()
	for _, c := range r.conns {
		c.sched.start = 0
		readers.Add(1)
		go func() {
			defer readers.Done()
			c.read(r)
		}()
		writers.Add(1)
		go func() {
			defer writers.Done()
			write := c.writeClosed
			if cfg.rate > 0 {
				write = c.writeOpen
			}
			if err := write(r); err != nil && !r.stopping.Load() {
				c.errs[errIO].Add(1)
				werrMu.Lock()
				if werr == nil {
					werr = fmt.Errorf("connection %d: write: %w", c.idx, err)
				}
				werrMu.Unlock()
			}
		}()
	}

	if cfg.rate > 0 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			r.pace()
		}()
	}
	tick := min(cfg.timeout/4, 50*time.Millisecond)
	ticker := time.NewTicker(max(tick, time.Millisecond))
	defer ticker.Stop()
	lastProgress := time.Duration(0)
	var lastDone int64
	cancelled, sampled := false, false
	for {
		<-ticker.C
		now := r.now()
		if !sampled && now >= r.measureStart {
			r.s0, sampled = r.sample(now), true
		}
		for _, c := range r.conns {
			c.expire(now, cfg.timeout)
		}
		if cfg.n > 0 && r.measureEnd.Load() == math.MaxInt64 && now >= r.measureStart && r.sum(func(c *conn) int64 { return c.acked.Load() }) >= cfg.n {
			r.measureEnd.Store(now)
		}
		if cfg.progress != nil && cfg.progressEvery > 0 && time.Duration(now)-lastProgress >= cfg.progressEvery {
			done := r.sum(func(c *conn) int64 { return c.done.Load() })
			dt := (time.Duration(now) - lastProgress).Seconds()
			phase := "warmup"
			if now >= r.measureStart {
				phase = "measure"
			}
			fmt.Fprintf(cfg.progress, "[%6.1fs] %-7s %10.0f NOTIFY/s  sent %d  acked %d  in flight %d  errors %d\n",
				time.Duration(now).Seconds(), phase, float64(done-lastDone)/dt,
				r.sum(func(c *conn) int64 { return c.sent.Load() }), done,
				r.sum(func(c *conn) int64 { return c.sent.Load() })-done, r.errors())
			lastProgress, lastDone = time.Duration(now), done
		}
		if ctx.Err() != nil && !cancelled {
			cancelled = true
			if end := r.measureEnd.Load(); now < end {
				r.measureEnd.Store(max(now, r.measureStart))
			}
		}
		if now >= r.measureEnd.Load() {
			if !sampled {
				r.s0 = r.sample(r.measureStart)
			}
			r.s1 = r.sample(now)
			break
		}
	}
	window := time.Duration(r.measureEnd.Load() - r.measureStart)

	// Drain: no more NOTIFYs; wait for the ones in flight (they time out at
	// worst), then say goodbye like HAProxy and close.
	close(r.stop)
	if !waitTimeout(&writers, cfg.timeout+time.Second) {
		for _, c := range r.conns {
			_ = c.nc.SetWriteDeadline(time.Now())
		}
		writers.Wait()
	}
	deadline := time.Now().Add(cfg.timeout + 100*time.Millisecond)
	for {
		inflight := 0
		now := r.now()
		for _, c := range r.conns {
			inflight += c.expire(now, cfg.timeout)
		}
		if inflight == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r.stopping.Store(true)
	bye := codec.AppendDisconnect(nil, codec.FrameHAProxyDisconnect, codec.StatusNormal, "normal")
	for _, c := range r.conns {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write(bye)
		_ = c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	}
	readers.Wait()
	r.closeAll()
	return window, werr
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (r *run) sum(f func(*conn) int64) int64 {
	var t int64
	for _, c := range r.conns {
		t += f(c)
	}
	return t
}

func (r *run) errors() int64 {
	var t int64
	for _, c := range r.conns {
		for k := range c.errs {
			t += c.errs[k].Load()
		}
	}
	return t
}
