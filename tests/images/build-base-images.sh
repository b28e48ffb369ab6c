#!/usr/bin/env bash
# Build the local base images that the tests (and `make quickstart`) use where no registry is
# reachable (docs/testing.md):
#   vantage-test/debian12:bookworm          minimal Debian 12 with Python 3 (BASE_IMAGE of images/*)
#   vantage-test/debian12-systemd:bookworm  the same plus systemd, for Molecule / sandbox hosts
# Images already present are reused; pass --force to rebuild. Needs root, debootstrap, docker.
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
BASE_IMAGE=${VANTAGE_BASE_IMAGE:-vantage-test/debian12:bookworm}
SYSTEMD_IMAGE=${VANTAGE_SYSTEMD_IMAGE:-vantage-test/debian12-systemd:bookworm}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf '[base-images] %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "$FORCE" = 0 ] && have_image "$BASE_IMAGE" && have_image "$SYSTEMD_IMAGE"; then
  log "reusing $BASE_IMAGE and $SYSTEMD_IMAGE"
  exit 0
fi
[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap)"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }

work=$(mktemp -d /var/tmp/vantage-rootfs.XXXXXX)
cleanup() {
  for m in proc sys dev/pts dev; do umount "$work/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs
start=$(date +%s)

log "debootstrap $SUITE (minbase) into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tzdata \
  "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# Keep images small and free of cached packages; `apt-get update` refreshes the lists when needed.
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n' \
  >"$rootfs/etc/dpkg/dpkg.cfg.d/01-nodoc"

strip_rootfs() {
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
  : >"$rootfs/etc/machine-id"
}

import_rootfs() { # image, changes...
  local image=$1; shift
  local args=()
  for c in "$@"; do args+=(--change "$c"); done
  tar -C "$rootfs" --numeric-owner -c . | docker import "${args[@]}" - "$image" >/dev/null
  log "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

strip_rootfs
import_rootfs "$BASE_IMAGE" 'ENV LANG=C.UTF-8' 'CMD ["/bin/bash"]'

log "adding systemd and what Ansible needs for $SYSTEMD_IMAGE"
for m in proc sys dev dev/pts; do mkdir -p "$rootfs/$m"; mount --bind "/$m" "$rootfs/$m"; done
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" /bin/sh -ec '
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends systemd systemd-sysv dbus python3-apt sudo \
    iproute2 procps busybox-static gnupg curl >/dev/null
  # Units that make no sense in a container.
  systemctl mask getty.target systemd-udevd.service systemd-udev-trigger.service \
    systemd-logind.service systemd-remount-fs.service sys-kernel-debug.mount \
    sys-kernel-tracing.mount dev-hugepages.mount systemd-firstboot.service >/dev/null 2>&1 || true
'
for m in dev/pts dev sys proc; do umount "$rootfs/$m"; done
: >"$rootfs/etc/resolv.conf"
strip_rootfs
import_rootfs "$SYSTEMD_IMAGE" 'ENV container=docker' 'ENV LANG=C.UTF-8' \
  'CMD ["/lib/systemd/systemd"]'
log "done in $(( $(date +%s) - start )) s"
