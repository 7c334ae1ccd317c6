package main

// The charts: the medians of the report drawn as grouped bar charts
// (gonum.org/v1/plot), written as SVG beside RESULTS.md, for readers who
// would rather look than read. Each chart shows only the agents measured.

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The charts' files, in the folder given to the report (-charts).
const (
	chartNotify  = "notify-per-sec.svg"
	chartLatency = "latency.svg"
	chartE2ECPU  = "e2e-cpu.svg"
)

// agentColors keep an agent's colour the same on every chart; the floor is
// grey, the reference rather than a competitor.
var agentColors = map[string]color.Color{
	"spoeforge":       color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	floor:             color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff},
	"negasus":         color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"criteo":          color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	"dropmorepackets": color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

// legendName is an agent's name in a chart's legend.
func legendName(a string) string {
	if a == floor {
		return "inline (floor)"
	}
	return a
}

// chartData is what the charts draw: the report's medians.
type chartData struct {
	run       string                     // which run, for the titles (env.txt's date)
	direct    map[key]map[string]float64 // directMedians per scenario and agent
	scenarios []string                   // closed-loop direct scenarios measured, in order
	e2e       map[key]map[string]float64 // e2eMedians per HAProxy branch and agent
	versions  []string                   // HAProxy branches measured end to end
}

// chartLink is one chart drawn: its file and what it shows.
type chartLink struct {
	path, alt, caption string
}

// series is one agent's bars in a grouped bar chart: a value per group,
// 0 where the agent was not measured (no bar).
type series struct {
	agent  string
	values []float64
}

// grouped is a grouped bar chart: groups along x, in each one bar per
// series.
type grouped struct {
	xLabel, yLabel string // axis titles (the chart's title is saveSVG's)
	groups         []string
	series         []series
	log            bool                 // log scale on y
	tick           func(float64) string // y tick labels
	label          func(float64) string // the value written on each bar
}

// collect returns the series of the agents with at least one value > 0.
func collect(groups []string, value func(group, agent string) float64) []series {
	var out []series
	for _, a := range agents {
		s := series{agent: a, values: make([]float64, len(groups))}
		found := false
		for i, g := range groups {
			if v := value(g, a); v > 0 && !math.IsInf(v, 0) {
				s.values[i], found = v, true
			}
		}
		if found {
			out = append(out, s)
		}
	}
	return out
}

// drawCharts draws every chart it has data for into dir, removes the
// charts it has no data for (a stale chart would contradict RESULTS.md),
// and returns the ones drawn.
func drawCharts(dir string, d chartData) ([]chartLink, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("charts: %w", err)
	}
	var links []chartLink
	draw := func(file, alt, caption, title string, w, h vg.Length, panels []grouped) error {
		path := filepath.Join(dir, file)
		if len(panels) == 0 {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("charts: %w", err)
			}
			return nil
		}
		if err := saveSVG(path, title, w, h, panels); err != nil {
			return fmt.Errorf("charts: %s: %w", file, err)
		}
		links = append(links, chartLink{path: path, alt: alt, caption: caption})
		return nil
	}

	// (a) NOTIFY/s per agent and closed-loop shape, log scale.
	var notify []grouped
	if s := collect(d.scenarios, func(g, a string) float64 { return d.direct[key{g, a}]["rps"] }); len(s) > 0 {
		notify = append(notify, grouped{
			yLabel: "NOTIFY/s (log scale; higher is better)",
			groups: d.scenarios, series: s, log: true, tick: si, label: si,
		})
	}
	if err := draw(chartNotify, "NOTIFY/s per agent and shape",
		"NOTIFY/s of each agent at each closed-loop shape (cmd/bench playing HAProxy, medians), on a log scale: inline is the floor, the others are Go SPOP libraries.",
		"Direct: NOTIFY/s per agent and shape (conns × pipeline, closed loop), run of "+d.run,
		10*vg.Inch, 4.5*vg.Inch, notify); err != nil {
		return nil, err
	}

	// (b) latency percentiles per agent, one panel per shape.
	var latency []grouped
	for _, scen := range []string{"1x1", "64x1", "16x64"} {
		if !slices.Contains(d.scenarios, scen) {
			continue
		}
		pcts := []string{"p50", "p90", "p99"}
		s := collect(pcts, func(g, a string) float64 { return d.direct[key{scen, a}][g] })
		if len(s) == 0 {
			continue
		}
		latency = append(latency, grouped{
			xLabel: shapeTitle(scen),
			yLabel: "latency (log scale; lower is better)",
			groups: pcts, series: s, log: true, tick: micros, label: micros,
		})
	}
	if err := draw(chartLatency, "Latency percentiles per agent",
		"Latency percentiles (p50, p90, p99) of each agent, direct, one panel per shape (medians over the repetitions), on a log scale.",
		"Direct: latency percentiles per agent (closed loop), run of "+d.run,
		vg.Length(3.6*float64(max(len(latency), 1)))*vg.Inch+1.6*vg.Inch, 4*vg.Inch, latency); err != nil {
		return nil, err
	}

	// (c) agent CPU per request end to end, per HAProxy branch.
	var cpu []grouped
	groups := make([]string, len(d.versions))
	for i, v := range d.versions {
		groups[i] = "HAProxy " + v
	}
	if s := collect(d.versions, func(g, a string) float64 { return d.e2e[key{g, a}]["perM"] }); len(s) > 0 {
		cpu = append(cpu, grouped{
			yLabel: "agent CPU µs per request (lower is better)",
			groups: groups, series: s, tick: trim, label: trim,
		})
	}
	if err := draw(chartE2ECPU, "Agent CPU per request behind HAProxy",
		"Agent CPU time per request behind real HAProxy (one thread) driven by wrk, per HAProxy branch (medians): the agent's cost of a full SPOE round trip.",
		"End to end (wrk → HAProxy → agent): agent CPU per request, run of "+d.run,
		8*vg.Inch, 4.5*vg.Inch, cpu); err != nil {
		return nil, err
	}
	return links, nil
}

