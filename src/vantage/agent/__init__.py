"""The reference checkpoint agent (``vantage agent run`` / ``vantage agent healthcheck``).

The agent connects outbound to the control plane, proves its identity, verifies every signed
instruction before acting on it, runs checks under bounded concurrency and delivers results
through a persistent outbox so that none is lost to a dropped connection.  See ``docs/agent.md``.

Modules are imported lazily by :mod:`vantage.agent.cli`, so this package keeps no imports here.
"""
