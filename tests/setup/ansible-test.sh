#!/usr/bin/env bash
# Run ansible-test on a copy of the collection laid out as ansible_collections/vantage/checkpoint.
# ansible-test bootstraps pip in its virtualenvs with a script from a host unreachable here; a
# stand-in that installs a pip wheel fetched from PyPI does the same job (docs/testing.md).
# usage: tests/setup/ansible-test.sh sanity|units [ansible-test args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/build
dest=$build/ansible-test/ansible_collections/vantage/checkpoint
export HOME=$build/home
pip_version=24.2
cache=$HOME/.ansible/test/cache
wheels=$build/cache/pip-wheel

mkdir -p "$cache" "$wheels"
if [ ! -f "$cache/get_pip_${pip_version//./_}.py" ]; then
  "$top/.venv/bin/pip" download -q --no-deps -d "$wheels" "pip==$pip_version"
  cat >"$cache/get_pip_${pip_version//./_}.py" <<PY
# Stand-in for get-pip.py: install pip from a wheel downloaded from PyPI beforehand.
import glob, sys
wheel = glob.glob("$wheels/pip-$pip_version-*.whl")[0]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", "--find-links", "$wheels"] + args))
PY
fi

# Copy what git knows (tracked and untracked-but-not-ignored), nothing built. The reference
# agent / control plane package (src/, images/, its pytest suites, benchmarks) is not collection
# content: it ships as container images and is checked with ruff, mypy and pytest instead
# (docs/testing.md).
rm -rf "$dest" && mkdir -p "$dest"
(cd "$top" && git ls-files -z --cached --others --exclude-standard \
   | grep -zvE '^(src/|images/|benchmarks/|tests/support/|tests/unit/vantage/|tests/integration/[^/]+\.py$)' \
   | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
   | tar --null -T - -c) | tar -C "$dest" -x
(cd "$dest" && git init -q && git add -A)

cd "$dest"
exec "$top/.venv/bin/ansible-test" "$@"
