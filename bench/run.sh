#!/usr/bin/env bash
# bench/run.sh — spoe-forge against the floor (a naive inline agent) and
# against other Go SPOE libraries.
#
# 1. Direct: cmd/bench plays HAProxy against each benchmark agent of
#    bench/peers: spoeforge; inline, the floor (one goroutine per connection,
#    handler inline, no stages: the reference the report divides by, not a
#    competitor); negasus, criteo and dropmorepackets. Interleaved
#    (A B C D E A B C D E …), REPS times per scenario: 1x1, 64x1 (the shape
#    HAProxy 2.6 really sends), 4x16 and 16x64 (conns x pipeline) closed
#    loop, 16x64 with a 4 KiB body, and an open loop at RATE NOTIFY/s. Each
#    agent is restarted per run and pinned to CPU 1, the load to CPU 0.
#    cmd/bench reads the agent's CPU time and peak RSS from /proc over the
#    measured window.
# 2. End to end: the same agents behind real HAProxy 2.6, 3.2 and 3.4 (one
#    thread, CPU 0) driven by wrk (CPU 0) against a frontend that answers
#    from the agent's variables, plus HAProxy without SPOE as the ceiling.
# 2b. examples/ratelimit through HAProxy 3.2 with its in-process store and
#    with Redis, side by side (requests/s, p99).
# 3. The spoeforge agent over TCP, a unix socket and mutual TLS, direct and
#    behind HAProxy (bench/transports.sh; BENCH_SKIP_TRANSPORTS=1 skips it).
# 4. A CPU profile of the spoeforge agent at 16x64, the whole-stack
#    allocation test of pkg/agent, and pkg/agent's BenchmarkPipelined with a
#    handler that leaves its context alone and one that derives it.
#
# Raw results go to bench/results/<date>/ and bench/RESULTS.md is generated
# from them (bench/report, a module of its own), with its charts in
# bench/charts/. Knobs (environment): BENCH_DURATION (5s), BENCH_WARMUP (1s),
# BENCH_REPS (3), BENCH_RATE (10000), BENCH_AGENTS ("spoeforge inline
# negasus criteo dropmorepackets"), BENCH_SCENARIOS ("1x1 64x1 4x16 16x64
# 16x64-body4k open-4x16": the direct scenarios to run), BENCH_SKIP_E2E=1,
# BENCH_E2E_VERSIONS ("2.6 3.2 3.4": the HAProxy branches of part 2),
# BENCH_SKIP_TRANSPORTS=1, BENCH_SKIP_PROFILE=1 (part 4), BENCH_RESULTS_DIR
# (bench/results/<date>) and BENCH_REPORT_OUT (bench/RESULTS.md; the charts
# go to charts/ beside it). A quick look at the tooling, not a measurement,
# written away from the committed results:
#
#	bash bench/run.sh
#	BENCH_DURATION=1s BENCH_WARMUP=0s BENCH_REPS=1 BENCH_SCENARIOS="1x1 64x1" \
#	  BENCH_E2E_VERSIONS=3.2 BENCH_SKIP_TRANSPORTS=1 BENCH_SKIP_PROFILE=1 \
#	  BENCH_RESULTS_DIR=/tmp/smoke/results BENCH_REPORT_OUT=/tmp/smoke/RESULTS.md \
#	  bash bench/run.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

DURATION=${BENCH_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-1s}
REPS=${BENCH_REPS:-3}
RATE=${BENCH_RATE:-10000}
# inline is the floor: the reference the report divides by, not a competitor.
read -r -a AGENTS <<<"${BENCH_AGENTS:-spoeforge inline negasus criteo dropmorepackets}"
for a in "${AGENTS[@]}"; do
	case $a in
	spoeforge | inline | negasus | criteo | dropmorepackets) ;;
	*)
		echo "BENCH_AGENTS: no agent $a (there are: spoeforge inline negasus criteo dropmorepackets)" >&2
		exit 1
		;;
	esac
