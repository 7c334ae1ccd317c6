// Command report turns the raw results of bench/run.sh (one folder of
// bench/results) into bench/RESULTS.md. RESULTS.md is generated, never
// edited by hand.
//
//	cd bench && go run ./report -dir results/2026-01-02 -out RESULTS.md
//
// It is a module of its own (github.com/spoe-forge/spoe-forge/bench), so
// that the library never depends on what the report uses.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// agents are bench/peers' agents in the order the report shows them.
var agents = []string{"spoeforge", floor, "negasus", "criteo", "dropmorepackets"}

// floor is the naive inline agent (bench/peers/inline): the reference every
// "÷ inline" ratio divides by, not a competitor.
const floor = "inline"

// peers are the other Go SPOP libraries: what the targets of issue 6 compare
// spoe-forge with (the floor is not one of them).
var peers = []string{"negasus", "criteo", "dropmorepackets"}

// agentName is an agent's name in the report's tables.
func agentName(a string) string {
	switch a {
	case "spoeforge":
		return "**spoeforge**"
	case floor:
		return "inline (floor)"
	case "none":
		return "none (no SPOE)"
	}
	return a
}

// ratio formats x ÷ ref, or "–" when either is unknown (0: not measured).
func ratio(x, ref float64) string {
	if !(x > 0) || !(ref > 0) || math.IsInf(x, 0) || math.IsInf(ref, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", x/ref)
}

// direct is the part of cmd/bench's JSON the report uses.
type direct struct {
	Mode         string  `json:"mode"`
	Profile      string  `json:"profile"`
	Conns        int     `json:"conns"`
	Pipeline     int     `json:"pipeline"`
	Window       int     `json:"window"`
	Rate         float64 `json:"rate"`
	Caps         string  `json:"negotiated_caps"`
	NotifyPerSec float64 `json:"notify_per_sec"`
	Notifies     int64   `json:"notifies"`
	Scheduled    int64   `json:"scheduled"`
	Errors       int64   `json:"errors"`
	ErrorsByKind map[string]int64
	Latency      struct {
		P50  float64 `json:"p50_us"`
		P90  float64 `json:"p90_us"`
		P99  float64 `json:"p99_us"`
		P999 float64 `json:"p999_us"`
		Max  float64 `json:"max_us"`
	} `json:"latency"`
	Self struct {
		Percent float64 `json:"cpu_percent"`
	} `json:"self"`
	Agent *struct {
		Percent    float64 `json:"cpu_percent"`
		PerM       float64 `json:"cpu_s_per_million_notify"`
		PeakRSSKiB int64   `json:"peak_rss_kib"`
		Reads      float64 `json:"reads_per_notify"`
		Writes     float64 `json:"writes_per_notify"`
		Error      string  `json:"error"`
	} `json:"agent"`
}

// e2e is one wrk run behind HAProxy.
type e2e struct {
	rps      float64
	requests float64
	p50, p90 float64 // ms
	p99      float64
	non2xx   float64
	sockErr  string
	cpuTicks float64 // agent, -1 when none
	rssKiB   float64
	reads    float64 // agent system calls during the run
	writes   float64
}

func main() {
	dir := flag.String("dir", "", "results folder written by bench/run.sh")
	out := flag.String("out", "bench/RESULTS.md", "Markdown file to write")
	charts := flag.String("charts", "", "folder for the SVG charts (default: charts/ beside -out)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "report: -dir is required")
		os.Exit(2)
	}
	if *charts == "" {
		*charts = filepath.Join(filepath.Dir(*out), "charts")
	}
	var b bytes.Buffer
	if err := write(&b, *dir, *out, *charts); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minmax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	return slices.Min(xs), slices.Max(xs)
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

var scenarioOrder = []string{"1x1", "64x1", "4x16", "16x64", "16x64-body4k", "open-4x16"}

// key names one median: a direct scenario or an HAProxy branch, and an agent.
type key struct{ scen, agent string }

// write renders the results folder dir as Markdown into w, for a file at
// out, and draws the charts into chartsDir (linked from the Markdown).
func write(w *bytes.Buffer, dir, out, chartsDir string) error {
	// The charts go near the top but need every median: the sections below
	// the header go to body first.
	var body bytes.Buffer
	cur := w
	p := func(format string, a ...any) { fmt.Fprintf(cur, format, a...) }
	rel, err := filepath.Rel(filepath.Dir(out), dir)
	if err != nil {
		rel = dir
	}
	env := readLines(filepath.Join(dir, "env.txt"))
	if env == nil {
		return fmt.Errorf("%s/env.txt missing", dir)
	}
	envMap := map[string]string{}
	for _, l := range env {
		if k, v, ok := strings.Cut(l, ": "); ok {
			if _, dup := envMap[k]; !dup {
				envMap[k] = v
			}
		}
	}

	p("# spoe-forge benchmark results\n\n")
	p("Generated by `bench/run.sh` (through `bench/report`) from the raw files in [`%s`](%s). Do not edit by hand: rerun the script.\n\n", rel, rel)
	p("## Environment\n\n")
	for _, l := range env {
		p("- %s\n", l)
	}
	p("\nThe machine is small and shared (other work may run at the same time): compare ratios within this run, not absolute numbers across runs. Each number below is the **median of the repetitions** (min–max in brackets where it matters).\n\n")
	p("**inline (floor)** is [`bench/peers/inline`](%s): the simplest agent that can be fast. One goroutine per connection reads a frame, runs the same handler inline and appends the ACK to a buffered writer flushed when the read buffer is empty; it uses pkg/codec for the wire format, and has no stages, pools, deadlines, back-pressure or graceful drain. It is **the reference, not a competitor**: the \"÷ inline\" columns divide an agent's median by the floor's median in the same run (NOTIFY/s and requests/s: higher is better; CPU: lower is better), and the targets of issue 15 are set against it. negasus, criteo and dropmorepackets are the other Go SPOP libraries.", relLink(out, "bench/peers/inline"))
	if m, _ := filepath.Glob(filepath.Join(dir, "*", "*."+floor+".*")); len(m) == 0 {
		p(" This run has no measurement of the floor: its ratios and targets show \"–\" and \"not measured\".")
	}
	p("\n\n")
	cur = &body

	// --- direct ---
	runs := map[string]map[string][]direct{} // scenario → agent → reps
	files, _ := filepath.Glob(filepath.Join(dir, "direct", "*.json"))
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".json"), ".")
		if len(parts) != 3 {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var d direct
		if err := json.Unmarshal(b, &d); err != nil {
			d = direct{Errors: -1} // the run failed: no JSON
		}
		if runs[parts[0]] == nil {
			runs[parts[0]] = map[string][]direct{}
		}
		runs[parts[0]][parts[1]] = append(runs[parts[0]][parts[1]], d)
	}
	med := map[key]map[string]float64{}
	var closed []string // closed-loop scenarios measured, for the charts
	p("## Direct: cmd/bench playing HAProxy\n\n")
	p("Each agent runs alone on CPU 1 (`taskset -c 1`), cmd/bench on CPU 0, both restarted per run; runs are interleaved (A B C D A B C D …). Ids as HAProxy 3.2 assigns them, capabilities offered `pipelining`, max-frame-size 16380, every ACK checked for the NOTIFY's ids and a set-var of `score` and `ok`. Agent CPU is utime+stime from /proc over the measured window, and its system calls syscr/syscw from /proc/<pid>/io (how well it batches); RSS is VmHWM at the end of the run. \"window\" is the effective number in flight per connection: an agent that does not negotiate pipelining gets one NOTIFY at a time per connection, as HAProxy would give it. \"errors\" sums, over the repetitions, every ACK that did not match a NOTIFY in flight or lacked a variable, and every NOTIFY unanswered within 1 s (an ACK arriving after that is not counted twice). \"bench CPU %%\" is cmd/bench's own CPU (getrusage) over the window, to show it was not the bottleneck; in open loop it includes the pacer's one nanosleep(2) per NOTIFY.\n\n")
	for _, scen := range scenarioOrder {
		byAgent := runs[scen]
		if byAgent == nil {
			continue
		}
		var first direct
		for _, a := range agents {
			if len(byAgent[a]) > 0 {
				first = byAgent[a][0]
				break
			}
		}
		desc := fmt.Sprintf("%d conns × %d pipeline, closed loop, profile %s", first.Conns, first.Pipeline, first.Profile)
		if first.Mode == "open" {
			desc = fmt.Sprintf("%d conns × %d pipeline, open loop at %.0f NOTIFY/s (latency from intended send times), profile %s", first.Conns, first.Pipeline, first.Rate, first.Profile)
		}
		if first.Mode != "open" {
			closed = append(closed, scen)
		}
		p("### %s — %s\n\n", scen, desc)
		p("| agent | window | NOTIFY/s [min–max] | NOTIFY/s ÷ inline | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | agent CPU s / M NOTIFY | CPU/M ÷ inline | agent CPU %% | agent read / write syscalls per NOTIFY | peak RSS MiB | errors | bench CPU %% |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		// Every row's ratio divides by the floor's medians: all medians first.
		for _, a := range agents {
			if ds := byAgent[a]; len(ds) > 0 {
				med[key{scen, a}] = directMedians(ds)
			}
		}
		ref := med[key{scen, floor}] // nil (zeros) when the floor was not run
		for _, a := range agents {
			ds := byAgent[a]
			if len(ds) == 0 {
				continue
			}
			m := med[key{scen, a}]
			var errs int64
			failed := 0
			for _, d := range ds {
				if d.Errors < 0 {
					failed++
				} else {
					errs += d.Errors
				}
			}
			window := ""
			for _, d := range ds {
				if d.Errors >= 0 {
					window = strconv.Itoa(d.Window)
					break
				}
			}
			errCell := strconv.FormatInt(errs, 10)
			if failed > 0 {
				errCell += fmt.Sprintf(" (%d run(s) failed)", failed)
			}
			p("| %s | %s | %.0f [%.0f–%.0f] | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %s | %.0f | %.3f / %.3f | %.1f | %s | %.0f |\n",
				agentName(a), window, m["rps"], m["lo"], m["hi"], ratio(m["rps"], ref["rps"]), m["p50"], m["p90"], m["p99"], m["p999"], m["max"],
				m["perM"], ratio(m["perM"], ref["perM"]), m["cpu"], m["rd"], m["wr"], m["rss"], errCell, m["self"])
		}
		p("\n")
	}

	// --- e2e ---
	e2eRuns := map[string]map[string][]e2e{}
	wrks, _ := filepath.Glob(filepath.Join(dir, "e2e", "*.wrk"))
	for _, f := range wrks {
		// <major>.<minor>.<agent>.<rep>.wrk
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".wrk"), ".")
		if len(parts) != 4 {
			continue
		}
		version, a := parts[0]+"."+parts[1], parts[2]
		r := parseWrk(f)
		r.cpuTicks = -1
		for _, l := range readLines(strings.TrimSuffix(f, ".wrk") + ".agent") {
			k, v, _ := strings.Cut(l, ": ")
			x, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "agent_cpu_ticks":
				r.cpuTicks = x
			case "peak_rss_kib":
				r.rssKiB = x
			case "agent_reads":
				r.reads = x
			case "agent_writes":
				r.writes = x
			}
		}
		if e2eRuns[version] == nil {
			e2eRuns[version] = map[string][]e2e{}
		}
		e2eRuns[version][a] = append(e2eRuns[version][a], r)
	}
	e2eMed := map[key]map[string]float64{}
	// The HAProxy branches measured end to end (bench/run.sh's
	// BENCH_E2E_VERSIONS), in order.
	e2eVersions := make([]string, 0, len(e2eRuns))
	for v := range e2eRuns {
		e2eVersions = append(e2eVersions, v)
	}
	sort.Strings(e2eVersions)
	if len(e2eRuns) > 0 {
		p("## End to end: wrk → HAProxy → agent\n\n")
		p("HAProxy (`nbthread 1`) and wrk (`-t1 -c%s`) share CPU 0, the agent has CPU 1. The frontend answers every request itself with `http-request return`, status 200 only when the agent set `txn.bench.score` and `txn.bench.ok` (else 500 with the SPOE error), so a request/s is a full SPOE round trip. \"none\" is the same HAProxy without the SPOE filter: the ceiling. Agent CPU is utime+stime from /proc around the measured wrk run. Configurations: [`e2e/`](%s/e2e).\n\n", wrkConns(dir), rel)
		for _, v := range e2eVersions {
			p("### HAProxy %s\n\n", v)
			p("| agent | requests/s [min–max] | requests/s ÷ inline | %% of no-SPOE ceiling | p50 ms | p90 ms | p99 ms | agent CPU s / M requests | agent CPU/request ÷ inline | agent read / write syscalls per request | peak RSS MiB | non-2xx | socket errors |\n")
			p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
			rows := append([]string{"none"}, agents...)
			for _, a := range rows {
				if rs := e2eRuns[v][a]; len(rs) > 0 {
					e2eMed[key{v, a}] = e2eMedians(rs)
				}
			}
			ceiling := e2eMed[key{v, "none"}]["rps"]
			ref := e2eMed[key{v, floor}]
			for _, a := range rows {
				rs := e2eRuns[v][a]
				if len(rs) == 0 {
					continue
				}
				m := e2eMed[key{v, a}]
				var non2xx float64
				sock := ""
				for _, r := range rs {
					non2xx += r.non2xx
					if r.sockErr != "" {
						sock = r.sockErr
					}
				}
				pct, rpsRatio, cpuCell, cpuRatio, rssCell, ioCell := "", "–", "–", "–", "–", "–"
				if ceiling > 0 {
					pct = fmt.Sprintf("%.0f%%", 100*m["rps"]/ceiling)
				}
				if a != "none" {
					rpsRatio = ratio(m["rps"], ref["rps"])
					cpuCell = fmt.Sprintf("%.2f", m["perM"])
					cpuRatio = ratio(m["perM"], ref["perM"])
					rssCell = fmt.Sprintf("%.1f", m["rss"])
					ioCell = fmt.Sprintf("%.3f / %.3f", m["rd"], m["wr"])
				}
				p("| %s | %.0f [%.0f–%.0f] | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s | %s | %.0f | %s |\n",
					agentName(a), m["rps"], m["lo"], m["hi"], rpsRatio, pct, m["p50"], m["p90"], m["p99"], cpuCell, cpuRatio, ioCell, rssCell, non2xx, sock)
			}
			p("\n")
		}
	}

	// --- ratelimit: in-process store against Redis ---
	if rl, _ := filepath.Glob(filepath.Join(dir, "ratelimit", "*.wrk")); len(rl) > 0 {
		p("## examples/ratelimit: in-process store against Redis (HAProxy 3.2)\n\n")
		p("The ratelimit example behind HAProxy 3.2 (`nbthread 1`, CPU 0, with wrk `-t1 -c%s`), limits no request reaches; the agent and redis-server share CPU 1. A request/s is a full SPOE round trip, plus one Redis script (redis_rate's GCRA) with `-store redis`. Median of the runs [min–max]. Configuration: [`ratelimit/`](%s/ratelimit).\n\n", wrkConns(dir), rel)
		p("| store | requests/s | p50 ms | p99 ms | non-2xx |\n|---|---|---|---|---|\n")
		for _, store := range []string{"local", "redis"} {
			var rps, p50, p99, bad []float64
			for _, f := range rl {
				if !strings.HasPrefix(filepath.Base(f), store+".") {
					continue
				}
				r := parseWrk(f)
				rps, p50, p99 = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99)
				bad = append(bad, r.non2xx)
			}
			if len(rps) == 0 {
				continue
			}
			lo, hi := minmax(rps)
			name := map[string]string{"local": "in-process", "redis": "Redis"}[store]
			p("| %s | %.0f [%.0f–%.0f] | %.2f | %.2f | %.0f |\n", name, median(rps), lo, hi, median(p50), median(p99), median(bad))
		}
		p("\n")
	}

	// --- transports (bench/transports.sh) ---
	writeTransports(p, dir, rel)

	// --- targets ---
	writeFloorTargets(p, med, e2eMed, e2eVersions)
	p("## Targets (issue 6): spoe-forge against the other libraries\n\n")
	p("| target | measured | verdict |\n|---|---|---|\n")
	verdict := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**missed**"
	}
	allocs := allocLines(dir)
	if a, ok := allocs["reads two args, sets two variables"]; ok {
		p("| at most 0.05 allocations per NOTIFY through the whole stack for a handler that reads two args and sets two variables (pkg/agent `TestAllocsPerNotify`) | %.3f allocations, %.0f bytes | %s |\n", a[0], a[1], verdict(a[0] <= 0.05))
	} else {
		p("| allocations per NOTIFY through the whole stack | test did not report (see allocs.txt) | **unknown** |\n")
	}
	bestPeer := func(scen, metric string, better func(a, b float64) bool) (string, float64) {
		name, best := "", 0.0
		for _, a := range peers {
			m, ok := med[key{scen, a}]
			if !ok || m["rps"] == 0 {
				continue
			}
			if name == "" || better(m[metric], best) {
				name, best = a, m[metric]
			}
		}
		return name, best
	}
	higher := func(a, b float64) bool { return a > b }
	lower := func(a, b float64) bool { return a < b }
	if sf, ok := med[key{"16x64", "spoeforge"}]; ok {
		p("| 16x64 direct: spoe-forge agent CPU ≤ 0.5 s per million NOTIFY | %.2f s | %s |\n", sf["perM"], verdict(sf["perM"] > 0 && sf["perM"] <= 0.5))
		if name, best := bestPeer("16x64", "rps", higher); name != "" {
			p("| 16x64 direct: NOTIFY/s ≥ 10× the best peer | %.0f vs %s %.0f = %.1f× | %s |\n", sf["rps"], name, best, sf["rps"]/best, verdict(sf["rps"] >= 10*best))
		}
	}
	if sf, ok := med[key{"1x1", "spoeforge"}]; ok {
		if name, best := bestPeer("1x1", "p99", lower); name != "" {
			p("| 1x1 direct: p99 no worse than the best peer's | %.0f µs vs %s %.0f µs | %s |\n", sf["p99"], name, best, verdict(sf["p99"] <= best))
		}
	}
	for _, v := range e2eVersions {
		sf, ok := e2eMed[key{v, "spoeforge"}]
		if !ok {
			continue
		}
		name, best := "", 0.0
		for _, a := range peers {
			if m, ok := e2eMed[key{v, a}]; ok && m["rps"] > best {
				name, best = a, m["rps"]
			}
		}
		if name != "" {
			p("| end to end, HAProxy %s: requests/s ≥ 1.5× the best peer | %.0f vs %s %.0f = %.2f× | %s |\n", v, sf["rps"], name, best, sf["rps"]/best, verdict(sf["rps"] >= 1.5*best))
		}
		if c, ok := e2eMed[key{v, "none"}]; ok && c["rps"] > 0 {
			p("| end to end, HAProxy %s: ≥ 60%% of the no-SPOE ceiling | %.0f / %.0f = %.0f%% | %s |\n", v, sf["rps"], c["rps"], 100*sf["rps"]/c["rps"], verdict(sf["rps"] >= 0.6*c["rps"]))
		}
	}
	p("\n")

	// --- handler context cost ---
	if len(allocs) > 0 || len(readLines(filepath.Join(dir, "ctxcost.txt"))) > 0 {
		writeContextCost(p, dir, rel, allocs)
	}

	// --- profile ---
	if top := readLines(filepath.Join(dir, "profile-top.txt")); top != nil {
		p("## CPU profile of the spoeforge agent at 16x64\n\n")
		p("`bench/peers/spoeforge -cpuprofile` during a 10 s 16x64 run (raw profile: [`spoeforge-16x64.pprof`](%s/spoeforge-16x64.pprof); `-cum` view in [`profile-top-cum.txt`](%s/profile-top-cum.txt)).\n\n```\n", rel, rel)
		for i, l := range top {
			if i >= 45 {
				break
			}
			p("%s\n", l)
		}
		p("```\n\n")
	}
	if bd := readLines(filepath.Join(dir, "profile-breakdown.txt")); bd != nil {
		var sent float64
		if b, err := os.ReadFile(filepath.Join(dir, "profile-run.json")); err == nil {
			var pr struct {
				Sent         float64 `json:"sent"`
				NotifyPerSec float64 `json:"notify_per_sec"`
				Agent        *struct {
					PerM float64 `json:"cpu_s_per_million_notify"`
				} `json:"agent"`
			}
			if json.Unmarshal(b, &pr) == nil {
				sent = pr.Sent
				p("During the profiled run: %.0f NOTIFY/s, %.0f NOTIFYs in all (warm-up and drain included)", pr.NotifyPerSec, pr.Sent)
				if pr.Agent != nil {
					p(", agent CPU %.2f s per million NOTIFY", pr.Agent.PerM)
				}
				p(".\n\n")
			}
		}
		p("Where the time goes: samples whose stack contains a function matching each expression (groups overlap; e.g. the handler runs inside the ants worker).\n\n")
		p("| group | functions (regexp) | CPU | %% of samples | ns per NOTIFY |\n|---|---|---:|---:|---:|\n")
		for _, l := range bd {
			f := strings.Split(l, "\t")
			if len(f) != 3 {
				continue
			}
			// "1.64s, 18.16% of 9.03s total"
			secs, pct := "–", "–"
			perN := "–"
			if parts := strings.SplitN(f[2], ", ", 2); len(parts) == 2 {
				secs = parts[0]
				pct, _, _ = strings.Cut(parts[1], " of")
				if v, err := parseSeconds(secs); err == nil && sent > 0 {
					perN = fmt.Sprintf("%.0f", v/sent*1e9)
				}
			}
			p("| %s | `%s` | %s | %s | %s |\n", f[0], strings.ReplaceAll(f[1], "|", "\\|"), secs, pct, perN)
		}
		p("\n")
	}

	// --- sections written by other scripts (bench/soak.sh) ---
	if extra, _ := filepath.Glob(filepath.Join(dir, "section-*.md")); len(extra) > 0 {
		sort.Strings(extra)
		for _, f := range extra {
			for _, l := range readLines(f) {
				p("%s\n", l)
			}
			p("\n")
		}
	}

	// --- commands ---
	if cmds := readLines(filepath.Join(dir, "commands.txt")); cmds != nil {
		p("## Exact commands\n\n")
		p("Built with `go build -o $work/bench ./cmd/bench`, in `bench/peers` `go build -o $work/ ./spoeforge ./inline ./negasus ./criteo ./dropmorepackets` (a module of its own), and in `bench` `go build -o $work/report ./report` (a module of its own). Each distinct command, in order (repetitions run the same command again):\n\n```\n")
		seen := map[string]bool{}
		for _, c := range cmds {
			if !seen[c] {
				seen[c] = true
				p("%s\n", c)
			}
		}
		p("```\n")
	}

	// --- charts, shown above the sections ---
	cur = w
	run := envMap["date"]
	if d, _, ok := strings.Cut(run, " "); ok {
		run = d
	}
	links, err := drawCharts(chartsDir, chartData{run: run, direct: med, scenarios: closed, e2e: e2eMed, versions: e2eVersions})
	if err != nil {
		return err
	}
	if len(links) > 0 {
		p("## Charts\n\n")
		p("Drawn by `bench/report` from the medians below (SVG, in [`%s`](%s)).\n\n", relTo(out, chartsDir), relTo(out, chartsDir))
		for _, l := range links {
			p("![%s](%s)\n\n%s\n\n", l.alt, relTo(out, l.path), l.caption)
		}
	}
	_, _ = w.Write(body.Bytes())
	return nil
}

