#!/usr/bin/env bash
# Import the built collection artifact the way Galaxy does (galaxy-importer, local checks only,
# tests/setup/galaxy-importer.cfg) and fail on any warning or error it logs.
# usage: tests/setup/galaxy-importer.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/build/galaxy-importer
rm -rf "$out" && mkdir -p "$out/tmp"
"$top/.venv/bin/ansible-galaxy" collection build --output-path "$out" "$top" >/dev/null
artifact=$(ls "$out"/vantage-checkpoint-*.tar.gz)
cd "$out"
set +e
GALAXY_IMPORTER_CONFIG=$top/tests/setup/galaxy-importer.cfg GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=$out/tmp \
  PATH=$top/.venv/bin:$PATH "$top/.venv/bin/python" -m galaxy_importer.main "$artifact" >"$out/import.log" 2>&1
status=$?
set -e
grep -v '^Loading ' "$out/import.log" || true
if [ "$status" -ne 0 ] || grep -qE '^(WARNING|ERROR)' "$out/import.log" \
   || ! grep -q '^Importer processing completed successfully' "$out/import.log"; then
  echo "galaxy-importer refused $(basename "$artifact") or warned (exit $status): see $out/import.log" >&2
  exit 1
fi
echo "galaxy-importer: $(basename "$artifact") imports without warnings"
