"""The one exception every verifier in :mod:`vantage.protocol` raises."""

from __future__ import annotations

#: Every ``reason`` the verifiers of this package raise, by verification step.
REASONS = frozenset(
    {
        # envelope (steps 1-2)
        "malformed_envelope",
        "payload_too_large",
        "unknown_key",
        "bad_signature",
        # payload (steps 3-4 and field checks)
        "malformed_payload",
        "wrong_payload_type",
        "unsupported_version",
        "unknown_kind",
        # instructions (steps 5-7)
        "wrong_audience",
        "not_yet_valid",
        "lifetime_too_long",
        "expired",
        "replayed",
        "replay_cache_full",
        "replay_cache_error",
        "invalid_rotation",
        # session hello
        "wrong_challenge",
        "wrong_instance",
        "wrong_control_plane",
        # release manifests
        "wrong_channel",
        "downgrade",
    }
)


class VerificationError(Exception):
    """A signed object was refused.

    ``reason`` is a short, stable code (``unknown_key``, ``bad_signature``, ``expired``, ...;
    see ``docs/protocol.md``) meant for logs, metrics and the ``rejected`` session message;
    ``message`` is a human explanation. ``str(error)`` is ``"<reason>: <message>"``.
    ``nonce`` is the instruction's nonce when the refusal came after its signature verified
    and its payload parsed (for the ``rejected`` session message), else ``None``; for a refused
    batch it names the culprit item, and ``nonces`` lists the nonces of every item (each is
    answered with ``rejected``: a batch is refused as a whole).
    """

    def __init__(
        self, reason: str, message: str = "", *, nonce: str | None = None, nonces: tuple[str, ...] = ()
    ) -> None:
        self.reason = reason
        self.message = message or reason.replace("_", " ")
        self.nonce = nonce
        self.nonces = nonces
        super().__init__(reason, self.message)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
