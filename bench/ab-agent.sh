#!/usr/bin/env bash
# bench/ab-agent.sh OLD NEW OUTDIR [COUNT]: an interleaved A/B of the
# spoeforge benchmark agent (bench/peers/spoeforge) at two commits, driven by
# cmd/bench of this tree (the load stays the same), the agent on CPU 1 and
# the load on CPU 0, at 16x64, 4x16, 64x1 and 1x1 (3 s each, COUNT rounds,
# 6 by default). Prints benchstat of the agent's CPU per million NOTIFY,
# NOTIFY/s and p99, and leaves benchstat's input in OUTDIR.
# Needs benchstat (go install golang.org/x/perf/cmd/benchstat@latest); the
# worktrees stay for the next run (git worktree remove them when done).
set -euo pipefail
root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
old=$1 new=$2 out=$3 count=${4:-6}
mkdir -p "$out"
(cd "$root" && go build -o "$out/bench" ./cmd/bench)
for c in "$old" "$new"; do
  d=${TMPDIR:-/tmp}/spoe-ab-$c
  [[ -d $d ]] || git -C "$root" worktree add -q --detach "$d" "$c"
  (cd "$d/bench/peers" && go build -mod=mod -o "$out/agent-$c" ./spoeforge)
done
: >"$out/old-agent.txt"; : >"$out/new-agent.txt"
port=23651
for i in $(seq "$count"); do
  for side in old new; do
    c=$old; [[ $side == new ]] && c=$new
    taskset -c 1 "$out/agent-$c" -addr 127.0.0.1:$port 2>/dev/null & ap=$!
    sleep 0.3
    for sc in "16x64 16 64" "4x16 4 16" "64x1 64 1" "1x1 1 1"; do
      set -- $sc
      taskset -c 0 "$out/bench" -addr 127.0.0.1:$port -conns $2 -pipeline $3 -duration 3s -warmup 1s -expect-var score,ok -ids 3.2 -json -q -agent-pid $ap > "$out/r.json"
      python3 - "$out/r.json" "$1" >>"$out/$side-agent.txt" <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); a=d['agent']; l=d['latency']
print(f"BenchmarkAgent/scenario={sys.argv[2]} 1 {a['cpu_s_per_million_notify']*1000:.1f} agent-ms/Mnotify {d['notify_per_sec']:.0f} notify/s {l['p99_us']:.0f} p99-µs")
PY
    done
    kill $ap; wait $ap 2>/dev/null || true
  done
done
benchstat "$out/old-agent.txt" "$out/new-agent.txt" | tee "$out/benchstat-agent.txt"