// relTo is path as a link from the Markdown file out.
func relTo(out, path string) string {
	absOut, err1 := filepath.Abs(filepath.Dir(out))
	absPath, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return filepath.ToSlash(path)
	}
	rel, err := filepath.Rel(absOut, absPath)
	if err != nil {
		return filepath.ToSlash(path)
	}
	return filepath.ToSlash(rel)
}

// directMedians are the medians over one agent's repetitions of a direct
// scenario (runs that failed left out), with the NOTIFY/s range ("lo", "hi").
func directMedians(ds []direct) map[string]float64 {
	col := func(f func(d direct) float64) []float64 {
		var xs []float64
		for _, d := range ds {
			if d.Errors >= 0 {
				xs = append(xs, f(d))
			}
		}
		return xs
	}
	agentCol := func(f func(d direct) float64) []float64 {
		var xs []float64
		for _, d := range ds {
			if d.Errors >= 0 && d.Agent != nil && d.Agent.Error == "" {
				xs = append(xs, f(d))
			}
		}
		return xs
	}
	lo, hi := minmax(col(func(d direct) float64 { return d.NotifyPerSec }))
	return map[string]float64{
		"rps":  median(col(func(d direct) float64 { return d.NotifyPerSec })),
		"lo":   lo,
		"hi":   hi,
		"p50":  median(col(func(d direct) float64 { return d.Latency.P50 })),
		"p90":  median(col(func(d direct) float64 { return d.Latency.P90 })),
		"p99":  median(col(func(d direct) float64 { return d.Latency.P99 })),
		"p999": median(col(func(d direct) float64 { return d.Latency.P999 })),
		"max":  median(col(func(d direct) float64 { return d.Latency.Max })),
		"self": median(col(func(d direct) float64 { return d.Self.Percent })),
		"perM": median(agentCol(func(d direct) float64 { return d.Agent.PerM })),
		"cpu":  median(agentCol(func(d direct) float64 { return d.Agent.Percent })),
		"rss":  median(agentCol(func(d direct) float64 { return float64(d.Agent.PeakRSSKiB) / 1024 })),
		"rd":   median(agentCol(func(d direct) float64 { return d.Agent.Reads })),
		"wr":   median(agentCol(func(d direct) float64 { return d.Agent.Writes })),
	}
}

