#!/usr/bin/env bash
# Make sure a Docker engine answers: start it through systemd when systemd runs, otherwise start
# dockerd directly (these CI machines have no init system) and wait until it answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "no Docker engine: run tests/setup/host-prereqs.sh (docker.io)" >&2; exit 1; }
if [ -d /run/systemd/system ]; then
  systemctl start docker
else
  log=${VANTAGE_DOCKERD_LOG:-/var/log/vantage-dockerd.log}
  echo "[engine] starting dockerd (log: $log)" >&2
  nohup dockerd >"$log" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not answer within 60 s; see ${log:-journalctl -u docker}" >&2
exit 1
