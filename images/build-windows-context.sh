#!/usr/bin/env bash
# Prepare the build context of the Windows checkpoint image (images/checkpoint/Dockerfile.windows)
# on a build host with the project's development venv; build the image on a Windows host from it.
#
#   images/build-windows-context.sh [--python 3.13] [--out DIR]
#
# 1. Builds the project's wheel (pure Python) from a clean copy of the sources.
# 2. Downloads win_amd64 wheels of every runtime dependency for CPython --python (default 3.13;
#    Windows needs 3.13 or newer, see docs/windows.md), versions pinned to what the development
#    venv has installed, binary wheels only.
# 3. Copies images/checkpoint/Dockerfile.windows next to them and writes SHA256SUMS.
#
# The result, DIR (default build/images/windows-context), is what `docker build` on the Windows
# host reads: nothing is downloaded while the image builds. Prints DIR and the number of wheels.
# Environment: VANTAGE_PYTHON (host interpreter with pip; default .venv/bin/python).
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${VANTAGE_PYTHON:-$TOP/.venv/bin/python}
TARGET_PYTHON=3.13
OUT=$TOP/build/images/windows-context

log() { printf '[windows-context] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while [ $# -gt 0 ]; do
  case $1 in
    --python) [ $# -ge 2 ] || die "--python needs a value"; TARGET_PYTHON=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $TARGET_PYTHON =~ ^3\.([0-9]+)$ ]] || die "--python must be 3.N, got $TARGET_PYTHON"
[ "${BASH_REMATCH[1]}" -ge 13 ] || die "--python must be 3.13 or newer: older Windows Pythons lack os.fchmod, which key files need"
[ -x "$PYTHON" ] || die "no Python at $PYTHON (run 'make venv' or set VANTAGE_PYTHON)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/checkpoint" "$work/src"

# A clean copy of the sources (no stale build/lib in the wheel). Links are followed:
# src/vantage/_collection links to files of plugins/module_utils, which the wheel carries as they
# are (the update engine's container code, docs/auto-update.md).
git -C "$TOP" ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md src \
  | (cd "$TOP" && tar -c --dereference --ignore-failed-read --null -T - -f - 2>/dev/null) | tar -x -C "$work/src"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$OUT/wheels" "$work/src" \
  || die "pip wheel of the project failed"
project=$(find "$OUT/wheels" -name 'vantage_checkpoint-*-py3-none-any.whl' -print -quit)
[ -n "$project" ] || die "the project's wheel is not pure Python (py3-none-any)"

# Same versions as the development venv, where the tests ran; Windows binaries only.
"$PYTHON" -m pip freeze --exclude-editable >"$work/constraints.txt"
log "downloading win_amd64 wheels for CPython $TARGET_PYTHON"
: >"$work/download.log"

# pip evaluates environment markers for the machine it runs on, not for --platform: it would ask for
# what only Linux needs (the agent's uvloop; sys_platform != "win32") and leave out what only Windows
# needs (psycopg's tzdata, the Docker SDK's pywin32). So the dependencies are resolved here: read every
# wheel's requirements with Windows' markers, download what is missing without its dependencies, and
# go on until nothing is missing.
for _ in $(seq 1 20); do
  "$PYTHON" - "$OUT/wheels" "$TARGET_PYTHON" >"$work/missing.txt" <<'PY'
import pathlib, sys, zipfile
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

directory, python = pathlib.Path(sys.argv[1]), sys.argv[2]
windows = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64",
           "python_version": python, "python_full_version": python + ".0", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "platform_release": "", "platform_version": "", "extra": ""}
wheels = {parse_wheel_filename(path.name)[0]: path for path in directory.glob("*.whl")}
missing = set()
for name, path in wheels.items():
    extras = {"", "postgres"} if name == "vantage-checkpoint" else {""}
    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist: "):
            continue
        requirement = Requirement(line[len("Requires-Dist: "):])
        wanted = requirement.marker is None or any(
            requirement.marker.evaluate(dict(windows, extra=extra)) for extra in extras)
        if wanted and canonicalize_name(requirement.name) not in wheels:
            requirement.marker = None
            missing.add(str(requirement))
sys.stdout.write("".join(line + "\n" for line in sorted(missing)))
PY
  [ -s "$work/missing.txt" ] || break
  "$PYTHON" -m pip download --disable-pip-version-check --dest "$OUT/wheels" --find-links "$OUT/wheels" \
    --only-binary :all: --platform win_amd64 --python-version "$TARGET_PYTHON" --implementation cp --no-deps \
    --constraint "$work/constraints.txt" --requirement "$work/missing.txt" >>"$work/download.log" 2>&1 \
    || { tail -n 30 "$work/download.log" >&2; die "no complete set of win_amd64 wheels for CPython $TARGET_PYTHON"; }
done
[ ! -s "$work/missing.txt" ] || die "dependencies still missing: $(cat "$work/missing.txt")"

cp "$TOP/images/checkpoint/Dockerfile.windows" "$OUT/checkpoint/Dockerfile.windows"
(cd "$OUT" && find wheels checkpoint -type f -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)
log "$(find "$OUT/wheels" -name '*.whl' | wc -l) wheels; build on the Windows host with:"
log "  docker build --file checkpoint\\Dockerfile.windows --build-arg LTSC=<ltsc2019|ltsc2022|ltsc2025> ..."
echo "$OUT"
