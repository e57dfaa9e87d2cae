#!/usr/bin/env bash
# Installs what the local stack needs from Debian's packages, only what is missing; with
# --tests also what only the tests need (a headless browser for the operator pages' tests
# and screenshots, HAProxy, nftables, iptables and libnetfilter_queue for the fault suite,
# Prometheus's promtool).
# Idempotent and quick when everything is present; `make up` runs it every time.
set -euo pipefail

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|2[0-9])'; then
  missing+=(openjdk-17-jre-headless)
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${1:-}" = "--tests" ]; then
  # The operator pages' tests and `make screenshots` drive it over the DevTools protocol.
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # An L4 balancer in front of two gateways (the scale-out test).
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  # The fault suite cuts links between its hosts (network namespaces) with nft.
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
  # It delays links in userspace (this kernel has no netem): iptables queues their packets
  # (NFQUEUE) to tests.faults.delay, whose binding (NetfilterQueue) pip compiles against
  # libnetfilter_queue, so these come before `make test-tools` runs pip.
  command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
  [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || missing+=(libnetfilter-queue-dev)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=(python3-dev)
  # promtool checks the Prometheus rules and scrape config (config/prometheus/).
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "bootstrap: installing ${missing[*]} from Debian's packages" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: not root; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian's maintainer scripts would start the system-wide services; the project runs its own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" -eq 1 ] && rm -f "$policy"
echo "bootstrap: installed ${missing[*]}" >&2
