"""AWS event-stream encoder: the binary framing of Bedrock's InvokeModelWithResponseStream responses.

A frame is ``total length u32 | headers length u32 | prelude CRC32 | headers | payload | message CRC32``
(big-endian; the prelude CRC covers the first 8 bytes, the message CRC everything before it). The
simulator sends only string headers (type 7), which is all Bedrock uses. Its own module, not the
harness's decoder (harness/core/eventstream.py), because the simulator imports nothing of the harness.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib

__all__ = ["chunk_frame", "encode_frame", "exception_frame", "string_headers"]

_PRELUDE = struct.Struct(">II")
_U32 = struct.Struct(">I")

# Bedrock pads each chunk with a "p" field of varying length so that a frame's size does not give away
# how many tokens it holds; the simulator does the same, cycling through these lengths.
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def string_headers(headers: list[tuple[str, str]]) -> bytes:
    """A header block of string headers, in the given order."""
    out = bytearray()
    for name, value in headers:
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        out += bytes((len(raw_name),)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode_frame(header_block: bytes, payload: bytes) -> bytes:
    """One frame from an encoded header block (see :func:`string_headers`) and a payload."""
    total = 16 + len(header_block) + len(payload)
    prelude = _PRELUDE.pack(total, len(header_block))
    prelude += _U32.pack(zlib.crc32(prelude))
    body = prelude + header_block + payload
    return body + _U32.pack(zlib.crc32(body))


CHUNK_HEADERS = string_headers(
    [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")]
)


def chunk_frame(event_json: bytes, padding: int = 0) -> bytes:
    """The frame carrying one Anthropic stream event: payload ``{"bytes": base64(event_json), "p": ...}``."""
    encoded = base64.b64encode(event_json)
    pad = _PADDING[: padding % len(_PADDING)].encode("ascii")
    return encode_frame(CHUNK_HEADERS, b'{"bytes":"%s","p":"%s"}' % (encoded, pad))


def exception_frame(exception_type: str, message: str, **fields: object) -> bytes:
    """A mid-stream failure, e.g. ``exception_frame("throttlingException", "Too many requests")``."""
    headers = string_headers(
        [
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ]
    )
    payload = json.dumps({"message": message, **fields}, separators=(",", ":")).encode("utf-8")
    return encode_frame(headers, payload)
