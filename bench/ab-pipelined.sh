#!/usr/bin/env bash
# bench/ab-pipelined.sh OLD NEW OUTDIR [BENCH_REGEX] [COUNT]: an interleaved
# A/B of pkg/agent's in-process benchmarks (BenchmarkPipelined by default) at
# two commits, for benchstat: the test binaries are built in worktrees under
# $TMPDIR and run alternately, COUNT times each (6). Client and agent share
# the process, so this measures both; bench/ab-agent.sh measures the agent
# alone. Needs benchstat (go install golang.org/x/perf/cmd/benchstat@latest); the
# worktrees stay for the next run (git worktree remove them when done).
set -euo pipefail
root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
old=$1 new=$2 out=$3 re=${4:-'BenchmarkPipelined/handler=plain'} count=${5:-6}
mkdir -p "$out"
for c in "$old" "$new"; do
  d=${TMPDIR:-/tmp}/spoe-ab-$c
  [[ -d $d ]] || git -C "$root" worktree add -q --detach "$d" "$c"
  (cd "$d" && go test -c -o "$out/agent-$c.test" ./pkg/agent/)
done
: >"$out/old.txt"; : >"$out/new.txt"
for i in $(seq "$count"); do
  (cd ${TMPDIR:-/tmp}/spoe-ab-$old/pkg/agent && "$out/agent-$old.test" -test.run '^$' -test.bench "$re" -test.benchmem -test.benchtime 1s -test.count 1) >>"$out/old.txt"
  (cd ${TMPDIR:-/tmp}/spoe-ab-$new/pkg/agent && "$out/agent-$new.test" -test.run '^$' -test.bench "$re" -test.benchmem -test.benchtime 1s -test.count 1) >>"$out/new.txt"
done
benchstat "$out/old.txt" "$out/new.txt" | tee "$out/benchstat.txt"