done
AGENT_PORT=${BENCH_AGENT_PORT:-23451}
FE_PORT=${BENCH_FE_PORT:-23480}
LOAD_CPU=0
AGENT_CPU=1

date_tag=$(date -u +%Y-%m-%d)
out=${BENCH_RESULTS_DIR:-bench/results/$date_tag}
report_out=${BENCH_REPORT_OUT:-bench/RESULTS.md}
rm -rf "$out"
mkdir -p "$out/direct" "$out/e2e"
abs_out=$(cd "$out" && pwd)
LOG_PREFIX=""
RECORD_FILE="$out/commands.txt"
. bench/lib.sh
note() { sed -i "\$s|\$|   # $*|" "$out/commands.txt"; }

# --- tools ---------------------------------------------------------------
need_wrk
cache="${SPOE_HAPROXY_CACHE:-/var/cache/spoe-forge/haproxy}"
if [[ -r "$cache/env.sh" ]]; then
	# shellcheck source=/dev/null
	. "$cache/env.sh"
fi
HAPROXY_26=${SPOE_HAPROXY_2_6:-/usr/sbin/haproxy}
HAPROXY_32=${SPOE_HAPROXY_3_2:-$cache/3.2/haproxy}
HAPROXY_34=${SPOE_HAPROXY_3_4:-$cache/3.4/haproxy}
read -r -a E2E_VERSIONS <<<"${BENCH_E2E_VERSIONS:-2.6 3.2 3.4}"
# haproxy_bin VERSION: the binary of an end-to-end branch.
haproxy_bin() {
	case $1 in
	2.6) echo "$HAPROXY_26" ;;
	3.2) echo "$HAPROXY_32" ;;
	3.4) echo "$HAPROXY_34" ;;
	*)
		log "no HAProxy $1 in bench/run.sh (BENCH_E2E_VERSIONS: 2.6, 3.2, 3.4)"
		return 1
		;;
	esac
}
# Every end-to-end binary must run before the long direct part starts.
if [[ "${BENCH_SKIP_E2E:-0}" != 1 ]]; then
	for version in "${E2E_VERSIONS[@]}"; do
		bin=$(haproxy_bin "$version")
		v_line=$("$bin" -v 2>/dev/null | head -n 1 || true)
		if [[ "$v_line" != "HAProxy version $version."* ]]; then
			log "HAProxy $version: $bin does not run or is not $version (scripts/install-haproxy.sh installs it)"
			exit 1
		fi
	done
fi

# The direct scenarios (part 1), checked before anything runs.
# name conns pipeline profile rate
all_scenarios=(
	"1x1 1 1 check-request 0"
	"64x1 64 1 check-request 0"
	"4x16 4 16 check-request 0"
	"16x64 16 64 check-request 0"
	"16x64-body4k 16 64 body4k 0"
	"open-4x16 4 16 check-request $RATE"
)
read -r -a wanted <<<"${BENCH_SCENARIOS:-1x1 64x1 4x16 16x64 16x64-body4k open-4x16}"
scenarios=()
for w in "${wanted[@]}"; do
	found=0
	for s in "${all_scenarios[@]}"; do
		if [[ "${s%% *}" == "$w" ]]; then
			scenarios+=("$s")
			found=1
		fi
	done
	if [[ $found == 0 ]]; then
		log "BENCH_SCENARIOS: no scenario $w (there are: 1x1 64x1 4x16 16x64 16x64-body4k open-4x16)"
		exit 1
	fi
done

log "building cmd/bench and the agents into $work"
go build -o "$work/bench" ./cmd/bench
# -mod=mod: the main module (replaced in) may have gained requirements since.
(cd bench/peers && go build -mod=mod -o "$work/" ./spoeforge ./inline ./negasus ./criteo ./dropmorepackets)
# bench is a module of its own (the report draws charts with gonum/plot).
(cd bench && go build -o "$work/report" ./report)

