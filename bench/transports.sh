#!/usr/bin/env bash
# bench/transports.sh — the spoeforge benchmark agent over TCP, a unix socket
# and mutual TLS, side by side in one run:
#
# 1. Direct: cmd/bench plays HAProxy (CPU 0) against the agent (CPU 1) over
#    each transport: 1x1 and 16x64 (conns x pipeline), closed loop.
# 2. End to end: the agent behind real HAProxy 2.6 and 3.2 (one thread,
#    CPU 0) driven by wrk (CPU 0), HAProxy's server line being
#    "127.0.0.1:PORT", "unix@PATH" or "127.0.0.1:PORT ssl verify required
#    ca-file ... crt ... verifyhost agent".
#
# Runs are interleaved (tcp unix mtls tcp unix mtls …), REPS times, the agent
# restarted for each. Certificates come from docker/gen-dev-certs.sh
# (openssl). Raw results go to <dir>/transports/ (dir: TRANSPORTS_DIR, else
# the latest bench/results folder) and bench/RESULTS.md is regenerated
# through bench/report, which renders them as its "Transports" section.
# bench/run.sh runs this too, into its own results folder (skip with
# BENCH_SKIP_TRANSPORTS=1).
#
# Knobs (environment): BENCH_DURATION (5s), BENCH_WARMUP (1s), BENCH_REPS (3),
# BENCH_WRK_CONNS (64), TRANSPORTS_DIR, TRANSPORTS_REPORT (1: regenerate
# RESULTS.md; run.sh sets 0 and does it itself).
#
#	bash bench/transports.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-1s}
REPS=${BENCH_REPS:-3}
WRK_CONNS=${BENCH_WRK_CONNS:-64}
AGENT_PORT=${BENCH_AGENT_PORT:-23461}
FE_PORT=${BENCH_FE_PORT:-23490}
LOAD_CPU=0
AGENT_CPU=1
TRANSPORTS=(tcp unix mtls)

