#!/bin/sh
# Generates the development certificates of the compose stack's mutual TLS
# between HAProxy and the agent, once: a throwaway CA, the agent's server
# certificate, and client certificates for HAProxy and for the tools
# (spoe-forge healthcheck, cmd/bench). Nothing here is for production: the
# CA's key is deleted once it has signed, so that these certificates cannot
# be extended; run it again on an empty folder for new ones.
#
#   CERTS_DIR=/certs sh docker/gen-dev-certs.sh     # what compose's certs service runs
#   CERTS_DIR=./dev-certs sh docker/gen-dev-certs.sh
#
# Environment (all optional):
#   CERTS_DIR    where the files go (/certs)
#   CERTS_DAYS   validity in days (365)
#   AGENT_NAME   the agent's DNS name in its certificate, besides localhost
#                and 127.0.0.1 (agent: the compose service name); HAProxy's
#                "verifyhost" checks it
#   AGENT_UID    owner of the agent's files (agent.key, check.pem): the user
#                the agent runs as (the image's 65532); unset: unchanged
#   HAPROXY_UID  owner of haproxy.pem: the user HAProxy runs as (the
#                official image's 99); unset: unchanged
#
# It writes, in CERTS_DIR:
#   ca.crt        the CA: HAProxy's ca-file, the agent's client CA file
#   agent.crt     the agent's certificate, agent.key its key
#   haproxy.pem   HAProxy's client certificate and key (its "crt")
#   check.pem     the tools' client certificate and key
#
# If ca.crt is already there it does nothing: certificates are generated at
# the first start and kept in the volume.
set -eu

dir=${CERTS_DIR:-/certs}
days=${CERTS_DAYS:-365}
name=${AGENT_NAME:-agent}

if [ -s "$dir/ca.crt" ]; then
	echo "gen-dev-certs: $dir/ca.crt exists; keeping the certificates there"
	exit 0
fi
command -v openssl >/dev/null || {
	echo "gen-dev-certs: openssl is needed" >&2
	exit 1
}
mkdir -p "$dir"
umask 077
work=$(mktemp -d "$dir/.gen.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# newkey NAME: a P-256 key in NAME.key.
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

newkey ca
openssl req -x509 -new -key ca.key -days "$days" -subj "/O=spoe-forge development/CN=spoe-forge dev CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out ca.crt

# issue NAME USAGE [SAN]: NAME.crt signed by the CA, for USAGE
# (serverAuth or clientAuth).
issue() {
	newkey "$1"
	openssl req -new -key "$1.key" -subj "/O=spoe-forge development/CN=$1" -out "$1.csr"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=$2"
		if [ -n "${3:-}" ]; then echo "subjectAltName=$3"; fi
	} >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
		-days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}

issue agent serverAuth "DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1"
issue haproxy clientAuth
issue check clientAuth
cat haproxy.crt haproxy.key >haproxy.pem
cat check.crt check.key >check.pem

chmod 0444 ca.crt agent.crt
chmod 0400 agent.key haproxy.pem check.pem
if [ -n "${AGENT_UID:-}" ]; then chown "$AGENT_UID" agent.key check.pem; fi
if [ -n "${HAPROXY_UID:-}" ]; then chown "$HAPROXY_UID" haproxy.pem; fi
# ca.crt last: its presence says the set is complete.
mv agent.crt agent.key haproxy.pem check.pem "$dir/"
mv ca.crt "$dir/"
echo "gen-dev-certs: wrote ca.crt, agent.crt, agent.key, haproxy.pem, check.pem in $dir (valid $days days; the CA key is gone)"