// shapeTitle names a direct scenario "<conns>x<pipeline>" in full.
func shapeTitle(scen string) string {
	var c, p int
	if n, _ := fmt.Sscanf(scen, "%dx%d", &c, &p); n == 2 {
		conns := "conns"
		if c == 1 {
			conns = "conn"
		}
		return fmt.Sprintf("%s: %d %s × %d in flight", scen, c, conns, p)
	}
	return scen
}

// si writes a count with a k or M suffix: 963k, 1.2M, 16.6k.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return trim(v/1e6) + "M"
	case v >= 1e3:
		return trim(v/1e3) + "k"
	}
	return trim(v)
}

// micros writes a latency given in µs: 97 µs, 1.7 ms, 35 ms.
func micros(v float64) string {
	if v >= 1000 {
		return trim(v/1000) + " ms"
	}
	return trim(v) + " µs"
}

// trim writes v with three significant digits at most, no trailing zeros.
func trim(v float64) string {
	prec := 2
	switch {
	case v >= 100:
		prec = 0
	case v >= 10:
		prec = 1
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// sans is the charts' typeface (gonum/plot ships Liberation).
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// newPlot turns g into a plot: axes, ticks and bars, no legend (the
// legend is drawn once per file, beside the panels).
func (g grouped) newPlot() *plot.Plot {
	p := plot.New()
	for _, sty := range []*text.Style{&p.Title.TextStyle, &p.X.Label.TextStyle, &p.Y.Label.TextStyle, &p.X.Tick.Label, &p.Y.Tick.Label} {
		size := sty.Font.Size
		sty.Font = sans
		sty.Font.Size = size
	}
	p.X.Label.Text = g.xLabel
	p.Y.Label.Text = g.yLabel
	p.Y.Tick.Label.Font.Size = 9
	p.X.Tick.Label.Font.Size = 10
	p.Y.Label.TextStyle.Font.Size = 10
	p.X.Label.TextStyle.Font.Size = 11

	lo, hi := math.Inf(1), 0.0
	for i, s := range g.series {
		p.Add(&bars{values: s.values, index: i, count: len(g.series), color: agentColors[s.agent], label: g.label})
		for _, v := range s.values {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	p.NominalX(g.groups...)
	p.X.Min, p.X.Max = -0.5, float64(len(g.groups))-0.5
	if g.log {
		p.Y.Scale = plot.LogScale{}
		// Below the lowest bar, so that it shows.
		p.Y.Min = niceFloor(lo / 2)
		// Room above the highest bar for its label.
		p.Y.Max = hi * 4
	} else {
		p.Y.Min, p.Y.Max = 0, hi*1.3
	}
	p.Y.Tick.Marker = ticker{log: g.log, format: g.tick}
	return p
}

// niceFloor is the largest 1, 2 or 5 times a power of ten at most x > 0.
func niceFloor(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{5, 2} {
		if m*p <= x {
			return m * p
		}
	}
	return p
}

// saveSVG draws a title, panels side by side under it and one legend on
// their right into an SVG file at path.
func saveSVG(path, title string, w, h vg.Length, panels []grouped) error {
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Min.X, Y: dc.Max.Y}, dc.Max, {X: dc.Max.X, Y: dc.Min.Y}})

	titleHeight := 0.35 * vg.Inch
	tsty := text.Style{Color: color.Black, Font: sans, XAlign: text.XCenter, YAlign: text.YTop, Handler: plot.DefaultTextHandler}
	tsty.Font.Size = 13
	dc.FillText(tsty, vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - vg.Inch/8}, title)

	legendWidth := 1.7 * vg.Inch
	plots := make([]*plot.Plot, len(panels))
	for i, g := range panels {
		plots[i] = g.newPlot()
	}
	area := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: dc.Min, Max: vg.Point{X: dc.Max.X - legendWidth, Y: dc.Max.Y - titleHeight}}}
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, area)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}

	leg := plot.NewLegend()
	leg.TextStyle.Font = sans
	leg.TextStyle.Font.Size = 10
	leg.Top, leg.Left = true, true
	leg.Padding = 4
	leg.ThumbnailWidth = vg.Inch / 5
	leg.XOffs, leg.YOffs = vg.Inch/8, -titleHeight-vg.Inch/4
	seen := map[string]bool{}
	for _, a := range agents {
		for _, g := range panels {
			for _, s := range g.series {
				if s.agent == a && !seen[a] {
					seen[a] = true
					leg.Add(legendName(a), swatch{agentColors[a]})
				}
			}
		}
	}
	leg.Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: dc.Max.X - legendWidth, Y: dc.Min.Y}, Max: dc.Max}})

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// bars is one series of a grouped bar chart: bar index of count in each
// group, centred on the group's x (0, 1, …). A bar rises from the bottom of
// the data area, so that it works on a log scale too (where 0 is not on
// the axis).
type bars struct {
	values       []float64
	index, count int
	color        color.Color
	label        func(float64) string
}

