#!/usr/bin/env bash
# Makes the four HAProxy branches the end-to-end tests run against available
# on a Debian 12 (bookworm) amd64 machine:
#
#   2.6  Debian bookworm's own package, installed on the machine with apt-get
#        (no service is left running).
#   3.0  Debian trixie's package, NOT installed: downloaded with a private apt
#        state together with its runtime libraries, unpacked into
#        $CACHE/3.0 and run through a wrapper script that uses the unpacked
#        dynamic loader and libraries.
#   3.2  the same from the first suite that still ships the 3.2 branch
#        (sid, then forky, then trixie-backports), unpacked into $CACHE/3.2.
#   3.4  the haproxy package of Debian experimental with its runtime
#        libraries from sid (experimental is a partial suite: it carries
#        haproxy, not the libraries), unpacked into $CACHE/3.4; once sid or
#        forky ships the 3.4 branch, from there.
#
# The machine's apt configuration is never modified: the private downloads use
# a sources file made from the first stanza of the machine's own
# /etc/apt/sources.list.d/debian.sources (same mirror, other suite) and their
# own lists/cache/status directories under $CACHE/.apt.
#
# CACHE is ${SPOE_HAPROXY_CACHE:-/var/cache/spoe-forge/haproxy}. A version
# whose wrapper already answers "-v" with the right branch is not downloaded
# again, so a warm run takes well under a second.
#
# Output: progress goes to stderr; stdout gets only comment lines with the
# versions and "export" lines, so both of these work:
#   eval "$(bash scripts/install-haproxy.sh)"
#   bash scripts/install-haproxy.sh && . /var/cache/spoe-forge/haproxy/env.sh
# The exported variables are SPOE_HAPROXY_2_6, SPOE_HAPROXY_3_0,
# SPOE_HAPROXY_3_2 and SPOE_HAPROXY_3_4 (paths of the binaries or wrappers).
#
# It also runs scripts/install-redis.sh: Debian's redis-server, for the
# tests of examples/ratelimit's Redis store (internal/redistest).
set -euo pipefail

CACHE="${SPOE_HAPROXY_CACHE:-/var/cache/spoe-forge/haproxy}"
SYSTEM_SOURCES=/etc/apt/sources.list.d/debian.sources
SYSTEM_HAPROXY=/usr/sbin/haproxy
ARCH_TRIPLET=x86_64-linux-gnu
LOADER=ld-linux-x86-64.so.2

# Suites to try, in order, for each unpacked branch. "A:B" takes haproxy
# from suite A and its libraries from suite B; a plain "A" is "A:A".
SUITES_3_0=(trixie)
SUITES_3_2=(sid forky trixie-backports)
SUITES_3_4=(experimental:sid sid forky)

# Runtime libraries always downloaded next to haproxy (the "lib*" dependencies
# of haproxy are also followed recursively, see resolve_libs).
BASE_LIBS=(libc6 libssl3t64 liblua5.4-0 libjemalloc2 libpcre2-8-0 libcrypt1
	libopentracing-c-wrapper0t64 libopentracing1 libstdc++6 libgcc-s1 libzstd1)

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-haproxy: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# branch_of BIN: prints "X.Y" from "BIN -v", or nothing if BIN does not run.
branch_of() {
	local out
	out="$("$1" -v 2>/dev/null </dev/null)" || return 0
	sed -nE '1s/^HA-?Proxy version ([0-9]+\.[0-9]+)[.-].*/\1/p' <<<"$out"
}

# version_line BIN: the first line of "BIN -v".
version_line() { "$1" -v 2>/dev/null </dev/null | head -n 1; }

# is_branch BIN X.Y: true if BIN runs and is of branch X.Y.
is_branch() { [[ -x "$1" && "$(branch_of "$1")" == "$2" ]]; }

# ---------------------------------------------------------------------------
# 2.6 from bookworm, installed on the machine.

# A policy-rc.d that forbids service starts while the package is installed.
# An existing policy-rc.d that already denies everything is kept; any other is
# put back afterwards.
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
POLICY_CREATED=0
restore_policy() {
	if [[ -n "$POLICY_BACKUP" ]]; then
		mv -f "$POLICY_BACKUP" "$POLICY"
		POLICY_BACKUP=""
	elif [[ "$POLICY_CREATED" == 1 ]]; then
		rm -f "$POLICY"
		POLICY_CREATED=0
	fi
}
deny_service_starts() {
	if [[ -x "$POLICY" ]]; then
		local rc=0
		"$POLICY" haproxy start >/dev/null 2>&1 </dev/null || rc=$?
		[[ "$rc" == 101 ]] && return 0
		POLICY_BACKUP="$POLICY.spoe-forge-backup.$$"
		cp -p "$POLICY" "$POLICY_BACKUP"
	elif [[ -e "$POLICY" ]]; then
		POLICY_BACKUP="$POLICY.spoe-forge-backup.$$"
		cp -p "$POLICY" "$POLICY_BACKUP"
	else
		POLICY_CREATED=1
	fi
	trap restore_policy EXIT
	printf '#!/bin/sh\n# spoe-forge install-haproxy.sh: no service starts during the install\nexit 101\n' >"$POLICY"
	chmod 755 "$POLICY"
}