// floorTarget is one target of issue 15: spoeforge's median of a metric
// divided by the floor's, at least (or, when atMost, at most) limit.
type floorTarget struct {
	label  string
	scen   string // direct scenario, or HAProxy branch end to end
	metric string // a key of directMedians or e2eMedians
	format string // one value, with its unit
	limit  float64
	atMost bool
}

// floorTargets are issue 15's targets, direct then end to end.
var floorTargets = []floorTarget{
	{"direct 16x64: NOTIFY/s ≥ 0.85× inline's", "16x64", "rps", "%.0f NOTIFY/s", 0.85, false},
	{"direct 16x64: agent CPU per million NOTIFY ≤ 1.2× inline's", "16x64", "perM", "%.2f s", 1.2, true},
	{"direct 4x16: NOTIFY/s ≥ 0.85× inline's", "4x16", "rps", "%.0f NOTIFY/s", 0.85, false},
	{"direct 4x16: agent CPU per million NOTIFY ≤ 1.2× inline's", "4x16", "perM", "%.2f s", 1.2, true},
	{"direct 64x1: NOTIFY/s ≥ 0.95× inline's", "64x1", "rps", "%.0f NOTIFY/s", 0.95, false},
	{"direct 64x1: p99 ≤ inline's p99", "64x1", "p99", "%.0f µs", 1, true},
	{"direct 1x1: NOTIFY/s ≥ 0.95× inline's", "1x1", "rps", "%.0f NOTIFY/s", 0.95, false},
	{"direct 1x1: p99 ≤ inline's p99", "1x1", "p99", "%.0f µs", 1, true},
}