// groupWidth is the share of a group's slot its bars fill.
const groupWidth = 0.8

func (b *bars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	slot := trX(1) - trX(0)
	w := slot * groupWidth / vg.Length(b.count)
	sty := text.Style{
		Color:    color.Black,
		Font:     sans,
		Rotation: math.Pi / 2,
		XAlign:   text.XLeft,
		YAlign:   text.YCenter,
		Handler:  p.TextHandler,
	}
	sty.Font.Size = vg.Length(math.Min(8, float64(w)*0.9))
	for i, v := range b.values {
		if !(v > 0) {
			continue
		}
		left := trX(float64(i)) - slot*groupWidth/2 + w*vg.Length(b.index)
		top := trY(v)
		rect := []vg.Point{{X: left, Y: c.Min.Y}, {X: left, Y: top}, {X: left + w*0.92, Y: top}, {X: left + w*0.92, Y: c.Min.Y}}
		c.FillPolygon(b.color, c.ClipPolygonY(rect))
		if b.label != nil {
			c.FillText(sty, vg.Point{X: left + w*0.46, Y: top + 2}, b.label(v))
		}
	}
}

// DataRange spans the groups and the positive values.
func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymin, ymax = math.Inf(1), math.Inf(-1)
	for _, v := range b.values {
		if v > 0 {
			ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
		}
	}
	return -0.5, float64(len(b.values)) - 0.5, ymin, ymax
}

// swatch is a legend's coloured square.
type swatch struct{ color color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.color, []vg.Point{c.Min, {X: c.Min.X, Y: c.Max.Y}, c.Max, {X: c.Max.X, Y: c.Min.Y}})
}

// ticker marks the y axis: on a log scale every power of ten and its 2 and
// 5 multiples labelled, the other multiples as minor ticks; on a linear
// scale gonum's default places.
type ticker struct {
	log    bool
	format func(float64) string
}

func (t ticker) Ticks(lo, hi float64) []plot.Tick {
	if !t.log {
		ticks := plot.DefaultTicks{}.Ticks(lo, hi)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = t.format(ticks[i].Value)
			}
		}
		return ticks
	}
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			tk := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				tk.Label = t.format(v)
			}
			ticks = append(ticks, tk)
		}
	}
	return ticks
}