# --- environment ---------------------------------------------------------
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- pkg internal 2>/dev/null || echo ' (pkg/ or internal/ modified)')"
	echo "cores: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "kernel: $(uname -r)"
	echo "go: $(go version | cut -d' ' -f3-)"
	for version in "${E2E_VERSIONS[@]}"; do
		echo "haproxy $version: $("$(haproxy_bin "$version")" -v | head -1)"
	done
	echo "wrk: $(wrk --version 2>&1 | head -1)"
	(cd bench/peers && go list -m -f '{{.Path}} {{.Version}}' github.com/negasus/haproxy-spoe-go github.com/criteo/haproxy-spoe-go github.com/dropmorepackets/haproxy-go) |
		sed 's/^/library: /'
	echo "library: github.com/spoe-forge/spoe-forge (this tree, via replace)"
	echo "floor: bench/peers/inline (one goroutine per connection, handler inline; pkg/codec of this tree)"
	echo "agents: ${AGENTS[*]}"
	echo "scenarios: ${wanted[*]}"
	echo "duration: $DURATION"
	echo "warmup: $WARMUP"
	echo "reps: $REPS"
	echo "rate: $RATE"
	echo "pinning: agent taskset -c $AGENT_CPU; load (cmd/bench, or HAProxy nbthread 1 + wrk) taskset -c $LOAD_CPU"
} >"$out/env.txt"
cat "$out/env.txt" >&2


# start_agent NAME [extra flags]: runs the agent pinned to AGENT_CPU.
start_agent() {
	local name=$1
	shift
	taskset -c "$AGENT_CPU" "$work/$name" -addr "127.0.0.1:$AGENT_PORT" "$@" 2>>"$out/agents.log" &
	agent_pid=$!
	wait_port "$AGENT_PORT"
}



# --- 1. direct -----------------------------------------------------------
for s in "${scenarios[@]}"; do
	read -r name conns pipeline profile rate <<<"$s"
	for rep in $(seq "$REPS"); do
		for a in "${AGENTS[@]}"; do
			start_agent "$a"
			args=(-addr "127.0.0.1:$AGENT_PORT" -conns "$conns" -pipeline "$pipeline" -profile "$profile"
				-duration "$DURATION" -warmup "$WARMUP" -expect-var score,ok -ids 3.2 -json -q)
			if [[ "$rate" != 0 ]]; then args+=(-rate "$rate"); fi
			record taskset -c "$LOAD_CPU" bench "${args[@]}" -agent-pid PID
			note "PID: taskset -c $AGENT_CPU $a -addr 127.0.0.1:$AGENT_PORT"
			log "direct $name rep $rep: $a"
			taskset -c "$LOAD_CPU" "$work/bench" "${args[@]}" -agent-pid "$agent_pid" \
				>"$out/direct/$name.$a.$rep.json" 2>>"$out/direct/$name.$a.$rep.err" || log "  (bench exited $?)"
			stop_agent
		done
	done
done

# --- 2. end to end -------------------------------------------------------
e2e_config() { # VERSION SPOE(0|1) > haproxy.cfg
	local version=$1 spoe=$2
	haproxy_head "$FE_PORT"
	if [[ $spoe == 1 ]]; then
		cat <<CFG
    filter spoe engine bench config $abs_out/e2e/spoe.conf
    http-request return status 200 content-type text/plain lf-string "score=%[var(txn.bench.score)] ok=%[var(txn.bench.ok)]" if { var(txn.bench.score) -m found } { var(txn.bench.ok) -m bool }
    http-request return status 500 content-type text/plain lf-string "spoe_error=%[var(txn.bench.spoe_error)] agent_error=%[var(txn.bench.agent_error)]"
backend be_spoa
    mode $([[ $version == 2.6 ]] && echo tcp || echo spop)
    timeout connect 5s
    timeout server 3m
    server agent 127.0.0.1:$AGENT_PORT
CFG
	else
		cat <<CFG
    http-request return status 200 content-type text/plain lf-string "score=30 ok=1"
CFG
	fi
}
cat >"$out/e2e/spoe.conf" <<CFG
[bench]
spoe-agent bench-agent
    messages check-request
    option var-prefix bench
    option set-on-error spoe_error
    timeout hello 2s
    timeout idle 2m
    timeout processing 1s
    use-backend be_spoa
