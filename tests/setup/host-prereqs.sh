#!/usr/bin/env bash
# Install the Debian packages the tests need on the machine that runs them (idempotent).
# On a workstation that is not Debian, install the equivalents yourself (see bindep.txt).
set -euo pipefail
packages=(docker.io debootstrap nftables iproute2 shellcheck git rsync postgresql openssh-server mariadb-server mariadb-client exim4-daemon-light dovecot-imapd chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing packages: ${missing[*]} — install them (as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "[prereqs] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The server packages (mail, databases, sshd) are for test-owned instances on loopback high ports:
# a temporary policy-rc.d that exits 101 keeps the system daemons from starting (no open ports).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
