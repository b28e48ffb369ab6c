#!/usr/bin/env bash
# Build the Vantage images vantage/checkpoint and vantage/control-plane (docs/images.md).
#
#   images/build.sh [--base-image IMAGE] [--force] [--only checkpoint|control-plane]
#
# 1. Builds wheels on the host for the project and every runtime dependency (PyPI through the
#    host's pip settings, versions pinned to what the development venv has installed), from a
#    clean copy of the sources, into build/images/context/wheels/.
# 2. Stages images/<name>/ and the wheels as the build context and runs `docker build` with
#    --build-arg BASE_IMAGE=…; the images install the wheels offline (--no-index).
# 3. Tags vantage/<name>:<version> (version from src/vantage/__init__.py). An image whose
#    io.vantage.inputs-hash label (wheel contents + images/<name>/ + base image id) equals the
#    new inputs is reused, not rebuilt.
#
# The base image must carry the Python the wheels were built for (the host's, 3.11):
# python:3.11-slim-bookworm by default, or $VANTAGE_BASE_IMAGE when set (the tests use the
# local vantage-test/debian12:bookworm, which needs no registry).
#
# Environment: VANTAGE_BASE_IMAGE (default base), VANTAGE_PYTHON (host interpreter with pip;
# default .venv/bin/python), VANTAGE_IMAGE_PREFIX (default "vantage/").
# Prints one line per image: "<tag> <image id> built|reused".
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${VANTAGE_PYTHON:-$TOP/.venv/bin/python}
BASE_IMAGE=${VANTAGE_BASE_IMAGE:-python:3.11-slim-bookworm}
PREFIX=${VANTAGE_IMAGE_PREFIX:-vantage/}
WORK=$TOP/build/images
CONTEXT=$WORK/context
HASH_LABEL=io.vantage.inputs-hash
# Bump when this script changes what goes into an image without changing its inputs.
RECIPE=1
FORCE=0
IMAGES=(checkpoint control-plane)

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while [ $# -gt 0 ]; do
  case $1 in
    --base-image) [ $# -ge 2 ] || die "--base-image needs a value"; BASE_IMAGE=$2; shift 2 ;;
    --base-image=*) BASE_IMAGE=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a value"; IMAGES=("$2"); shift 2 ;;
    --only=*) IMAGES=("${1#*=}"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
for name in "${IMAGES[@]}"; do
  [ -f "$TOP/images/$name/Dockerfile" ] || die "no image named '$name' (images/$name/Dockerfile)"
done
[ -x "$PYTHON" ] || die "no Python at $PYTHON (run 'make venv' or set VANTAGE_PYTHON)"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (run 'make engine')"

# One build at a time per checkout: concurrent runs (parallel Molecule scenarios, a developer's
# second shell) share build/images and the image tags.
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock 9

VERSION=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$TOP/src/vantage/__init__.py")
[ -n "$VERSION" ] || die "cannot read __version__ from src/vantage/__init__.py"
REVISION=$(git -C "$TOP" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$REVISION" != unknown ] && [ -n "$(git -C "$TOP" status --porcelain -- src pyproject.toml images 2>/dev/null)" ]; then
  REVISION=$REVISION-dirty
fi
SOURCE=$(sed -n 's/^repository: *//p' "$TOP/galaxy.yml" 2>/dev/null | head -n1)
SOURCE=${SOURCE:-unknown}

# ----------------------------------------------------------------------------- base image
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE is not here; pulling it"
  docker pull -q "$BASE_IMAGE" >/dev/null || die "cannot pull $BASE_IMAGE. Without a registry, build the local base \
(tests/images/build-base-images.sh) and pass --base-image vantage-test/debian12:bookworm"
fi
BASE_ID=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")

# ----------------------------------------------------------------------------- wheels
start=$(date +%s)
rm -rf "$CONTEXT" "$WORK/src"
mkdir -p "$CONTEXT/wheels" "$WORK/src"
# A clean copy of the sources: setuptools keeps a build/lib of its own, where files deleted
# from src/ would otherwise survive into the wheel. Tracked and untracked files that git does
# not ignore; a tracked file deleted from the work tree is skipped (--ignore-failed-read). Links
# are followed: src/vantage/_collection links to files of plugins/module_utils, which the wheel
# carries as they are (docs/auto-update.md).
if git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$TOP" ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md src \
    | (cd "$TOP" && tar -c --dereference --ignore-failed-read --null -T - -f - 2>/dev/null) | tar -x -C "$WORK/src"
else
  cp -rL "$TOP/pyproject.toml" "$TOP/README.md" "$TOP/src" "$WORK/src/"
fi
find "$WORK/src" -name __pycache__ -type d -prune -exec rm -rf {} +
# Same versions as the development venv, where the tests ran.
"$PYTHON" -m pip freeze --exclude-editable >"$WORK/constraints.txt"
log "building wheels with $("$PYTHON" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])')"
"$PYTHON" -m pip wheel --disable-pip-version-check --wheel-dir "$CONTEXT/wheels" \
  --constraint "$WORK/constraints.txt" "$WORK/src[postgres]" >"$WORK/wheels.log" 2>&1 \
  || { tail -n 30 "$WORK/wheels.log" >&2; die "pip wheel failed (log: $WORK/wheels.log)"; }
rm -rf "$WORK/src"
log "$(find "$CONTEXT/wheels" -name '*.whl' | wc -l) wheels in $(( $(date +%s) - start )) s"

# The collection's container code in the wheel must be the collection's files, byte for byte.
"$PYTHON" - "$CONTEXT/wheels" "$TOP/plugins/module_utils" <<'PY' || die "the wheel does not carry the collection's container code"
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("vantage_checkpoint-*.whl"))
links = sorted(p for p in pathlib.Path(sys.argv[2]).parent.parent.joinpath("src/vantage/_collection").glob("_*.py") if p.is_symlink())
with zipfile.ZipFile(wheel) as archive:
    for link in links:
        packaged = archive.read("vantage/_collection/" + link.name)
        if packaged != pathlib.Path(sys.argv[2], link.name).read_bytes():
            sys.exit(f"{wheel.name}: vantage/_collection/{link.name} differs from plugins/module_utils/{link.name}")
print(f"[images] {wheel.name} carries plugins/module_utils/{{{','.join(l.name for l in links)}}}", file=sys.stderr)
PY

# Hashes of the wheels' contents (not of the zip files, whose timestamps change per build).
"$PYTHON" - "$CONTEXT/wheels" >"$WORK/wheels.sha256" <<'PY'
import hashlib, pathlib, sys, zipfile
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(info.filename.encode() + b"\0" + hashlib.sha256(archive.read(info)).digest())
    print(digest.hexdigest(), wheel.name)
PY

inputs_hash() { # image name; the inputs are kept in build/images/<name>.inputs for a diff
  {
    echo "recipe $RECIPE"
    echo "base $BASE_IMAGE $BASE_ID"
    (cd "$TOP/images/$1" && find . -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum)
    cat "$WORK/wheels.sha256"
  } | tee "$WORK/$1.inputs" | sha256sum | cut -d' ' -f1
}

# ----------------------------------------------------------------------------- images
python_checked=0
for name in "${IMAGES[@]}"; do
  tag="$PREFIX$name:$VERSION"
  hash=$(inputs_hash "$name")
  old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  if [ "$FORCE" = 0 ] && [ -n "$old_id" ] \
     && [ "$(docker image inspect -f "{{index .Config.Labels \"$HASH_LABEL\"}}" "$tag")" = "$hash" ]; then
    echo "$tag $old_id reused"
    continue
  fi
  if [ "$python_checked" = 0 ]; then
    host_py=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    base_py=$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" \
      -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
      || die "$BASE_IMAGE has no python3"
    [ "$host_py" = "$base_py" ] \
      || die "the wheels are for Python $host_py but $BASE_IMAGE has Python $base_py"
    python_checked=1
  fi
  rm -rf "${CONTEXT:?}/$name"
  cp -r "$TOP/images/$name" "$CONTEXT/$name"
  log "building $tag on $BASE_IMAGE"
  start=$(date +%s)
  docker build --file "$CONTEXT/$name/Dockerfile" --tag "$tag" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE" \
    --label "$HASH_LABEL=$hash" "$CONTEXT" >"$WORK/$name.build.log" 2>&1 \
    || { tail -n 40 "$WORK/$name.build.log" >&2; die "docker build of $tag failed (log: $WORK/$name.build.log)"; }
  new_id=$(docker image inspect -f '{{.Id}}' "$tag")
  log "built $tag in $(( $(date +%s) - start )) s"
  # The image this build replaced, if nothing else uses it, would only fill the disk.
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  echo "$tag $new_id built"
done
# The build stages (untagged, labelled io.vantage.stage=build) are not needed any more.
docker image prune --force --filter label=io.vantage.stage=build >/dev/null 2>&1 || true
