"""Ground-truth trace: one JSON line per request with the server's own time.monotonic() timestamps.

A harness on the same host can join these lines with its records by `request_id` and compare its
client-side TTFT and completion times with when the server actually wrote the bytes (on Vertex,
which sends no request id, by `message_id`). Each line is flushed
as it is written so a reader sees complete lines even while the simulator is running.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TextIO


@dataclass(slots=True)
class TraceRecord:
    request_id: str
    t_arrival: float  # request fully read (headers and body)
    model: str | None = None
    stream: bool | None = None
    t_headers: float | None = None  # response status line and headers written
    t_first_delta: float | None = None  # first content_block_delta written to the socket
    t_last_delta: float | None = None  # last content_block_delta written
    t_end: float | None = None  # response finished (last byte written, or the connection dropped)
    status: int = 0
    outcome: str = ""  # ok | error_<type> | fault_<name> | client_closed
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    stop_reason: str | None = None
    queue_s: float | None = None  # time waiting for a batch slot
    message_id: str | None = None  # the message's id: what a client of a platform without request ids has


class TraceWriter:
    def __init__(self, path: str) -> None:
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the server

    def write(self, record: TraceRecord) -> None:
        self._file.write(json.dumps(asdict(record), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
