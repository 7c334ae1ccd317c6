# bench/lib.sh: what bench/run.sh and bench/transports.sh share, sourced by
# both after they set LOG_PREFIX (the log lines' prefix) and RECORD_FILE
# (where record appends command lines). It makes the scratch folder $work,
# removed at exit with the agent and HAProxy still running ($agent_pid,
# $haproxy_pid).

work=$(mktemp -d)
agent_pid=""
haproxy_pid=""
cleanup() {
	[[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null || true
	[[ -n "$haproxy_pid" ]] && kill "$haproxy_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

log() { printf '[%s] %s%s\n' "$(date -u +%H:%M:%S)" "${LOG_PREFIX:-}" "$*" >&2; }

# record appends a command line to $RECORD_FILE (the arguments shell-quoted).
record() {
	local q
	printf -v q '%q ' "$@"
	printf '%s\n' "${q% }" >>"$RECORD_FILE"
}

# need_wrk installs Debian's wrk if it is missing (with sudo unless root).
need_wrk() {
	command -v wrk >/dev/null && return 0
	log "installing wrk"
	if [[ $(id -u) == 0 ]]; then
		apt-get update -qq && apt-get install -y -qq wrk >/dev/null
	else
		sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null
	fi
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
	local port=$1
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	log "nothing listens on port $port"
	return 1
}

stop_agent() {
	kill -TERM "$agent_pid" 2>/dev/null || true
	wait "$agent_pid" 2>/dev/null || true
	agent_pid=""
}

# cpu_of PID: utime+stime in clock ticks.
cpu_of() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# hwm_of PID: peak RSS in KiB.
hwm_of() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# io_of PID: read and write system calls so far ("syscr syscw").
io_of() { awk '/^syscr:/ { r = $2 } /^syscw:/ { w = $2 } END { print r, w }' "/proc/$1/io"; }

# haproxy_head PORT: the start of every benchmark configuration: one thread,
# HTTP defaults, and the frontend bound to 127.0.0.1:PORT (its rules follow).
haproxy_head() {
	cat <<CFG
global
    nbthread 1
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$1
CFG
}