// floorE2ETargets are issue 15's end-to-end targets, per HAProxy branch.
var floorE2ETargets = []floorTarget{
	{"end to end, HAProxy 2.6: requests/s ≥ 0.95× inline's", "2.6", "rps", "%.0f requests/s", 0.95, false},
	{"end to end, HAProxy 2.6: agent CPU per request ≤ 1.2× inline's", "2.6", "perM", "%.2f µs", 1.2, true},
	{"end to end, HAProxy 3.2: agent CPU per request ≤ 1.1× inline's", "3.2", "perM", "%.2f µs", 1.1, true},
	{"end to end, HAProxy 3.4: agent CPU per request ≤ 1.1× inline's", "3.4", "perM", "%.2f µs", 1.1, true},
}

// check measures the target in medians: the measured cell and the verdict.
func (t floorTarget) check(medians map[key]map[string]float64) (measured, verdict string) {
	sf, ref := medians[key{t.scen, "spoeforge"}][t.metric], medians[key{t.scen, floor}][t.metric]
	switch {
	case !(sf > 0) && !(ref > 0):
		return "neither spoeforge nor inline measured in this run", "**not measured**"
	case !(ref > 0):
		return fmt.Sprintf("spoeforge "+t.format+"; inline not measured in this run", sf), "**not measured**"
	case !(sf > 0):
		return fmt.Sprintf("inline "+t.format+"; spoeforge not measured in this run", ref), "**not measured**"
	}
	r := sf / ref
	ok := r >= t.limit
	if t.atMost {
		ok = r <= t.limit
	}
	verdict = "**missed**"
	if ok {
		verdict = "**met**"
	}
	return fmt.Sprintf("spoeforge "+t.format+" vs inline "+t.format+" = %.3f×", sf, ref, r), verdict
}

