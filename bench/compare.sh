#!/usr/bin/env bash
# bench/compare.sh — compare the micro-benchmarks of two commits.
#
#	bash bench/compare.sh OLD [NEW]     # NEW defaults to HEAD; "." is the working tree
#
# Each commit is checked out with `git worktree add --detach` into a
# temporary folder, and the repository's benchmarks run there,
#
#	go test -run='^$' -bench=$BENCH -benchmem -count=1 -benchtime=$BENCHTIME $PKGS
#
# COUNT times per commit, alternating OLD NEW OLD NEW … so that the
# machine's drift hits both alike. The two outputs are then compared with
# benchstat (installed on first use into a private GOBIN,
# $SPOE_TOOLS_CACHE/benchstat, default ~/.cache/spoe-forge/tools/benchstat).
# Raw outputs and the comparison go to $OUT (default: a new temporary
# folder, printed at the end).
#
# Environment: COUNT (10), PKGS (./pkg/...), BENCH (.), BENCHTIME (1s), OUT.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

if [[ $# -lt 1 || $# -gt 2 ]]; then
	sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 2
fi
old_rev=$1
new_rev=${2:-HEAD}
count=${COUNT:-10}
pkgs=${PKGS:-./pkg/...}
bench=${BENCH:-.}
benchtime=${BENCHTIME:-1s}

tools="${SPOE_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/spoe-forge/tools}/benchstat"
if [[ ! -x "$tools/benchstat" ]]; then
	echo "compare.sh: installing benchstat into $tools" >&2
	mkdir -p "$tools"
	GOBIN="$tools" go install golang.org/x/perf/cmd/benchstat@latest
fi

out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
tmp=$(mktemp -d)
worktrees=()
cleanup() {
	for w in "${worktrees[@]}"; do
		git -C "$root" worktree remove --force "$w" >/dev/null 2>&1 || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# checkout REV NAME: sets dir to the folder holding REV ("." is this tree
# as is). Not run in a subshell, so that cleanup sees the worktree.
checkout() {
	local rev=$1 name=$2 sha
	if [[ $rev == . ]]; then
		dir=$root
		return
	fi
	sha=$(git -C "$root" rev-parse --verify "$rev^{commit}")
	git -C "$root" worktree add --detach "$tmp/$name" "$sha" >/dev/null 2>&1
	worktrees+=("$tmp/$name")
	dir=$tmp/$name
}
checkout "$old_rev" old
old_dir=$dir
checkout "$new_rev" new
new_dir=$dir
old_desc=$(git -C "$root" rev-parse --short "$old_rev^{commit}" 2>/dev/null || echo "$old_rev")
new_desc=$(if [[ $new_rev == . ]]; then echo "working tree"; else git -C "$root" rev-parse --short "$new_rev^{commit}"; fi)

{
	echo "old: $old_rev ($old_desc)"
	echo "new: $new_rev ($new_desc)"
	echo "cores: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "go: $(go version | cut -d' ' -f3-)"
	echo "command: go test -run='^\$' -bench='$bench' -benchmem -count=1 -benchtime=$benchtime $pkgs  (x$count per commit, alternating)"
} | tee "$out/env.txt" >&2

: >"$out/old.txt"
: >"$out/new.txt"
for i in $(seq "$count"); do
	for side in old new; do
		dir=$old_dir
		if [[ $side == new ]]; then dir=$new_dir; fi
		echo "compare.sh: run $i/$count, $side" >&2
		(cd "$dir" && go test -run='^$' -bench="$bench" -benchmem -count=1 -benchtime="$benchtime" $pkgs) >>"$out/$side.txt"
	done
done

"$tools/benchstat" old="$out/old.txt" new="$out/new.txt" | tee "$out/benchstat.txt"
echo "compare.sh: raw results and benchstat output in $out" >&2
