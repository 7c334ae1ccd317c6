package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture is a few raw files of a real run (without the floor).
const fixture = "testdata/results"

// copyFixture copies the fixture into a new temporary folder.
func copyFixture(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "results")
	err := filepath.WalkDir(fixture, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(fixture, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// render runs the report on dir, writing RESULTS.md and charts/ into a
// new temporary folder; it returns the Markdown and the charts' folder.
func render(t *testing.T, dir string) (string, string) {
	t.Helper()
	outDir := t.TempDir()
	charts := filepath.Join(outDir, "charts")
	var b bytes.Buffer
	require.NoError(t, write(&b, dir, filepath.Join(outDir, "RESULTS.md"), charts))
	return b.String(), charts
}

// addDirect writes a synthetic floor run of a direct scenario: spoeforge's
// run of the fixture with NOTIFY/s, agent CPU per million NOTIFY and p99
// multiplied by the factors given.
func addDirect(t *testing.T, dir, scen string, rps, perM, p99 float64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "direct", scen+".spoeforge.1.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	m["notify_per_sec"] = m["notify_per_sec"].(float64) * rps
	agent := m["agent"].(map[string]any)
	agent["cpu_s_per_million_notify"] = agent["cpu_s_per_million_notify"].(float64) * perM
	lat := m["latency"].(map[string]any)
	lat["p99_us"] = lat["p99_us"].(float64) * p99
	b, err = json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "direct", scen+"."+floor+".1.json"), b, 0o644))
}