spoe-message check-request
    args ip=src path=path ua=req.hdr(user-agent) host=req.hdr(host) port=dst_port
    event on-frontend-http-request
CFG

UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
URL="http://127.0.0.1:$FE_PORT/api/v1/users/12345/orders/678"
WRK_CONNS=${BENCH_WRK_CONNS:-64}
if [[ "${BENCH_SKIP_E2E:-0}" != 1 ]]; then
	for version in "${E2E_VERSIONS[@]}"; do
		bin=$(haproxy_bin "$version")
		e2e_config "$version" 1 >"$out/e2e/haproxy-$version.cfg"
		e2e_config "$version" 0 >"$out/e2e/haproxy-$version-nospoe.cfg"
		for rep in $(seq "$REPS"); do
			for a in none "${AGENTS[@]}"; do
				cfg="$out/e2e/haproxy-$version.cfg"
				if [[ $a == none ]]; then
					cfg="$out/e2e/haproxy-$version-nospoe.cfg"
				else
					start_agent "$a"
				fi
				taskset -c "$LOAD_CPU" "$bin" -db -f "$cfg" >>"$out/e2e/haproxy.log" 2>&1 &
				haproxy_pid=$!
				wait_port "$FE_PORT"
				log "e2e HAProxy $version rep $rep: $a"
				wrk_args=(-t1 -c"$WRK_CONNS" --latency -H "User-Agent: $UA" "$URL")
				# Warm up (connections to the agent, JIT of nothing, caches).
				taskset -c "$LOAD_CPU" wrk -d"$WARMUP" "${wrk_args[@]}" >/dev/null 2>&1 || true
				record taskset -c "$LOAD_CPU" wrk -d"$DURATION" "${wrk_args[@]}"
				note "HAProxy $version: taskset -c $LOAD_CPU haproxy -db -f $(basename "$cfg"); agent: $a"
				c0=0
				if [[ $a != none ]]; then
					c0=$(cpu_of "$agent_pid")
					read -r r0 w0 <<<"$(io_of "$agent_pid")"
				fi
				f="$out/e2e/$version.$a.$rep"
				taskset -c "$LOAD_CPU" wrk -d"$DURATION" "${wrk_args[@]}" >"$f.wrk" 2>&1 || log "  (wrk exited $?)"
				if [[ $a != none ]]; then
					c1=$(cpu_of "$agent_pid")
					read -r r1 w1 <<<"$(io_of "$agent_pid")"
					printf 'agent_cpu_ticks: %s\npeak_rss_kib: %s\nagent_reads: %s\nagent_writes: %s\n' \
						"$((c1 - c0))" "$(hwm_of "$agent_pid")" "$((r1 - r0))" "$((w1 - w0))" >"$f.agent"
				fi
				kill -TERM "$haproxy_pid" 2>/dev/null || true
				wait "$haproxy_pid" 2>/dev/null || true
				haproxy_pid=""
				if [[ $a != none ]]; then stop_agent; fi
			done
		done
	done
fi

