# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A stand-in for ``vantage agent`` in the checkpoint_container tests.

``run`` checks that the mounted key files can be read and the state directory written (as the
real agent does), then keeps ``status.json`` fresh: connected, unless FAKE_UNHEALTHY=1. Every
start and stop is appended to ``events.log`` in the state directory. ``healthcheck`` exits 0 only
when the status says connected, the writer is alive and the heartbeat is recent - the contract of
``vantage agent healthcheck``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

STATE = os.environ.get("VANTAGE_STATE_DIR", "/var/lib/vantage")
STATUS = os.path.join(STATE, "status.json")


def event(text):
    with open(os.path.join(STATE, "events.log"), "a") as stream:
        stream.write("%.3f %s %s %s\n" % (time.time(), socket.gethostname(), os.environ.get("FAKE_VERSION"), text))


def write_status(state):
    status = {
        "state": state,
        "pid": os.getpid(),
        "last_heartbeat_at": time.time(),
        "instance": os.environ.get("VANTAGE_INSTANCE"),
        "image_digest": os.environ.get("VANTAGE_IMAGE_DIGEST"),
        "version": os.environ.get("FAKE_VERSION"),
    }
    temporary = STATUS + ".tmp"
    with open(temporary, "w") as stream:
        json.dump(status, stream)
    os.replace(temporary, STATUS)


def run():
    for variable in ("VANTAGE_IDENTITY_KEY", "VANTAGE_TRUSTED_KEYS"):
        path = os.environ.get(variable)
        try:
            with open(path) as stream:
                stream.read()
        except (OSError, TypeError) as exc:
            sys.stderr.write("fake agent: cannot read %s=%s: %s\n" % (variable, path, exc))
            return 2
    try:
        event("start")
    except OSError as exc:
        sys.stderr.write("fake agent: state directory %s not writable: %s\n" % (STATE, exc))
        return 2
    state = "disconnected" if os.environ.get("FAKE_UNHEALTHY") == "1" else "connected"
    sys.stderr.write("fake agent %s: %s\n" % (os.environ.get("VANTAGE_INSTANCE"), state))
    sys.stderr.flush()
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    while not stopping:
        write_status(state)
        time.sleep(0.3)
    write_status("stopped")
    event("stop")
    return 0


def healthcheck():
    try:
        with open(STATUS) as stream:
            status = json.load(stream)
        os.kill(status["pid"], 0)
    except (OSError, ValueError, KeyError) as exc:
        print("unhealthy: %s" % exc)
        return 1
    age = time.time() - status["last_heartbeat_at"]
    if status["state"] != "connected" or age > 5:
        print("unhealthy: not connected to the control plane (%s), last heartbeat %.1fs ago" % (status["state"], age))
        return 1
    print("healthy: connected, last heartbeat %.1fs ago" % age)
    return 0


if __name__ == "__main__":
    sys.exit(run() if sys.argv[1:] == ["run"] else healthcheck())
