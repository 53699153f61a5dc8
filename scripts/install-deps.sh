#!/usr/bin/env bash
# Installs what teamdwarm's tests and demo need from Debian's packages, if it
# is missing: Open vSwitch (the real LACP peer), iproute2 (namespaces, veth)
# and tcpdump (captures for debugging). Go itself is expected on PATH.
set -euo pipefail
need=()
command -v ovs-vswitchd >/dev/null 2>&1 || need+=(openvswitch-switch)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The distribution's Open vSwitch service is not used: tests start their own
# daemons inside a network namespace, with private directories.
command -v go >/dev/null 2>&1 || { echo "install-deps: go is not on PATH" >&2; exit 1; }