# --- 2b. examples/ratelimit: in-process store against Redis ---------------
# The ratelimit example (a module of its own) behind HAProxy 3.2, with
# limits no request reaches (-rate/-burst 1e9), once with its in-process
# store and once with Redis (Debian's redis-server on CPU 1 with the
# agent): what a shared store costs per request. BENCH_SKIP_RATELIMIT=1
# skips it.
if [[ "${BENCH_SKIP_RATELIMIT:-0}" != 1 ]]; then
	mkdir -p "$out/ratelimit"
	(cd examples/ratelimit && go build -o "$work/ratelimit" .)
	REDIS_PORT=${BENCH_REDIS_PORT:-23479}
	redis_bin=${SPOE_REDIS_SERVER:-/usr/bin/redis-server}
	rl_version=3.2
	rl_bin=$(haproxy_bin "$rl_version")
	{
		haproxy_head "$FE_PORT"
		cat <<CFG
    filter spoe engine ratelimit config $root/examples/ratelimit/spoe.conf
    http-request deny deny_status 429 if { var(txn.ratelimit.limited) -m bool }
    http-request return status 200 content-type text/plain lf-string "remaining=%[var(txn.ratelimit.remaining)]" if { var(txn.ratelimit.remaining) -m found }
    http-request return status 500 content-type text/plain lf-string "spoe_error=%[var(txn.ratelimit.spoe_error)] agent_error=%[var(txn.ratelimit.agent_error)]"
backend be_spoe_agents
    mode spop
    timeout connect 5s
    timeout server 3m
    server agent 127.0.0.1:$AGENT_PORT
CFG
	} >"$out/ratelimit/haproxy.cfg"
	for rep in $(seq "$REPS"); do
		for store in local redis; do
			args=(-addr "127.0.0.1:$AGENT_PORT" -rate 1e9 -burst 1000000000 -lame-duck 0 -store "$store")
			redis_pid=""
			if [[ $store == redis ]]; then
				taskset -c "$AGENT_CPU" "$redis_bin" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$work" >/dev/null 2>&1 &
				redis_pid=$!
				wait_port "$REDIS_PORT"
				args+=(-redis-addr "127.0.0.1:$REDIS_PORT")
			fi
			taskset -c "$AGENT_CPU" "$work/ratelimit" "${args[@]}" >>"$out/ratelimit/agent.log" 2>&1 &
			agent_pid=$!
			wait_port "$AGENT_PORT"
			taskset -c "$LOAD_CPU" "$rl_bin" -db -f "$out/ratelimit/haproxy.cfg" >>"$out/ratelimit/haproxy.log" 2>&1 &
			haproxy_pid=$!
			wait_port "$FE_PORT"
			log "ratelimit through HAProxy $rl_version rep $rep: $store store"
			wrk_args=(-t1 -c"$WRK_CONNS" --latency "http://127.0.0.1:$FE_PORT/")
			taskset -c "$LOAD_CPU" wrk -d"$WARMUP" "${wrk_args[@]}" >/dev/null 2>&1 || true
			record taskset -c "$LOAD_CPU" wrk -d"$DURATION" "${wrk_args[@]}"
			note "HAProxy $rl_version; agent: examples/ratelimit ${args[*]}"
			taskset -c "$LOAD_CPU" wrk -d"$DURATION" "${wrk_args[@]}" >"$out/ratelimit/$store.$rep.wrk" 2>&1 || log "  (wrk exited $?)"
			kill -TERM "$haproxy_pid" 2>/dev/null || true
			wait "$haproxy_pid" 2>/dev/null || true
			haproxy_pid=""
			kill -TERM "$agent_pid" 2>/dev/null || true
			wait "$agent_pid" 2>/dev/null || true
			agent_pid=""
			if [[ -n $redis_pid ]]; then
				kill -TERM "$redis_pid" 2>/dev/null || true
				wait "$redis_pid" 2>/dev/null || true
			fi
		done
	done
fi

# --- 2c. transports: TCP, unix socket, mutual TLS -------------------------
if [[ "${BENCH_SKIP_TRANSPORTS:-0}" != 1 ]]; then
	log "transports (bench/transports.sh)"
	TRANSPORTS_DIR="$out" TRANSPORTS_REPORT=0 bash bench/transports.sh
fi

