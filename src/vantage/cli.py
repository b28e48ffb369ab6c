"""The single ``vantage`` console script.

Each sub-command is owned by one sub-package; this module only dispatches, importing the
sub-package lazily so that ``vantage keygen`` does not pay for the control plane's imports.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: vantage <command> [args]

commands:
  keygen PATH                 write an Ed25519 private key (PKCS#8 PEM, mode 0600), print key id
  identity PATH               create or read an instance identity key, print {public_key, key_id, created}
  agent run|healthcheck       the checkpoint agent
  control-plane serve         the reference control plane
  update --config FILE        one update run of a checkpoint host (docs/auto-update.md)
  version                     print the version
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "version":
        from vantage import __version__

        print(__version__)
        return 0
    if command == "keygen":
        from vantage.protocol.cli import keygen_main

        return int(keygen_main(rest))
    if command == "identity":
        from vantage.protocol.cli import identity_main

        return int(identity_main(rest))
    if command == "agent":
        from vantage.agent.cli import main as agent_main

        return int(agent_main(rest))
    if command == "control-plane":
        from vantage.control_plane.cli import main as cp_main

        return int(cp_main(rest))
    if command == "update":
        from vantage.update.cli import main as update_main

        return int(update_main(rest))
    sys.stderr.write(f"vantage: unknown command {command!r}\n{USAGE}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