// writeFloorTargets renders the targets of issue 15: spoe-forge within a
// few percent of the floor, as ratios of medians within this run.
func writeFloorTargets(p func(string, ...any), med, e2eMed map[key]map[string]float64, versions []string) {
	p("## Targets (issue 15): spoe-forge against the floor\n\n")
	p("Each ratio divides spoeforge's median by inline's (the floor) in the same run: the machine is shared, so absolute numbers move between runs and ratios much less. A target that this run could not measure says so.\n\n")
	p("| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range floorTargets {
		measured, verdict := t.check(med)
		p("| %s | %s | %s |\n", t.label, measured, verdict)
	}
	for _, t := range floorE2ETargets {
		// 3.4 is optional in bench/run.sh (BENCH_E2E_VERSIONS): its target
		// is shown when it was measured; 2.6's and 3.2's always are.
		if t.scen == "3.4" && !slices.Contains(versions, t.scen) {
			continue
		}
		measured, verdict := t.check(e2eMed)
		p("| %s | %s | %s |\n", t.label, measured, verdict)
	}
	p("\n")
}

// e2eMedians are the medians over one agent's wrk runs behind one HAProxy,
// with the requests/s range ("lo", "hi") and the agent's CPU seconds per
// million requests ("perM", 0 without an agent).
func e2eMedians(rs []e2e) map[string]float64 {
	col := func(f func(e e2e) float64) []float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, f(r))
		}
		return xs
	}
	var perM []float64
	for _, r := range rs {
		if r.cpuTicks >= 0 && r.requests > 0 {
			perM = append(perM, r.cpuTicks/100/r.requests*1e6)
		}
	}
	lo, hi := minmax(col(func(e e2e) float64 { return e.rps }))
	return map[string]float64{
		"rps":  median(col(func(e e2e) float64 { return e.rps })),
		"lo":   lo,
		"hi":   hi,
		"p50":  median(col(func(e e2e) float64 { return e.p50 })),
		"p90":  median(col(func(e e2e) float64 { return e.p90 })),
		"p99":  median(col(func(e e2e) float64 { return e.p99 })),
		"rss":  median(col(func(e e2e) float64 { return e.rssKiB / 1024 })),
		"rd":   median(col(func(e e2e) float64 { return div(e.reads, e.requests) })),
		"wr":   median(col(func(e e2e) float64 { return div(e.writes, e.requests) })),
		"perM": median(perM),
	}
}

