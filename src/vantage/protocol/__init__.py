"""The signed protocol shared by the agent, the control plane and the collection (docs/protocol.md).

Ed25519 keys (:mod:`.keys`), DSSE-style envelopes (:mod:`.envelope`), trusted keys
(:mod:`.trust`), instructions and signed batches of instructions with replay protection
(:mod:`.instruction`, :mod:`.replay`), the session hello (:mod:`.hello`) and release manifests
(:mod:`.release`). Every verifier raises :class:`VerificationError` with a short ``reason`` code.
"""

from vantage.protocol.constants import HELLO_TYPE, INSTRUCTION_BATCH_TYPE, INSTRUCTION_TYPE, RELEASE_TYPE
from vantage.protocol.envelope import MAX_PAYLOAD_BYTES, pae, sign, verify
from vantage.protocol.errors import REASONS, VerificationError
from vantage.protocol.hello import make_hello, normalize_url, verify_hello
from vantage.protocol.instruction import (
    KINDS,
    MAX_BATCH_ITEMS,
    Instruction,
    InstructionVerifier,
    apply_rotation,
    instruction_payload,
    make_instruction,
    make_instruction_batch,
    rotation_body,
)
from vantage.protocol.keys import (
    generate_key,
    key_id,
    load_or_create_private_key,
    load_private_key,
    public_key_b64,
    public_key_from_b64,
    write_private_key,
)
from vantage.protocol.release import Release, compare_versions, make_release, parse_version, verify_release
from vantage.protocol.replay import ReplayCache
from vantage.protocol.trust import TrustedKey, TrustStore

__all__ = [
    "HELLO_TYPE",
    "INSTRUCTION_BATCH_TYPE",
    "INSTRUCTION_TYPE",
    "KINDS",
    "MAX_BATCH_ITEMS",
    "MAX_PAYLOAD_BYTES",
    "REASONS",
    "RELEASE_TYPE",
    "Instruction",
    "InstructionVerifier",
    "Release",
    "ReplayCache",
    "TrustStore",
    "TrustedKey",
    "VerificationError",
    "apply_rotation",
    "compare_versions",
    "generate_key",
    "instruction_payload",
    "key_id",
    "load_or_create_private_key",
    "load_private_key",
    "make_hello",
    "make_instruction",
    "make_instruction_batch",
    "make_release",
    "normalize_url",
    "pae",
    "parse_version",
    "public_key_b64",
    "public_key_from_b64",
    "rotation_body",
    "sign",
    "verify",
    "verify_hello",
    "verify_release",
    "write_private_key",
]
