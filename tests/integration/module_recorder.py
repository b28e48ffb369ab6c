"""A stand-in for the managed host's Python that records module calls instead of running them.

Used as ``ansible_python_interpreter`` (through a small shell shim) by the role tests that check
what the roles send to hosts: the real ``ansible-playbook`` runs the real roles - templating,
conditions, loops, action plugins such as ``template`` and ``copy`` all run on the controller as
usual - and every module that would run on the host is recorded here instead, with its arguments
and, for ``copy``, the content of the file it would write. Nothing on the machine is changed.

Each call appends one JSON line ``{"module": ..., "args": {...}}`` to ``$RECORDER_LOG`` and prints
the first matching canned answer of ``$RECORDER_ANSWERS`` (a JSON list of ``{"module": name,
"match": {arg: substring}, "result": {...}}``; ``{"changed": false}`` when none matches).

It reads the module name and arguments from the AnsiballZ wrapper that ansible-core 2.19 writes
(the keyword arguments of its final ``_ansiballz_main(...)`` call).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any


def wrapper_call(source: str) -> dict[str, str]:
    """The string keyword arguments of the wrapper's ``_ansiballz_main(...)`` call."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "_ansiballz_main"
            and node.keywords
        ):
            return {
                kw.arg: kw.value.value
                for kw in node.keywords
                if kw.arg and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
            }
    raise SystemExit("module_recorder: no _ansiballz_main(...) call in the module wrapper")


def short_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def record(module: str, params: dict[str, Any]) -> dict[str, Any]:
    # internal arguments, and the ones that name or checksum the temporary copy of a file
    args = {k: v for k, v in params.items() if not k.startswith("_ansible_") and k not in ("_original_basename", "checksum")}
    src = args.get("src")
    if short_name(module) == "copy" and isinstance(src, str) and Path(src).is_file():
        # the controller copied the rendered file to the (here local) temporary directory
        args["src"] = None
        args["content"] = Path(src).read_text(errors="replace")
    return {"module": module, "args": args}


def answer(call: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    for candidate in answers:
        if candidate["module"] != short_name(call["module"]):
            continue
        match: dict[str, str] = candidate.get("match", {})
        if all(text in json.dumps(call["args"].get(arg)) for arg, text in match.items()):
            result: dict[str, Any] = candidate["result"]
            return result
    return {"changed": False}


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        raise SystemExit(f"module_recorder: expected one module wrapper, got {argv[1:]}")
    # the wrapper's path, or the wrapper itself on stdin (pipelining)
    call = wrapper_call(Path(argv[1]).read_text() if len(argv) == 2 else sys.stdin.read())
    params = json.loads(call["params"])["ANSIBLE_MODULE_ARGS"]
    entry = record(call["ansible_module"], params)
    with open(os.environ["RECORDER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
    answers = json.loads(Path(os.environ["RECORDER_ANSWERS"]).read_text())
    print(json.dumps(answer(entry, answers)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