// relLink is the path of target (relative to the repository root) as a link
// from the Markdown file out, when out is inside the repository; else target.
func relLink(out, target string) string {
	abs, err := filepath.Abs(filepath.Dir(out))
	if err != nil {
		return target
	}
	// The repository root is the folder holding bench/ above out.
	for d := abs; d != filepath.Dir(d); d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "bench", "peers")); err == nil && st.IsDir() {
			if rel, err := filepath.Rel(abs, filepath.Join(d, target)); err == nil {
				return filepath.ToSlash(rel)
			}
		}
	}
	return target
}

func wrkConns(dir string) string {
	for _, l := range readLines(filepath.Join(dir, "commands.txt")) {
		if m := regexp.MustCompile(`wrk .*-c(\d+)`).FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return "?"
}

var (
	reqRE     = regexp.MustCompile(`^\s*(\d+) requests in`)
	rpsRE     = regexp.MustCompile(`^Requests/sec:\s+([\d.]+)`)
	pctRE     = regexp.MustCompile(`^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	non2xxRE  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	sockErrRE = regexp.MustCompile(`Socket errors:\s+(.*)`)
)

// parseWrk reads wrk --latency output.
func parseWrk(path string) e2e {
	var r e2e
	f, err := os.Open(path)
	if err != nil {
		return r
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		l := s.Text()
		if m := reqRE.FindStringSubmatch(l); m != nil {
			r.requests, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := rpsRE.FindStringSubmatch(l); m != nil {
			r.rps, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := pctRE.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			switch m[3] {
			case "us":
				v /= 1000
			case "s":
				v *= 1000
			}
			switch m[1] {
			case "50":
				r.p50 = v
			case "90":
				r.p90 = v
			case "99":
				r.p99 = v
			}
		}
		if m := non2xxRE.FindStringSubmatch(l); m != nil {
			r.non2xx, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := sockErrRE.FindStringSubmatch(l); m != nil {
			r.sockErr = strings.TrimSpace(m[1])
		}
	}
	return r
}

// parseSeconds reads pprof's durations: "1.64s", "950ms", "0".
func parseSeconds(s string) (float64, error) {
	switch {
	case s == "0":
		return 0, nil
	case strings.HasSuffix(s, "ms"):
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "ms"), 64)
		return v / 1e3, err
	case strings.HasSuffix(s, "us"), strings.HasSuffix(s, "µs"):
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSuffix(s, "us"), "µs"), 64)
		return v / 1e6, err
	case strings.HasSuffix(s, "s"):
		return strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	}
	return 0, fmt.Errorf("bad duration %q", s)
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// transports are the transports bench/transports.sh compares, in order.
var transports = []string{"tcp", "unix", "mtls"}

var transportNames = map[string]string{"tcp": "TCP", "unix": "unix socket", "mtls": "mutual TLS (TCP)"}

// writeTransports renders bench/transports.sh's results, if any: the
// spoeforge agent over TCP, a unix socket and mutual TLS, directly
// (cmd/bench) and behind HAProxy (wrk).
func writeTransports(p func(string, ...any), dir, rel string) {
	base := filepath.Join(dir, "transports")
	directFiles, _ := filepath.Glob(filepath.Join(base, "direct", "*.json"))
	wrkFiles, _ := filepath.Glob(filepath.Join(base, "e2e", "*.wrk"))
	if len(directFiles) == 0 && len(wrkFiles) == 0 {
		return
	}
	p("## Transports: TCP, unix socket, mutual TLS (spoeforge)\n\n")
	p("`bench/transports.sh`: the spoeforge agent (`bench/peers/spoeforge`) on CPU 1 over each transport, the runs interleaved (TCP, unix, mTLS, TCP, …) and the agent restarted for each. Mutual TLS is TLS 1.3 with ECDSA P-256 certificates from `docker/gen-dev-certs.sh`, the client certificate verified; HAProxy's server line is `ssl verify required ca-file … crt … verifyhost agent`, a unix socket `unix@…`. The SPOE file sets `maxconnrate 100` (2.6/3.0 only; 3.1+ ignore it): without it HAProxy 2.6 at start opens a connection per queued event while the first TLS handshakes are slow, a storm seen in two of three runs (2,178 to 8,940 connections opened, about 1,700 requests/s instead of 35,000; README, \"Connection storms\"). With it connections are long-lived, so the handshakes are not what is measured: the cost of encrypting the frames is. Raw files: [`transports/`](%s/transports).\n\n", rel)
	for _, l := range readLines(filepath.Join(base, "env.txt")) {
		p("- %s\n", l)
	}
	p("\n")

	type dkey struct{ scen, tr string }
	druns := map[dkey][]direct{}
	var scens []string
	for _, f := range directFiles {
		// <scenario>.<transport>.<rep>.json
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".json"), ".")
		if len(parts) != 3 {
			continue
		}
		var d direct
		if b, err := os.ReadFile(f); err != nil || json.Unmarshal(b, &d) != nil {
			d = direct{Errors: -1}
		}
		k := dkey{parts[0], parts[1]}
		if len(druns[k]) == 0 && !slices.Contains(scens, parts[0]) {
			scens = append(scens, parts[0])
		}
		druns[k] = append(druns[k], d)
	}
	sort.Slice(scens, func(i, j int) bool {
		return slices.Index(scenarioOrder, scens[i]) < slices.Index(scenarioOrder, scens[j])
	})
	if len(scens) > 0 {
		p("### Direct: cmd/bench playing HAProxy\n\n")
		p("| scenario | transport | NOTIFY/s [min–max] | p50 µs | p99 µs | agent CPU s / M NOTIFY | agent read / write syscalls per NOTIFY | peak RSS MiB | errors |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, scen := range scens {
			for _, tr := range transports {
				ds := druns[dkey{scen, tr}]
				if len(ds) == 0 {
					continue
				}
				var rps, p50, p99, perM, rss, rd, wr []float64
				var errs int64
				failed := 0
				for _, d := range ds {
					if d.Errors < 0 {
						failed++
						continue
					}
					errs += d.Errors
					rps, p50, p99 = append(rps, d.NotifyPerSec), append(p50, d.Latency.P50), append(p99, d.Latency.P99)
					if d.Agent != nil && d.Agent.Error == "" {
						perM, rss = append(perM, d.Agent.PerM), append(rss, float64(d.Agent.PeakRSSKiB)/1024)
						rd, wr = append(rd, d.Agent.Reads), append(wr, d.Agent.Writes)
					}
				}
				lo, hi := minmax(rps)
				errCell := strconv.FormatInt(errs, 10)
				if failed > 0 {
					errCell += fmt.Sprintf(" (%d run(s) failed)", failed)
				}
				p("| %s | %s | %.0f [%.0f–%.0f] | %.0f | %.0f | %.2f | %.3f / %.3f | %.1f | %s |\n",
					scen, transportNames[tr], median(rps), lo, hi, median(p50), median(p99), median(perM), median(rd), median(wr), median(rss), errCell)
			}
		}
		p("\n")
	}

	type ekey struct{ version, tr string }
	eruns := map[ekey][]e2e{}
	var versions []string
	for _, f := range wrkFiles {
		// <major>.<minor>.<transport>.<rep>.wrk
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".wrk"), ".")
		if len(parts) != 4 {
			continue
		}
		r := parseWrk(f)
		r.cpuTicks = -1
		for _, l := range readLines(strings.TrimSuffix(f, ".wrk") + ".agent") {
			k, v, _ := strings.Cut(l, ": ")
			x, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "agent_cpu_ticks":
				r.cpuTicks = x
			case "peak_rss_kib":
				r.rssKiB = x
			}
		}
		v := parts[0] + "." + parts[1]
		if !slices.Contains(versions, v) {
			versions = append(versions, v)
		}
		eruns[ekey{v, parts[2]}] = append(eruns[ekey{v, parts[2]}], r)
	}
	sort.Strings(versions)
	for _, v := range versions {
		p("### End to end: wrk → HAProxy %s → agent\n\n", v)
		p("| transport | requests/s [min–max] | p50 ms | p99 ms | agent CPU s / M requests | peak RSS MiB | non-2xx | socket errors |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, tr := range transports {
			rs := eruns[ekey{v, tr}]
			if len(rs) == 0 {
				continue
			}
			var rps, p50, p99, perM, rss []float64
			var non2xx float64
			sock := ""
			for _, r := range rs {
				rps, p50, p99, rss = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99), append(rss, r.rssKiB/1024)
				if r.cpuTicks >= 0 && r.requests > 0 {
					perM = append(perM, r.cpuTicks/100/r.requests*1e6)
				}
				non2xx += r.non2xx
				if r.sockErr != "" {
					sock = r.sockErr
				}
			}
			lo, hi := minmax(rps)
			p("| %s | %.0f [%.0f–%.0f] | %.2f | %.2f | %.2f | %.1f | %.0f | %s |\n",
				transportNames[tr], median(rps), lo, hi, median(p50), median(p99), median(perM), median(rss), non2xx, sock)
		}
		p("\n")
	}
}

// allocLines reads allocs.txt (pkg/agent TestAllocsPerNotify -v): per
// case, the allocations and bytes per NOTIFY.
func allocLines(dir string) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, l := range readLines(filepath.Join(dir, "allocs.txt")) {
		_, rest, ok := strings.Cut(l, "alloc_test.go:")
		if !ok {
			continue
		}
		_, rest, _ = strings.Cut(rest, ": ")
		name, nums, ok := strings.Cut(rest, ": ")
		if !ok {
			continue
		}
		var a, b float64
		if n, _ := fmt.Sscanf(nums, "%f allocations, %f bytes", &a, &b); n == 2 {
			out[name] = [2]float64{a, b}
		}
	}
	return out
}

// writeContextCost reports what a handler's use of its context costs: the
// allocation test's cases, and BenchmarkPipelined's plain and deriving
// handlers side by side (ctxcost.txt, go test -bench -benchmem -count 3).
func writeContextCost(p func(string, ...any), dir, rel string, allocs map[string][2]float64) {
	p("## What a handler's context costs\n\n")
	p("Each handler call gets a context of its own that stays valid after the call (README, \"Lifetime\"). Contexts are carved from slabs of 128; `Done` and derived contexts cost allocations of their own.\n\n")
	if len(allocs) > 0 {
		p("Whole stack, one NOTIFY at a time over loopback (pkg/agent `TestAllocsPerNotify`, in [`allocs.txt`](%s/allocs.txt)):\n\n", rel)
		p("| handler | allocations per NOTIFY | bytes per NOTIFY |\n|---|---:|---:|\n")
		names := make([]string, 0, len(allocs))
		for n := range allocs {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return allocs[names[i]][0] < allocs[names[j]][0] })
		for _, n := range names {
			p("| %s | %.3f | %.0f |\n", n, allocs[n][0], allocs[n][1])
		}
		p("\n")
	}
	type bkey struct{ handler, shape string }
	type bval struct{ rps, bytes, allocs []float64 }
	runs := map[bkey]*bval{}
	var shapes []string
	for _, l := range readLines(filepath.Join(dir, "ctxcost.txt")) {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkPipelined/handler=") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkPipelined/handler=")
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i]
		}
		h, shape, _ := strings.Cut(name, "/")
		k := bkey{h, shape}
		if runs[k] == nil {
			runs[k] = &bval{}
			if h == "plain" {
				shapes = append(shapes, shape)
			}
		}
		for i := 1; i+1 < len(f); i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "NOTIFY/s":
				runs[k].rps = append(runs[k].rps, v)
			case "B/op":
				runs[k].bytes = append(runs[k].bytes, v)
			case "allocs/op":
				runs[k].allocs = append(runs[k].allocs, v)
			}
		}
	}
	if len(shapes) == 0 {
		return
	}
	p("Throughput, agent and load generator in one process on both cores (pkg/agent `BenchmarkPipelined`, medians of 3, in [`ctxcost.txt`](%s/ctxcost.txt)); \"derive\" is the same handler calling `context.WithTimeout(ctx, 100ms)` and using the derived context:\n\n", rel)
	p("| shape | plain NOTIFY/s | derive NOTIFY/s | derive / plain | plain B, allocs per NOTIFY | derive B, allocs per NOTIFY |\n|---|---:|---:|---:|---:|---:|\n")
	for _, sh := range shapes {
		pl, dv := runs[bkey{"plain", sh}], runs[bkey{"derive", sh}]
		if pl == nil || dv == nil {
			continue
		}
		p("| %s | %.0f | %.0f | %.2f | %.0f, %.0f | %.0f, %.0f |\n", sh, median(pl.rps), median(dv.rps), median(dv.rps)/median(pl.rps),
			median(pl.bytes), median(pl.allocs), median(dv.bytes), median(dv.allocs))
	}
	p("\n")
}
