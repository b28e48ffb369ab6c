"""The two read-only control-plane calls of an update: the channel's release, the checkpoint's health."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from vantage import __version__, contract

MAX_ANSWER_BYTES = 2 * 1024 * 1024


class ControlPlaneError(Exception):
    """The control plane could not be asked, or answered something unusable."""


class ControlPlaneClient:
    """``GET`` with a bearer token over HTTPS (the control plane's URL is checked by the contract)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_file: str | None = None,
        validate_certs: bool = True,
        timeout: float = 15,
    ) -> None:
        self.url = contract.control_plane_url(url)  # https://, or http:// to loopback: never file: etc.
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file)
        if not validate_certs:  # an explicit opt-out of the operator (validate_certs = false)
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def get(self, path: str) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the URL passed the contract's https/loopback rule
            self.url + path,
            headers={
                "Authorization": "Bearer " + self.token,
                "Accept": "application/json",
                "User-Agent": f"vantage-update/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as answer:  # noqa: S310
                body = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", "replace").strip()
            raise ControlPlaneError(f"GET {path} answered HTTP {exc.code}: {detail[:300]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ControlPlaneError(f"GET {self.url}{path} failed: {getattr(exc, 'reason', exc)}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise ControlPlaneError(f"GET {path}: answer larger than {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ControlPlaneError(f"GET {path}: answer is not JSON: {exc}") from None

    def release(self, channel: str) -> Any:
        """The signed release envelope of ``channel`` (verified by the caller)."""
        return self.get("/api/v1/releases/" + urllib.parse.quote(channel, safe=""))

    def health(self, checkpoint: str) -> Any:
        """``GET /api/v1/checkpoints/{cp}/health``."""
        return self.get(f"/api/v1/checkpoints/{urllib.parse.quote(checkpoint, safe='')}/health")
