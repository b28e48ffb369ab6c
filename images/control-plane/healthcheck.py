"""Docker HEALTHCHECK of the vantage/control-plane image: is the control plane answering?

Asks ``GET /api/v1/status`` on the port of ``VANTAGE_LISTEN`` (default 0.0.0.0:8443) from
inside the container and exits 0 when it answers ``{"status": "ok"}``, else 1 with the reason.
It uses https when ``VANTAGE_TLS_CERT`` is set and plain http otherwise.  The probe connects to
the loopback address of the container's own network namespace, so the certificate (issued for
the public name) is not verified: this is a liveness probe, not a trust decision.
"""

import json
import os
import ssl
import sys
import urllib.request

TIMEOUT_S = 5.0


def probe_url() -> str:
    listen = os.environ.get("VANTAGE_LISTEN") or "0.0.0.0:8443"
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if os.environ.get("VANTAGE_TLS_CERT") else "http"
    return f"{scheme}://{host}:{port}/api/v1/status"


def main() -> int:
    url = probe_url()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # No proxy: the probe must reach this container's own port, whatever HTTPS_PROXY says.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            body = json.loads(response.read().decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with the reason
        print(f"unhealthy: {url}: {exc}")
        return 1
    if not isinstance(body, dict) or body.get("status") != "ok":
        print(f"unhealthy: {url} answered {body!r}")
        return 1
    print(f"healthy: {url} version {body.get('version')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
