#!/usr/bin/env bash
# Installs Debian's redis-server package (7.0 on Debian 12), which the tests
# of examples/ratelimit's Redis store start on a loopback port of their own
# (internal/redistest). No service is left running: the package's service
# start is denied during the install, and stopped if it ran anyway.
#
# scripts/install-haproxy.sh calls this script; it can also run on its own
# (as root). A machine that already has /usr/bin/redis-server is left as it
# is, so a warm run takes well under a second. Progress goes to stderr.
set -euo pipefail

REDIS=/usr/bin/redis-server
POLICY=/usr/sbin/policy-rc.d

log() { printf 'install-redis: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

if [[ -x "$REDIS" ]] && "$REDIS" --version >/dev/null 2>&1; then
	log "$("$REDIS" --version) already installed"
	exit 0
fi
[[ "$(id -u)" == 0 ]] || die "installing Debian's redis-server needs root; run: sudo bash $0"

export DEBIAN_FRONTEND=noninteractive

# Forbid service starts during the install, then put things back.
backup=""
created=0
restore() {
	if [[ -n "$backup" ]]; then
		mv -f "$backup" "$POLICY"
	elif [[ "$created" == 1 ]]; then
		rm -f "$POLICY"
	fi
}
if [[ -e "$POLICY" ]]; then
	backup="$POLICY.spoe-forge-redis.$$"
	cp -p "$POLICY" "$backup"
else
	created=1
fi
trap restore EXIT
printf '#!/bin/sh\n# spoe-forge install-redis.sh: no service starts during the install\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

install() {
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		redis-server </dev/null >&2
}
cand="$(apt-cache policy redis-server 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [[ -z "$cand" || "$cand" == "(none)" ]]; then
	log "apt-get update"
	apt-get update -q </dev/null >&2
fi
log "installing Debian's redis-server package"
if ! install; then
	log "install failed; apt-get update and retry"
	apt-get update -q </dev/null >&2
	install
fi
restore
trap - EXIT

# A service the package started anyway (systemd machines): stop it, and
# keep it from starting at boot. The tests start their own.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now redis-server.service >/dev/null 2>&1 || true
fi
for pidfile in /run/redis/redis-server.pid /var/run/redis/redis-server.pid; do
	[[ -r "$pidfile" ]] || continue
	pid="$(cat "$pidfile")"
	if [[ "$pid" =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-server ]]; then
		log "stopping the redis-server service the package started (pid $pid)"
		kill "$pid" 2>/dev/null || true
	fi
done

"$REDIS" --version >/dev/null 2>&1 || die "$REDIS does not run after the install"
log "$("$REDIS" --version)"
