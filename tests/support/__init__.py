"""Helpers shared by the test suites and the benchmarks (never shipped in the ``vantage`` package).

``pytest`` finds this package through ``pythonpath = ["tests"]`` in ``pyproject.toml``; the
scripts under ``benchmarks/`` put ``tests/`` on ``sys.path`` themselves. Modules:

- :mod:`support.waiting` — polling with a deadline (``wait_until``, ``eventually``);
- :mod:`support.net` — a free TCP port on 127.0.0.1;
- :mod:`support.pki` — a throw-away CA with a server certificate for 127.0.0.1 (trustme);
- :mod:`support.postgres` — a throw-away PostgreSQL cluster on 127.0.0.1;
- :mod:`support.agents` — an in-process control plane, scripted and simulated agents speaking the protocol;
- :mod:`support.processes` — ``vantage control-plane serve`` as a child process.
"""
