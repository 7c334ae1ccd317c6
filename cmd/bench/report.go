package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spoe-forge/spoe-forge/pkg/codec"
)

// result is what a run reports; its JSON form is what bench/run.sh records.
type result struct {
	Addr     string  `json:"addr"`
	Mode     string  `json:"mode"` // "closed" or "open"
	Profile  string  `json:"profile"`
	IDs      string  `json:"ids"`
	Conns    int     `json:"conns"`
	Pipeline int     `json:"pipeline"` // as asked
	Window   int     `json:"window"`   // effective: 1 per connection without pipelining
	Rate     float64 `json:"rate,omitempty"`

	OfferedCaps string `json:"offered_caps"`
	Caps        string `json:"negotiated_caps"`
	MFS         uint32 `json:"max_frame_size"`
	FramesPer   int    `json:"frames_per_notify"`
	NotifyBytes int    `json:"notify_bytes"`

	Seconds      float64 `json:"seconds"`
	Notifies     int64   `json:"notifies"` // good ACKs received in the measured window
	NotifyPerSec float64 `json:"notify_per_sec"`
	Sent         int64   `json:"sent"` // NOTIFYs sent, all phases
	// Scheduled is, in open loop, how many NOTIFYs the schedule had due in
	// the measured window: far more than Notifies means the agent (or the
	// generator) did not keep up with the rate.
	Scheduled int64 `json:"scheduled,omitempty"`

	Errors       int64            `json:"errors"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind,omitempty"`
	// LateAcks answered NOTIFYs after they had timed out (each timeout is
	// already an error; HAProxy ignores such ACKs).
	LateAcks int64 `json:"late_acks,omitempty"`

	Latency latency  `json:"latency"`
	SendLag *latency `json:"send_lag,omitempty"` // open loop: how late the generator itself was

	Self  cpu       `json:"self"`
	Agent *agentUse `json:"agent,omitempty"`
}

// latency is in microseconds.
type latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
}

type cpu struct {
	Seconds           float64 `json:"cpu_seconds"`
	Percent           float64 `json:"cpu_percent"` // of one core
	PerMillionNotifyS float64 `json:"cpu_s_per_million_notify"`
}

type agentUse struct {
	PID int `json:"pid"`
	cpu
	PeakRSSKiB int64 `json:"peak_rss_kib,omitempty"`
	// ReadsPerNotify and WritesPerNotify are the agent's read and write
	// system calls per NOTIFY over the window: how well it batches.
	ReadsPerNotify  float64 `json:"reads_per_notify,omitempty"`
	WritesPerNotify float64 `json:"writes_per_notify,omitempty"`
	Error           string  `json:"error,omitempty"`
}

func summarize(h *histogram) latency {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return latency{
		Count: int64(h.count()),
		Mean:  h.mean() / 1e3,
		P50:   us(h.percentile(50)),
		P90:   us(h.percentile(90)),
		P99:   us(h.percentile(99)),
		P999:  us(h.percentile(99.9)),
		Max:   us(h.maximum()),
	}
}

