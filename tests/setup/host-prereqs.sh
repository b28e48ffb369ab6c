#!/usr/bin/env bash
# Install the Debian packages this machine needs (idempotent), for one of two purposes:
#   host-prereqs.sh sandbox   what `make quickstart` needs: the engine, debootstrap for the local
#                             base images, git for the image builds
#   host-prereqs.sh test      the above plus what `make test` needs: shellcheck, nftables and
#                             iproute2 for the firewall tests, and the real servers the check tests
#                             start on loopback (PostgreSQL, MariaDB, sshd, Exim, Dovecot) and the
#                             headless browser of the health-page test
# On a workstation that is not Debian, install the equivalents yourself (see bindep.txt).
set -euo pipefail
sandbox=(docker.io debootstrap git)
tests=(nftables iproute2 shellcheck rsync postgresql openssh-server mariadb-server mariadb-client
       exim4-daemon-light dovecot-imapd chromium)
case "${1:-}" in
  sandbox) packages=("${sandbox[@]}") ;;
  test) packages=("${sandbox[@]}" "${tests[@]}") ;;
  *) echo "usage: $0 sandbox|test" >&2; exit 2 ;;
esac
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