# Stops a haproxy service that the package may still have started (machines
# with systemd, or a policy-rc.d that let it through) and keeps it from
# starting at boot.
stop_haproxy_service() {
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now haproxy.service >/dev/null 2>&1 || true
	fi
	local pidfile pid
	for pidfile in /run/haproxy.pid /var/run/haproxy.pid; do
		[[ -r "$pidfile" ]] || continue
		while read -r pid; do
			[[ "$pid" =~ ^[0-9]+$ ]] || continue
			if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == haproxy ]]; then
				log "stopping the haproxy service the package started (pid $pid)"
				kill "$pid" 2>/dev/null || true
			fi
		done <"$pidfile"
	done
}

apt_install_haproxy() {
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		haproxy </dev/null >&2
}

ensure_haproxy_26() {
	if is_branch "$SYSTEM_HAPROXY" 2.6; then
		log "2.6: $SYSTEM_HAPROXY already installed"
		return 0
	fi
	[[ "$(id -u)" == 0 ]] || die "installing Debian's haproxy (2.6) needs root; run: sudo bash $0"
	log "2.6: installing Debian bookworm's haproxy package"
	# Refresh the package lists only when apt does not know a candidate.
	local cand
	cand="$(apt-cache policy haproxy 2>/dev/null | awk '/Candidate:/ {print $2}')"
	if [[ -z "$cand" || "$cand" == "(none)" ]]; then
		log "2.6: apt-get update"
		apt-get update -q </dev/null >&2
	fi
	deny_service_starts
	if ! apt_install_haproxy; then
		# Stale lists (files gone from the mirror): refresh once and retry.
		log "2.6: install failed; apt-get update and retry"
		apt-get update -q </dev/null >&2
		apt_install_haproxy
	fi
	restore_policy
	stop_haproxy_service
	is_branch "$SYSTEM_HAPROXY" 2.6 ||
		die "2.6: $SYSTEM_HAPROXY is not HAProxy 2.6 after the install: $(version_line "$SYSTEM_HAPROXY" || true)"
}

# ---------------------------------------------------------------------------
# 3.0, 3.2 and 3.4, unpacked from other suites with a private apt state.

# First stanza of the machine's debian.sources with Suites: set to $1.
make_sources() {
	[[ -r "$SYSTEM_SOURCES" ]] || die "$SYSTEM_SOURCES not found (is this Debian 12?)"
	awk -v suite="$1" '
		BEGIN { started = 0 }
		/^[[:space:]]*$/ { if (started) exit; next }
		{ started = 1 }
		/^Suites:/ { print "Suites: " suite; next }
		{ print }
	' "$SYSTEM_SOURCES"
}

# Sets APT_OPTS for a private apt state in directory $1 (made if needed) that
# only knows suite $2.
setup_private_apt() {
	local st="$1" suite="$2"
	mkdir -p "$st/lists/partial" "$st/cache/archives/partial" "$st/preferences.d"
	make_sources "$suite" >"$st/debian.sources"
	grep -q '^URIs:' "$st/debian.sources" || die "no URIs: line in the first stanza of $SYSTEM_SOURCES"
	: >"$st/status"
	APT_OPTS=(
		-q
		-o "Dir::Etc::sourcelist=$st/debian.sources"
		-o Dir::Etc::sourceparts=-
		-o "Dir::Etc::preferences=$st/preferences"
		-o "Dir::Etc::preferencesparts=$st/preferences.d"
		-o "Dir::State::Lists=$st/lists"
		-o "Dir::State::status=$st/status"
		-o "Dir::Cache=$st/cache"
		-o "Dir::Cache::archives=$st/cache/archives"
		-o Dir::Cache::pkgcache=pkgcache.bin
		-o Dir::Cache::srcpkgcache=srcpkgcache.bin
		-o APT::Sandbox::User=root
		-o Acquire::Languages=none
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
	)
}

