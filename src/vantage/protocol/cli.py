"""``vantage keygen PATH [--force]`` and ``vantage identity PATH``: create (or show) an Ed25519 private key file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vantage.protocol.keys import (
    generate_key,
    key_id,
    load_or_create_private_key,
    public_key_b64,
    write_private_key,
)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # raise instead of exit
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vantage keygen",
        description=(
            "Write an Ed25519 private key (PKCS#8 PEM, mode 0600) to PATH unless one exists, and print "
            'one JSON object {"path", "keyid", "public_key", "created"}.'
        ),
    )
    parser.add_argument("path", metavar="PATH", help="private key file")
    parser.add_argument("--force", action="store_true", help="replace an existing key with a new one")
    return parser


def keygen_main(argv: list[str]) -> int:
    """Entry point of ``vantage keygen``: 0 on success, 1 on error, 2 on bad usage."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        sys.stderr.write(f"{parser.format_usage()}vantage keygen: error: {exc}\n")
        return 2
    path = Path(args.path).absolute()
    try:
        if args.force:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = generate_key()
            write_private_key(path, key, overwrite=True)
            created = True
        else:
            key, created = load_or_create_private_key(path)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"vantage keygen: error: {exc}\n")
        return 1
    result = {"path": str(path), "keyid": key_id(key), "public_key": public_key_b64(key), "created": created}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def identity_main(argv: list[str]) -> int:
    """``vantage identity PATH``: create or read an instance identity key; 0, 1 on error, 2 on bad usage.

    Prints one JSON object ``{"public_key", "key_id", "created"}`` and never the private key. Windows
    hosts run it inside the checkpoint image, whose Python has Ed25519 (docs/windows.md, "Identity").
    """
    parser = _Parser(
        prog="vantage identity",
        description=(
            "Create an instance's Ed25519 identity key (PKCS#8 PEM) at PATH unless one exists, and print "
            'one JSON object {"public_key", "key_id", "created"}. An existing key is never replaced.'
        ),
    )
    parser.add_argument("path", metavar="PATH", help="identity key file")
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        sys.stderr.write(f"{parser.format_usage()}vantage identity: error: {exc}\n")
        return 2
    try:
        key, created = load_or_create_private_key(Path(args.path).absolute())
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"vantage identity: error: {exc}\n")
        return 1
    sys.stdout.write(json.dumps({"public_key": public_key_b64(key), "key_id": key_id(key), "created": created}) + "\n")
    return 0