# --- 3. profile and allocations ------------------------------------------
if [[ "${BENCH_SKIP_PROFILE:-0}" != 1 ]]; then
	log "CPU profile of spoeforge at 16x64"
	start_agent spoeforge -cpuprofile "$out/spoeforge-16x64.pprof"
	prof_args=(-addr "127.0.0.1:$AGENT_PORT" -conns 16 -pipeline 64 -duration 10s -warmup "$WARMUP" -expect-var score,ok -json -q)
	record taskset -c "$LOAD_CPU" bench "${prof_args[@]}"
	note "against: taskset -c $AGENT_CPU spoeforge -addr 127.0.0.1:$AGENT_PORT -cpuprofile spoeforge-16x64.pprof"
	taskset -c "$LOAD_CPU" "$work/bench" "${prof_args[@]}" -agent-pid "$agent_pid" >"$out/profile-run.json" 2>/dev/null || true
	stop_agent
	record go tool pprof -top -nodecount=40 spoeforge spoeforge-16x64.pprof
	go tool pprof -top -nodecount=40 "$work/spoeforge" "$out/spoeforge-16x64.pprof" >"$out/profile-top.txt" 2>/dev/null
	go tool pprof -top -cum -nodecount=40 "$work/spoeforge" "$out/spoeforge-16x64.pprof" >"$out/profile-top-cum.txt" 2>/dev/null

	# Where the time goes, by (overlapping) groups of functions: the samples
	# whose stack contains a match of each regexp.
	breakdown() { # LABEL REGEXP
		local line
		line=$(go tool pprof -top -nodecount=100000 -focus="$2" "$work/spoeforge" "$out/spoeforge-16x64.pprof" 2>/dev/null |
			grep -m1 'Showing nodes accounting for' || true)
		printf '%s\t%s\t%s\n' "$1" "$2" "${line#*accounting for }" >>"$out/profile-breakdown.txt"
	}
	: >"$out/profile-breakdown.txt"
	breakdown "conn writer: write(2) of ACK batches" 'syscall\.write$'
	breakdown "conn reader: read(2) of NOTIFYs" 'syscall\.read$'
	breakdown "NOTIFY decode (codec.Notify.Decode, in the reader's dispatch stage)" 'codec\.\(\*Notify\)\.Decode$'
	breakdown "handler body (2 args read, 2 vars set)" '^main\.main\.func1$'
	breakdown "handler context: per-call ctx from the slab, ended at return" 'hctx\.\(\*(Slab|Ctx)\)\.(GetManaged|Finish)$'
	breakdown "clock reads (runtime.nanotime: batch arrival, handler return)" '^runtime\.nanotime$'
	breakdown "hand-offs between stages: atomics, locks, WaitGroup" '^(sync/atomic\.|internal/sync\.\(\*Mutex\)|sync\.\(\*WaitGroup\))'
	breakdown "ACK to the writer (conn.Reply, outbox push)" 'conn\.\(\*Conn\)\.Reply$'
	breakdown "goroutine hand-offs: select, chan send/recv, park, ready" '^runtime\.(selectgo|chansend1|chanrecv1|chanrecv2|gopark|goready)$'
	breakdown "scheduler: schedule/findRunnable (idle and stealing)" '^runtime\.(schedule|findRunnable)$'
	breakdown "GC and allocation" '^runtime\.(gcBgMarkWorker|mallocgc)$'

	log "whole-stack allocation test"
	record go test -run '^TestAllocsPerNotify$' -count=1 -v ./pkg/agent/
	go test -run '^TestAllocsPerNotify$' -count=1 -v ./pkg/agent/ >"$out/allocs.txt" 2>&1 || true

	log "handler context cost: BenchmarkPipelined, plain and deriving handlers"
	record go test -run '^$' -bench BenchmarkPipelined -benchmem -benchtime 2s -count 3 ./pkg/agent/
	go test -run '^$' -bench BenchmarkPipelined -benchmem -benchtime 2s -count 3 ./pkg/agent/ >"$out/ctxcost.txt" 2>&1 || true
fi

# --- report --------------------------------------------------------------
find "$out" -name '*.err' -empty -delete
# bench/report is the module in bench/: go -C bench, paths relative to it.
from_bench() { if [[ $1 == /* ]]; then echo "$1"; else realpath -m --relative-to=bench "$1"; fi; }
record go -C bench run ./report -dir "$(from_bench "$out")" -out "$(from_bench "$report_out")"
"$work/report" -dir "$out" -out "$report_out"
log "wrote $report_out, its charts in $(dirname "$report_out")/charts, and $out"