func (r *run) result(window time.Duration) *result {
	cfg := &r.cfg
	res := &result{
		Addr: cfg.addr, Mode: "closed", Profile: cfg.profile, IDs: cfg.ids.String(),
		Conns: cfg.conns, Pipeline: cfg.pipeline, Rate: cfg.rate,
		OfferedCaps: cfg.caps, FramesPer: r.plan.frames, NotifyBytes: r.plan.wireLen(1, 1),
		Seconds: window.Seconds(),
	}
	if cfg.rate > 0 {
		res.Mode = "open"
	}
	hist, lag := newHist(), newHist()
	byKind := map[string]int64{}
	res.Window = cfg.pipeline
	caps := codec.Capabilities(0xff)
	for _, c := range r.conns {
		hist.merge(c.hist)
		lag.merge(c.lag)
		res.Notifies += c.acked.Load()
		res.Sent += c.sent.Load()
		res.LateAcks += c.late.Load()
		for k := range c.errs {
			if n := c.errs[k].Load(); n > 0 {
				byKind[errKind(k).String()] += n
				res.Errors += n
			}
		}
		res.Window = min(res.Window, c.pipeline)
		if cfg.rate > 0 {
			end := time.Duration(r.measureEnd.Load())
			res.Scheduled += c.sched.due(end-1) - c.sched.due(time.Duration(r.measureStart)-1)
		}
		caps &= c.caps
		if res.MFS == 0 || c.mfs < res.MFS {
			res.MFS = c.mfs
		}
	}
	res.Caps = caps.String()
	if len(byKind) > 0 {
		res.ErrorsByKind = byKind
	}
	if window > 0 {
		res.NotifyPerSec = float64(res.Notifies) / window.Seconds()
	}
	res.Latency = summarize(hist)
	if cfg.rate > 0 {
		l := summarize(lag)
		res.SendLag = &l
	}
	span := time.Duration(r.s1.at - r.s0.at).Seconds()
	perM := func(cpuS float64) float64 {
		if res.NotifyPerSec == 0 || span <= 0 {
			return 0
		}
		return cpuS / (res.NotifyPerSec * span) * 1e6
	}
	res.Self.Seconds = r.s1.self - r.s0.self
	if span > 0 {
		res.Self.Percent = 100 * res.Self.Seconds / span
	}
	res.Self.PerMillionNotifyS = perM(res.Self.Seconds)
	if cfg.agentPID > 0 {
		a := &agentUse{PID: cfg.agentPID}
		switch {
		case r.s0.agentErr != nil:
			a.Error = r.s0.agentErr.Error()
		case r.s1.agentErr != nil:
			a.Error = r.s1.agentErr.Error()
		default:
			a.Seconds = r.s1.agent - r.s0.agent
			if span > 0 {
				a.Percent = 100 * a.Seconds / span
			}
			a.PerMillionNotifyS = perM(a.Seconds)
			if r.s0.agentReads >= 0 && r.s1.agentReads >= 0 {
				a.ReadsPerNotify = perM(float64(r.s1.agentReads-r.s0.agentReads)) / 1e6
				a.WritesPerNotify = perM(float64(r.s1.agentWrites-r.s0.agentWrites)) / 1e6
			}
		}
		if hwm, err := procHWM(cfg.agentPID); err == nil {
			a.PeakRSSKiB = hwm
		}
		res.Agent = a
	}
	return res
}

func (res *result) writeJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(res)
}

func (res *result) writeHuman(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	mode := "closed loop"
	if res.Mode == "open" {
		mode = fmt.Sprintf("open loop at %.0f NOTIFY/s", res.Rate)
	}
	p("spoe-forge bench → %s: %s, %d conns × %d in flight", res.Addr, mode, res.Conns, res.Window)
	if res.Window != res.Pipeline {
		p(" (asked %d; pipelining not negotiated)", res.Pipeline)
	}
	p("\n  profile %s (%d B per NOTIFY, %d frame(s)), ids %s, caps offered %q negotiated %q, max-frame-size %d\n",
		res.Profile, res.NotifyBytes, res.FramesPer, res.IDs, res.OfferedCaps, res.Caps, res.MFS)
	p("  %d NOTIFY in %.2fs = %.0f NOTIFY/s (sent %d in all phases)\n", res.Notifies, res.Seconds, res.NotifyPerSec, res.Sent)
	if res.Mode == "open" {
		p("  schedule: %d NOTIFY due in the window\n", res.Scheduled)
	}
	l := res.Latency
	p("  latency µs: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f  (n=%d)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.Count)
	if res.SendLag != nil {
		s := res.SendLag
		p("  generator send lag µs: p50 %.1f  p99 %.1f  max %.1f\n", s.P50, s.P99, s.Max)
	}
	if res.Errors == 0 {
		p("  errors: 0\n")
	} else {
		var parts []string
		for _, k := range errKindNames[1:] {
			if n := res.ErrorsByKind[k]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s=%d", k, n))
			}
		}
		p("  ERRORS: %d (%s)\n", res.Errors, strings.Join(parts, " "))
	}
	if res.LateAcks > 0 {
		p("  late ACKs (after their NOTIFY timed out): %d\n", res.LateAcks)
	}
	p("  load generator CPU: %.2fs (%.0f%% of a core), %.3f s per million NOTIFY\n", res.Self.Seconds, res.Self.Percent, res.Self.PerMillionNotifyS)
	if a := res.Agent; a != nil {
		if a.Error != "" {
			p("  agent (pid %d): %s\n", a.PID, a.Error)
		} else {
			p("  agent (pid %d) CPU: %.2fs (%.0f%% of a core), %.3f s per million NOTIFY, peak RSS %d KiB\n", a.PID, a.Seconds, a.Percent, a.PerMillionNotifyS, a.PeakRSSKiB)
			p("  agent system calls per NOTIFY: %.3f read, %.3f write\n", a.ReadsPerNotify, a.WritesPerNotify)
		}
	}
}