# read_suite BRANCH SUITE: makes the private state of SUITE under
# $CACHE/.apt and reads its package list. Sets APT_OPTS; false (with the log
# shown) if the update failed.
read_suite() {
	local branch="$1" suite="$2" st="$CACHE/.apt/$2"
	setup_private_apt "$st" "$suite"
	log "$branch: reading the package list of $suite"
	if ! apt-get "${APT_OPTS[@]}" update </dev/null >"$st/update.log" 2>&1; then
		log "$branch: apt-get update for $suite failed:"
		cat "$st/update.log" >&2
		return 1
	fi
}

# Candidate version of package $1 in the private state of APT_OPTS (empty if
# none).
candidate() {
	apt-cache "${APT_OPTS[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | sed 's/^(none)$//'
}

# lib_depends PKG: the "lib*" packages PKG (the candidate version, in the
# private state of APT_OPTS) depends on.
lib_depends() {
	apt-cache "${APT_OPTS[@]}" depends --no-recommends --no-suggests \
		--no-conflicts --no-breaks --no-replaces --no-enhances "$1" 2>/dev/null |
		awk '$1 ~ /^\|?(Pre)?Depends:$/ && $2 !~ /^</ {sub(/:.*/, "", $2); if ($2 ~ /^lib/) print $2}'
}

