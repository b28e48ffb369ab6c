"""The package carries the collection's container code itself, not a copy (docs/auto-update.md).

``vantage._collection`` holds links to files of ``plugins/module_utils``; the wheel holds what
they point to (``images/build.sh`` compares the built wheel's files with the collection's).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SHARED = ("_contract", "_container", "_container_engine")


@pytest.mark.parametrize("name", SHARED)
def test_the_package_module_is_the_collection_file(name: str) -> None:
    module = importlib.import_module(f"vantage._collection.{name}")
    assert module.__file__ is not None
    packaged = Path(module.__file__)
    collection = ROOT / "plugins" / "module_utils" / f"{name}.py"
    assert packaged.is_symlink(), f"{packaged} must link to {collection}, not copy it"
    assert packaged.resolve() == collection.resolve()


def test_the_collection_code_imports_nothing_of_ansible_or_the_package() -> None:
    for name in SHARED:
        text = (ROOT / "plugins" / "module_utils" / f"{name}.py").read_text(encoding="utf-8")
        assert "import ansible" not in text and "from ansible" not in text, name
        assert "vantage" not in [line.split()[1].split(".")[0] for line in text.splitlines()
                                 if line.startswith(("import ", "from "))], name