dir=${TRANSPORTS_DIR:-$(ls -d bench/results/*/ 2>/dev/null | sort | tail -1)}
dir=${dir%/}
if [[ -z "$dir" ]]; then
	dir="bench/results/$(date -u +%Y-%m-%d)"
fi
mkdir -p "$dir"
out="$(cd "$dir" && pwd)/transports"
rm -rf "$out"
mkdir -p "$out/direct" "$out/e2e"

LOG_PREFIX="transports: "
RECORD_FILE="$dir/commands.txt"
. bench/lib.sh

need_wrk
for tool in wrk openssl taskset; do
	command -v "$tool" >/dev/null || {
		log "$tool is needed"
		exit 1
	}
done
cache="${SPOE_HAPROXY_CACHE:-/var/cache/spoe-forge/haproxy}"
if [[ -r "$cache/env.sh" ]]; then
	# shellcheck source=/dev/null
	. "$cache/env.sh"
fi
HAPROXY_26=${SPOE_HAPROXY_2_6:-/usr/sbin/haproxy}
HAPROXY_32=${SPOE_HAPROXY_3_2:-$cache/3.2/haproxy}

log "building cmd/bench, the spoeforge agent and bench/report into $work"
go build -o "$work/bench" ./cmd/bench
(cd bench/peers && go build -mod=mod -o "$work/" ./spoeforge)
# bench is a module of its own (the report draws charts with gonum/plot).
(cd bench && go build -o "$work/report" ./report)
CERTS_DIR="$work/certs" AGENT_NAME=agent sh docker/gen-dev-certs.sh >&2
certs="$work/certs"
sock="$work/agent.sock"

{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "duration: $DURATION (warm-up $WARMUP), reps: $REPS, wrk -t1 -c$WRK_CONNS"
	echo "openssl (certificates): $(openssl version)"
	echo "haproxy 2.6: $("$HAPROXY_26" -v | head -1)"
	echo "haproxy 3.2: $("$HAPROXY_32" -v | head -1)"
} >"$out/env.txt"

# agent_flags TRANSPORT: the agent's listen flags.
agent_flags() {
	case $1 in
	tcp) echo "-addr 127.0.0.1:$AGENT_PORT" ;;
	unix) echo "-addr unix:$sock" ;;
	mtls) echo "-addr 127.0.0.1:$AGENT_PORT -tls-cert $certs/agent.crt -tls-key $certs/agent.key -tls-client-ca $certs/ca.crt" ;;
	esac
}
# bench_flags TRANSPORT: how cmd/bench reaches the agent.
bench_flags() {
	case $1 in
	tcp) echo "-addr 127.0.0.1:$AGENT_PORT" ;;
	unix) echo "-addr unix:$sock" ;;
	mtls) echo "-addr 127.0.0.1:$AGENT_PORT -tls-ca $certs/ca.crt -tls-cert $certs/check.pem -tls-server-name agent" ;;
	esac
}
# server_line TRANSPORT: HAProxy's server line.
server_line() {
	case $1 in
	tcp) echo "server agent 127.0.0.1:$AGENT_PORT" ;;
	unix) echo "server agent unix@$sock" ;;
	mtls) echo "server agent 127.0.0.1:$AGENT_PORT ssl verify required ca-file $certs/ca.crt crt $certs/haproxy.pem verifyhost agent" ;;
	esac
}

start_agent() { # TRANSPORT
	local flags
	read -r -a flags <<<"$(agent_flags "$1")"
	taskset -c "$AGENT_CPU" "$work/spoeforge" "${flags[@]}" 2>>"$out/agents.log" &
	agent_pid=$!
	local probe
	read -r -a probe <<<"$(bench_flags "$1")"
	for _ in $(seq 200); do
		if "$work/bench" "${probe[@]}" -conns 1 -pipeline 1 -n 1 -warmup 0s -q >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.05
	done
	log "the agent does not answer over $1"
	return 1
}
haproxy_config() { # VERSION TRANSPORT
	local version=$1 tr=$2
	haproxy_head "$FE_PORT"
	cat <<CFG
    filter spoe engine bench config $out/e2e/spoe.conf
    http-request return status 200 content-type text/plain lf-string "score=%[var(txn.bench.score)] ok=%[var(txn.bench.ok)]" if { var(txn.bench.score) -m found } { var(txn.bench.ok) -m bool }
    http-request return status 500 content-type text/plain lf-string "spoe_error=%[var(txn.bench.spoe_error)] agent_error=%[var(txn.bench.agent_error)]"
backend be_spoa
    mode $([[ $version == 2.6 ]] && echo tcp || echo spop)
    timeout connect 5s
    timeout server 3m
    $(server_line "$tr")
CFG
}
cat >"$out/e2e/spoe.conf" <<CFG
[bench]
spoe-agent bench-agent
    messages check-request
    option var-prefix bench
    option set-on-error spoe_error
    # 2.6 only (3.1+ ignore it): without it, a burst at start can make
    # HAProxy 2.6 open a connection per event while TLS handshakes are slow
    # (README, "Connection storms").
    maxconnrate 100
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
scenarios=("1x1 1 1" "16x64 16 64")

for rep in $(seq "$REPS"); do
	for tr in "${TRANSPORTS[@]}"; do
		log "rep $rep: $tr"
		start_agent "$tr"
		read -r -a bflags <<<"$(bench_flags "$tr")"
		for s in "${scenarios[@]}"; do
			read -r name conns pipeline <<<"$s"
			args=("${bflags[@]}" -conns "$conns" -pipeline "$pipeline" -duration "$DURATION" -warmup "$WARMUP"
				-expect-var score,ok -ids 3.2 -json -q)
			record taskset -c "$LOAD_CPU" bench "${args[@]}" -agent-pid PID
			taskset -c "$LOAD_CPU" "$work/bench" "${args[@]}" -agent-pid "$agent_pid" \
				>"$out/direct/$name.$tr.$rep.json" 2>>"$out/direct/$name.$tr.$rep.err" || log "  (bench exited $?)"
		done
		for version in 2.6 3.2; do
			bin=$HAPROXY_26
			if [[ $version == 3.2 ]]; then bin=$HAPROXY_32; fi
			cfg="$out/e2e/haproxy-$version-$tr.cfg"
			haproxy_config "$version" "$tr" >"$cfg"
			taskset -c "$LOAD_CPU" "$bin" -db -f "$cfg" >>"$out/e2e/haproxy.log" 2>&1 &
			haproxy_pid=$!
			wait_port "$FE_PORT" || {
				log "HAProxy $version did not start; see $out/e2e/haproxy.log"
				exit 1
			}
			wrk_args=(-t1 -c"$WRK_CONNS" --latency -H "User-Agent: $UA" "$URL")
			taskset -c "$LOAD_CPU" wrk -d"$WARMUP" "${wrk_args[@]}" >/dev/null 2>&1 || true
			record taskset -c "$LOAD_CPU" wrk -d"$DURATION" "${wrk_args[@]}"
			c0=$(cpu_of "$agent_pid")
			f="$out/e2e/$version.$tr.$rep"
			taskset -c "$LOAD_CPU" wrk -d"$DURATION" "${wrk_args[@]}" >"$f.wrk" 2>&1 || log "  (wrk exited $?)"
			c1=$(cpu_of "$agent_pid")
			printf 'agent_cpu_ticks: %s\npeak_rss_kib: %s\n' "$((c1 - c0))" "$(hwm_of "$agent_pid")" >"$f.agent"
			kill -TERM "$haproxy_pid" 2>/dev/null || true
			wait "$haproxy_pid" 2>/dev/null || true
			haproxy_pid=""
		done
		stop_agent
	done
done

find "$out" -name '*.err' -empty -delete
if [[ "${TRANSPORTS_REPORT:-1}" == 1 ]]; then
	if [[ -r "$dir/env.txt" ]]; then
		"$work/report" -dir "$dir" -out bench/RESULTS.md
		log "wrote bench/RESULTS.md and $out"
	else
		log "wrote $out ($dir has no env.txt from bench/run.sh: run bench/report on a full results folder)"
	fi
fi
