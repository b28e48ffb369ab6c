"""Payload types (media types) of the signed envelopes; each one is signed via the PAE."""

INSTRUCTION_TYPE = "application/vnd.vantage.instruction+json"
INSTRUCTION_BATCH_TYPE = "application/vnd.vantage.instruction-batch+json"
RELEASE_TYPE = "application/vnd.vantage.release+json"
HELLO_TYPE = "application/vnd.vantage.hello+json"