# resolve_libs HAPROXY_OPTS_VAR LIB_OPTS_VAR: prints the runtime libraries to
# download: BASE_LIBS plus the "lib*" dependencies of haproxy (read in the
# state named by the first array variable), followed recursively through
# "lib*" packages (read in the state named by the second). Only names that
# exist in the library suite are printed.
resolve_libs() {
	local -n hopts="$1" lopts="$2"
	local -A seen=()
	local queue=() out=() p d
	APT_OPTS=("${hopts[@]}")
	mapfile -t queue < <(lib_depends haproxy)
	queue+=("${BASE_LIBS[@]}")
	APT_OPTS=("${lopts[@]}")
	while ((${#queue[@]})); do
		p="${queue[0]}"
		queue=("${queue[@]:1}")
		[[ -z "${seen[$p]:-}" ]] || continue
		seen[$p]=1
		out+=("$p")
		while read -r d; do
			[[ -n "${seen[$d]:-}" ]] || queue+=("$d")
		done < <(lib_depends "$p")
	done
	for p in "${out[@]}"; do
		[[ -n "$(candidate "$p")" ]] && printf '%s\n' "$p"
	done
	return 0
}

write_wrapper() {
	cat >"$1" <<'EOF'
#!/bin/sh
# HAProxy unpacked from a Debian package by spoe-forge's
# scripts/install-haproxy.sh, run with its own dynamic loader and libraries.
D=$(dirname "$(readlink -f "$0")")
L=$D/usr/lib/x86_64-linux-gnu
exec "$L/ld-linux-x86-64.so.2" --library-path "$L" "$D/usr/sbin/haproxy" "$@"
EOF
	chmod 755 "$1"
}

# ensure_unpacked X.Y SUITE...: makes $CACHE/X.Y/haproxy from the first suite
# whose haproxy is of branch X.Y. A SUITE "A:B" takes haproxy from A and the
# libraries from B.
ensure_unpacked() {
	local branch="$1"
	shift
	local dest="$CACHE/$branch" wrapper="$CACHE/$branch/haproxy"
	if is_branch "$wrapper" "$branch"; then
		log "$branch: $wrapper already there"
		return 0
	fi
	[[ "$(dpkg --print-architecture)" == amd64 ]] || die "$branch: only amd64 is supported"
	local spec hsuite lsuite ver="" found="" libfrom=""
	local -a HOPTS=() LOPTS=()
	for spec in "$@"; do
		hsuite="${spec%%:*}"
		lsuite="${spec#*:}"
		read_suite "$branch" "$hsuite" || continue
		ver="$(candidate haproxy)"
		log "$branch: $hsuite ships haproxy ${ver:-(none)}"
		[[ "$ver" == "$branch".* ]] || continue
		HOPTS=("${APT_OPTS[@]}")
		if [[ "$lsuite" == "$hsuite" ]]; then
			LOPTS=("${APT_OPTS[@]}")
		else
			read_suite "$branch" "$lsuite" || continue
			LOPTS=("${APT_OPTS[@]}")
		fi
		found="$hsuite"
		libfrom="$lsuite"
		break
	done
	[[ -n "$found" ]] || die "$branch: none of the suites ($*) ships an haproxy $branch.x"

	local work
	work="$(mktemp -d "$CACHE/.work-$branch.XXXXXX")"
	mkdir -p "$work/debs" "$work/root"
	local libs=()
	mapfile -t libs < <(resolve_libs HOPTS LOPTS)
	((${#libs[@]})) || die "$branch: no runtime library found in $libfrom"
	log "$branch: downloading haproxy $ver from $found and ${#libs[@]} libraries from $libfrom"
	(cd "$work/debs" && apt-get "${HOPTS[@]}" download "haproxy=$ver" </dev/null >&2)
	(cd "$work/debs" && apt-get "${LOPTS[@]}" download "${libs[@]}" </dev/null >&2)
	local deb
	for deb in "$work/debs"/*.deb; do
		dpkg -x "$deb" "$work/root"
	done
	local L="$work/root/usr/lib/$ARCH_TRIPLET"
	[[ -e "$L/$LOADER" ]] || die "$branch: $LOADER not found in the unpacked libc6"
	[[ -x "$work/root/usr/sbin/haproxy" ]] || die "$branch: usr/sbin/haproxy not found in the package"
	# Every shared library haproxy needs must resolve inside the folder.
	local missing
	missing="$("$L/$LOADER" --library-path "$L" --list "$work/root/usr/sbin/haproxy" 2>&1 | grep 'not found' || true)"
	[[ -z "$missing" ]] || die "$branch: libraries missing from the download (add their packages to BASE_LIBS):
$missing"
	write_wrapper "$work/root/haproxy"
	{
		if [[ "$libfrom" == "$found" ]]; then
			printf 'haproxy %s from Debian %s\n' "$ver" "$found"
		else
			printf 'haproxy %s from Debian %s, libraries from Debian %s\n' "$ver" "$found" "$libfrom"
		fi
		(cd "$work/debs" && ls -1 -- *.deb)
	} >"$work/root/SOURCE"
	is_branch "$work/root/haproxy" "$branch" ||
		die "$branch: the unpacked haproxy does not run: $("$work/root/haproxy" -v 2>&1 | head -n 5 || true)"
	rm -rf "$dest"
	mv "$work/root" "$dest"
	rm -rf "$work" "$CACHE/.apt/$found" "$CACHE/.apt/$libfrom"
	log "$branch: $(version_line "$wrapper")"
}

# ---------------------------------------------------------------------------

mkdir -p "$CACHE" 2>/dev/null || true
# One install at a time per cache (e.g. two test runs started together). A
# cache this user cannot write to is fine as long as nothing needs doing.
if [[ -w "$CACHE" ]]; then
	exec 9>>"$CACHE/.lock"
	flock 9
fi

ensure_haproxy_26
ensure_unpacked 3.0 "${SUITES_3_0[@]}"
ensure_unpacked 3.2 "${SUITES_3_2[@]}"
ensure_unpacked 3.4 "${SUITES_3_4[@]}"

# Redis, for the tests of examples/ratelimit's shared store: Debian's
# redis-server, by its own script (stderr only, like the rest).
bash "$(dirname "${BASH_SOURCE[0]}")/install-redis.sh"

# Final check: each binary runs and is of its branch.
is_branch "$SYSTEM_HAPROXY" 2.6 || die "2.6: $SYSTEM_HAPROXY -v does not say 2.6"
is_branch "$CACHE/3.0/haproxy" 3.0 || die "3.0: $CACHE/3.0/haproxy -v does not say 3.0"
is_branch "$CACHE/3.2/haproxy" 3.2 || die "3.2: $CACHE/3.2/haproxy -v does not say 3.2"
is_branch "$CACHE/3.4/haproxy" 3.4 || die "3.4: $CACHE/3.4/haproxy -v does not say 3.4"

env_file="$CACHE/env.sh"
env_text="$(
	printf '# HAProxy binaries for spoe-forge tests (written by scripts/install-haproxy.sh)\n'
	printf '# 2.6: %s\n' "$(version_line "$SYSTEM_HAPROXY")"
	printf '# 3.0: %s\n' "$(version_line "$CACHE/3.0/haproxy")"
	printf '# 3.2: %s\n' "$(version_line "$CACHE/3.2/haproxy")"
	printf '# 3.4: %s\n' "$(version_line "$CACHE/3.4/haproxy")"
	printf 'export SPOE_HAPROXY_2_6=%q\n' "$SYSTEM_HAPROXY"
	printf 'export SPOE_HAPROXY_3_0=%q\n' "$CACHE/3.0/haproxy"
	printf 'export SPOE_HAPROXY_3_2=%q\n' "$CACHE/3.2/haproxy"
	printf 'export SPOE_HAPROXY_3_4=%q\n' "$CACHE/3.4/haproxy"
)"
if [[ -f "$env_file" && "$(cat "$env_file")" == "$env_text" ]]; then
	log "$env_file is up to date"
elif [[ -w "$CACHE" ]]; then
	printf '%s\n' "$env_text" >"$env_file.tmp"
	mv -f "$env_file.tmp" "$env_file"
	log "wrote $env_file"
else
	log "WARNING: cannot write $env_file; use the lines below instead"
fi
printf '%s\n' "$env_text"
