"""VerificationError: its string form, and the list of reason codes staying complete."""

from __future__ import annotations

import re
from pathlib import Path

import vantage.protocol
from vantage.protocol import REASONS, VerificationError


def test_str_is_reason_colon_message() -> None:
    error = VerificationError("expired", "expired at 10, now is 50")
    assert (error.reason, error.message) == ("expired", "expired at 10, now is 50")
    assert str(error) == "expired: expired at 10, now is 50"
    assert str(VerificationError("bad_signature")) == "bad_signature: bad signature"


def test_every_reason_raised_is_listed() -> None:
    package = Path(vantage.protocol.__file__).parent
    raised = set()
    for source in package.glob("*.py"):
        raised |= set(re.findall(r'VerificationError\(\s*"([a-z_]+)"', source.read_text()))
    assert raised, "the pattern must find the raise sites"
    assert raised <= REASONS, raised - REASONS