var rpsLine = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)$`)

// addE2E writes a synthetic floor run behind HAProxy version: spoeforge's
// run of the fixture with requests/s and agent CPU ticks multiplied by the
// factors given (the same number of requests, so CPU per request scales
// with the ticks).
func addE2E(t *testing.T, dir, version string, rps, ticks float64) {
	t.Helper()
	base := filepath.Join(dir, "e2e", version+".spoeforge.1")
	wrk, err := os.ReadFile(base + ".wrk")
	require.NoError(t, err)
	m := rpsLine.FindSubmatch(wrk)
	require.NotNil(t, m, "no Requests/sec line in %s.wrk", base)
	var v float64
	_, err = fmt.Sscan(string(m[1]), &v)
	require.NoError(t, err)
	wrk = rpsLine.ReplaceAll(wrk, []byte(fmt.Sprintf("Requests/sec:  %.2f", v*rps)))
	agent, err := os.ReadFile(base + ".agent")
	require.NoError(t, err)
	var tk float64
	_, err = fmt.Sscanf(string(agent), "agent_cpu_ticks: %g", &tk)
	require.NoError(t, err)
	agent = regexp.MustCompile(`agent_cpu_ticks: \d+`).ReplaceAll(agent, []byte(fmt.Sprintf("agent_cpu_ticks: %g", tk*ticks)))
	floorBase := filepath.Join(dir, "e2e", version+"."+floor+".1")
	require.NoError(t, os.WriteFile(floorBase+".wrk", wrk, 0o644))
	require.NoError(t, os.WriteFile(floorBase+".agent", agent, 0o644))
}

// cell returns the cell of column in the row starting with row, in the
// first table after the line starting with section.
func cell(t *testing.T, md, section, row, column string) string {
	t.Helper()
	_, after, ok := strings.Cut(md, "\n"+section)
	require.True(t, ok, "no section %q", section)
	var header []string
	for _, l := range strings.Split(after, "\n") {
		if !strings.HasPrefix(l, "|") {
			if header != nil {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		if cells[0] != row {
			continue
		}
		for i, h := range header {
			if h == column {
				return cells[i]
			}
		}
		require.Failf(t, "no column", "%q in %q", column, header)
	}
	require.Failf(t, "no row", "%q in section %q", row, section)
	return ""
}

// target returns the measured cell and verdict of the target row label.
func target(t *testing.T, md, label string) (string, string) {
	t.Helper()
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| "+label+" |") {
			cells := strings.Split(strings.Trim(l, "|"), "|")
			require.Len(t, cells, 3, l)
			return strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])
		}
	}
	require.Failf(t, "no target", "%q", label)
	return "", ""
}

// checkSVG asserts that path is a well-formed, non-empty SVG document and
// returns its text.
func checkSVG(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotEmpty(t, b)
	d := xml.NewDecoder(bytes.NewReader(b))
	root, elems := "", 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "%s is not well-formed XML", path)
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			elems++
		}
	}
	assert.Equal(t, "svg", root, path)
	assert.Greater(t, elems, 20, "%s draws almost nothing", path)
	return string(b)
}

// TestChartsFromFixture renders the fixture (a real run without the floor):
// three SVG charts beside RESULTS.md and linked from it, and every ratio to
// the floor unknown.
func TestChartsFromFixture(t *testing.T) {
	md, charts := render(t, copyFixture(t))

	for _, name := range []string{chartNotify, chartLatency, chartE2ECPU} {
		svg := checkSVG(t, filepath.Join(charts, name))
		assert.Contains(t, md, "](charts/"+name+")", "RESULTS.md links %s", name)
		assert.Contains(t, svg, "spoeforge", "%s has spoeforge in its legend", name)
		assert.NotContains(t, svg, "inline (floor)", "%s: the fixture has no floor", name)
	}
	notify := checkSVG(t, filepath.Join(charts, chartNotify))
	for _, scen := range []string{"1x1", "4x16", "16x64"} {
		assert.Contains(t, notify, ">"+scen+"<", "NOTIFY/s chart has a group for %s", scen)
	}
	assert.NotContains(t, notify, "open-4x16", "an open loop's NOTIFY/s is its rate: not charted")

	assert.Contains(t, md, "This run has no measurement of the floor")
	assert.Equal(t, "–", cell(t, md, "### 16x64 ", "**spoeforge**", "NOTIFY/s ÷ inline"))
	assert.Equal(t, "–", cell(t, md, "### 16x64 ", "negasus", "CPU/M ÷ inline"))
	assert.Equal(t, "–", cell(t, md, "### HAProxy 2.6", "**spoeforge**", "requests/s ÷ inline"))
	assert.Equal(t, "–", cell(t, md, "### HAProxy 3.2", "negasus", "agent CPU/request ÷ inline"))
	measured, verdict := target(t, md, "direct 16x64: NOTIFY/s ≥ 0.85× inline's")
	assert.Equal(t, "**not measured**", verdict)
	assert.Contains(t, measured, "inline not measured")
	_, verdict = target(t, md, "direct 64x1: p99 ≤ inline's p99")
	assert.Equal(t, "**not measured**", verdict)
	assert.NotContains(t, md, "HAProxy 3.4: agent CPU", "3.4 was not measured: its target is left out")
}

// TestFloorRatios adds synthetic floor runs with known ratios to the
// fixture: the ratio columns, the targets of issue 15 and the charts follow
// them, and the targets of issue 6 still compare with the other libraries
// only.
func TestFloorRatios(t *testing.T) {
	dir := copyFixture(t)
	addDirect(t, dir, "16x64", 2, 0.5, 1) // the floor twice as fast, half the CPU
	addDirect(t, dir, "4x16", 1, 1, 1)    // the same
	addDirect(t, dir, "1x1", 0.5, 1, 2)   // the floor half as fast, twice the p99
	addE2E(t, dir, "2.6", 0.5, 2)         // spoeforge: 2× the requests/s, half the CPU per request
	addE2E(t, dir, "3.2", 1, 0.5)         // spoeforge: twice the CPU per request
	md, charts := render(t, dir)

	assert.NotContains(t, md, "This run has no measurement of the floor")
	assert.Equal(t, "0.50", cell(t, md, "### 16x64 ", "**spoeforge**", "NOTIFY/s ÷ inline"))
	assert.Equal(t, "2.00", cell(t, md, "### 16x64 ", "**spoeforge**", "CPU/M ÷ inline"))
	assert.Equal(t, "1.00", cell(t, md, "### 16x64 ", "inline (floor)", "NOTIFY/s ÷ inline"))
	assert.Equal(t, "1.00", cell(t, md, "### 4x16 ", "**spoeforge**", "CPU/M ÷ inline"))
	assert.Equal(t, "2.00", cell(t, md, "### 1x1 ", "**spoeforge**", "NOTIFY/s ÷ inline"))
	assert.Equal(t, "–", cell(t, md, "### open-4x16 ", "**spoeforge**", "NOTIFY/s ÷ inline"), "no floor run at open-4x16")
	assert.Equal(t, "2.00", cell(t, md, "### HAProxy 2.6", "**spoeforge**", "requests/s ÷ inline"))
	assert.Equal(t, "0.50", cell(t, md, "### HAProxy 2.6", "**spoeforge**", "agent CPU/request ÷ inline"))
	assert.Equal(t, "–", cell(t, md, "### HAProxy 2.6", "none (no SPOE)", "requests/s ÷ inline"))
	assert.Equal(t, "2.00", cell(t, md, "### HAProxy 3.2", "**spoeforge**", "agent CPU/request ÷ inline"))

	for _, tc := range []struct {
		label, verdict, ratio string
	}{
		{"direct 16x64: NOTIFY/s ≥ 0.85× inline's", "**missed**", "0.500×"},
		{"direct 16x64: agent CPU per million NOTIFY ≤ 1.2× inline's", "**missed**", "2.000×"},
		{"direct 4x16: NOTIFY/s ≥ 0.85× inline's", "**met**", "1.000×"},
		{"direct 4x16: agent CPU per million NOTIFY ≤ 1.2× inline's", "**met**", "1.000×"},
		{"direct 1x1: NOTIFY/s ≥ 0.95× inline's", "**met**", "2.000×"},
		{"direct 1x1: p99 ≤ inline's p99", "**met**", "0.500×"},
		{"direct 64x1: NOTIFY/s ≥ 0.95× inline's", "**not measured**", ""},
		{"end to end, HAProxy 2.6: requests/s ≥ 0.95× inline's", "**met**", "2.000×"},
		{"end to end, HAProxy 2.6: agent CPU per request ≤ 1.2× inline's", "**met**", "0.500×"},
		{"end to end, HAProxy 3.2: agent CPU per request ≤ 1.1× inline's", "**missed**", "2.000×"},
	} {
		measured, verdict := target(t, md, tc.label)
		assert.Equal(t, tc.verdict, verdict, tc.label)
		assert.Contains(t, measured, tc.ratio, tc.label)
	}

	// Issue 6 compares with the libraries: the floor, twice as fast at
	// 16x64, is not "the best peer".
	measured, _ := target(t, md, "16x64 direct: NOTIFY/s ≥ 10× the best peer")
	assert.Contains(t, measured, "vs negasus")

	for _, name := range []string{chartNotify, chartLatency, chartE2ECPU} {
		assert.Contains(t, checkSVG(t, filepath.Join(charts, name)), "inline (floor)", "%s shows the floor", name)
	}
}

// TestChartsRemovedWithoutData: a run without end-to-end results leaves no
// stale end-to-end chart behind, and RESULTS.md does not link one.
func TestChartsRemovedWithoutData(t *testing.T) {
	dir := copyFixture(t)
	outDir := t.TempDir()
	charts := filepath.Join(outDir, "charts")
	var b bytes.Buffer
	require.NoError(t, write(&b, dir, filepath.Join(outDir, "RESULTS.md"), charts))
	require.FileExists(t, filepath.Join(charts, chartE2ECPU))

	require.NoError(t, os.RemoveAll(filepath.Join(dir, "e2e")))
	b.Reset()
	require.NoError(t, write(&b, dir, filepath.Join(outDir, "RESULTS.md"), charts))
	assert.NoFileExists(t, filepath.Join(charts, chartE2ECPU))
	assert.NotContains(t, b.String(), chartE2ECPU)
	checkSVG(t, filepath.Join(charts, chartNotify))
}

func TestFloorTargetCheck(t *testing.T) {
	at := func(sf, ref float64) map[key]map[string]float64 {
		m := map[key]map[string]float64{}
		if sf > 0 {
			m[key{"16x64", "spoeforge"}] = map[string]float64{"rps": sf}
		}
		if ref > 0 {
			m[key{"16x64", floor}] = map[string]float64{"rps": ref}
		}
		return m
	}
	atLeast := floorTarget{scen: "16x64", metric: "rps", format: "%.0f", limit: 0.85}
	atMost := floorTarget{scen: "16x64", metric: "rps", format: "%.0f", limit: 1.2, atMost: true}
	for _, tc := range []struct {
		name    string
		target  floorTarget
		sf, ref float64
		verdict string
	}{
		{"at least, above", atLeast, 90, 100, "**met**"},
		{"at least, exactly at the limit", atLeast, 85, 100, "**met**"},
		{"at least, below", atLeast, 84, 100, "**missed**"},
		{"at most, below", atMost, 110, 100, "**met**"},
		{"at most, exactly at the limit", atMost, 120, 100, "**met**"},
		{"at most, above", atMost, 121, 100, "**missed**"},
		{"no floor", atLeast, 90, 0, "**not measured**"},
		{"no spoeforge", atLeast, 0, 100, "**not measured**"},
		{"neither", atLeast, 0, 0, "**not measured**"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, verdict := tc.target.check(at(tc.sf, tc.ref))
			assert.Equal(t, tc.verdict, verdict)
		})
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		x, ref float64
		want   string
	}{
		{2, 1, "2.00"},
		{1, 3, "0.33"},
		{1, 0, "–"},
		{0, 1, "–"},
		{math.NaN(), 1, "–"},
		{1, math.Inf(1), "–"},
	} {
		assert.Equal(t, tc.want, ratio(tc.x, tc.ref), "ratio(%v, %v)", tc.x, tc.ref)
	}
}

func TestLabels(t *testing.T) {
	for _, tc := range []struct {
		f    func(float64) string
		v    float64
		want string
	}{
		{si, 963316, "963k"},
		{si, 16634, "16.6k"},
		{si, 1.2e6, "1.2M"},
		{si, 10000, "10k"},
		{si, 500, "500"},
		{micros, 97.3, "97.3" + " µs"},
		{micros, 1746, "1.75 ms"},
		{micros, 34570, "34.6 ms"},
		{trim, 4.14, "4.14"},
		{trim, 2, "2"},
	} {
		assert.Equal(t, tc.want, tc.f(tc.v), "%v", tc.v)
	}
}

// TestLogTicks: every power of ten and its 2 and 5 multiples labelled,
// nothing outside the range.
func TestNiceFloor(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{
		{52.5, 50}, {545, 500}, {8317, 5000}, {19.9, 10}, {20, 20}, {1, 1}, {0.3, 0.2},
	} {
		assert.InDelta(t, tc.want, niceFloor(tc.x), 1e-9, "niceFloor(%v)", tc.x)
	}
}

func TestLogTicks(t *testing.T) {
	var labels []string
	for _, tk := range (ticker{log: true, format: si}).Ticks(10000, 3e6) {
		assert.GreaterOrEqual(t, tk.Value, 10000.0)
		assert.LessOrEqual(t, tk.Value, 3e6)
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	assert.Equal(t, []string{"10k", "20k", "50k", "100k", "200k", "500k", "1M", "2M"}, labels)
}
