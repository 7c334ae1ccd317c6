#!/usr/bin/env bash
# Soak and scale runs, outside CI (issue: never crash, never leak):
#
#   bash bench/soak.sh                 # 10 minutes of open-loop load, then 10,000 idle connections
#   SOAK_MINUTES=2 SOAK_RATE=5000 bash bench/soak.sh
#
# Soak: cmd/example (with -metrics-addr) on CPU 1, cmd/bench in open loop at
# SOAK_RATE NOTIFY/s on CPU 0, in one-minute segments over 4 connections x
# 16 in flight; in the middle of each segment the agent's resident memory,
# goroutines and open connections are read from its /metrics. The result is a
# table per minute: p50/p99/max latency (from each NOTIFY's intended send
# time), errors, RSS, goroutines.
#
# Scale: scripts/scale.sh (10,000 idle connections after HELLO) and its
# memory figures.
#
# Both land in bench/results/<date>/section-*.md, and bench/RESULTS.md is
# regenerated (bench/report) from the latest results folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

minutes=${SOAK_MINUTES:-10}
rate=${SOAK_RATE:-20000}
dir=${SOAK_DIR:-$(ls -d bench/results/*/ | sort | tail -1)}
dir=${dir%/}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/example" ./cmd/example
go build -o "$work/bench" ./cmd/bench
# bench is a module of its own (the report draws charts with gonum/plot).
(cd bench && go build -o "$work/report" ./report)

port=23470
mport=23471
taskset -c 1 "$work/example" -addr "127.0.0.1:$port" -metrics-addr "127.0.0.1:$mport" -log-level warn >"$work/agent.log" 2>&1 &
agent=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$mport/metrics" >/dev/null && break; sleep 0.1; done

metric() { curl -fs "http://127.0.0.1:$mport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

mkdir -p "$dir/soak"
{
	echo "## Soak: $minutes minutes of open-loop load"
	echo
	echo "\`bash bench/soak.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores): cmd/example on CPU 1, \`cmd/bench -rate $rate -conns 4 -pipeline 16\` (open loop, latency from each NOTIFY's intended send time) on CPU 0, one-minute segments. RSS, goroutines and connections are read from the agent's /metrics in the middle of each segment."
	echo
	echo "| minute | NOTIFY/s | p50 µs | p99 µs | max µs | errors | agent RSS MiB | goroutines | connections |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$work/section.md"
for m in $(seq "$minutes"); do
	taskset -c 0 "$work/bench" -addr "127.0.0.1:$port" -conns 4 -pipeline 16 -rate "$rate" \
		-duration 60s -warmup 1s -json -q -expect-var score >"$dir/soak/minute-$m.json" 2>"$dir/soak/minute-$m.err" &
	b=$!
	sleep 30
	rss=$(metric process_resident_memory_bytes)
	gor=$(metric go_goroutines)
	conns=$(metric spoe_connections_open)
	wait $b
	python3 - "$dir/soak/minute-$m.json" "$m" "$rss" "$gor" "$conns" >>"$work/section.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency"]
print("| %s | %.0f | %.0f | %.0f | %.0f | %d | %.1f | %s | %s |" % (
    sys.argv[2], d["notify_per_sec"], l["p50_us"], l["p99_us"], l["max_us"], d["errors"],
    float(sys.argv[3]) / 2**20, sys.argv[4], sys.argv[5]))
PY
	tail -1 "$work/section.md"
done
echo >>"$work/section.md"
echo "After the load: $(metric go_goroutines) goroutines, $(metric spoe_connections_open) open connections, RSS $(metric process_resident_memory_bytes | awk '{printf "%.1f MiB", $1/1048576}')." >>"$work/section.md"
kill "$agent"; wait "$agent" 2>/dev/null || true
cp "$work/section.md" "$dir/section-1-soak.md"

# Scale.
out=$(bash scripts/scale.sh 2>&1 | tee "$dir/scale.log" | grep -E 'idle connections|round trip' || true)
{
	echo "## Scale: idle connections"
	echo
	echo "\`bash scripts/scale.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC')): 10,000 connections after HELLO, opened by a child process, held idle; the agent's memory measured with runtime.MemStats and /proc."
	echo
	echo '```'
	echo "$out" | sed 's/^ *//'
	echo '```'
} >"$dir/section-2-scale.md"

"$work/report" -dir "$dir" -out bench/RESULTS.md
echo "soak.sh: wrote $dir/section-*.md and bench/RESULTS.md"
