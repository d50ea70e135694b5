"""Run artefacts on disk: ``requests.jsonl`` streamed as calls end, ``summary.json`` at the end.

``requests.jsonl`` is line-buffered, so a run killed at any moment leaves whole lines up
to its last finished call. Whole-file artefacts are written to a temporary file and
renamed, so a reader never sees half a summary.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from harness.core.measure import CallRecord

__all__ = ["RequestsWriter", "write_atomic", "write_json_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, document: Any) -> None:
    write_atomic(path, json.dumps(document, indent=2, sort_keys=False) + "\n")


class RequestsWriter:
    """Appends one JSON line per finished call to ``DIR/requests.jsonl``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "requests.jsonl"
        self._file: IO[str] | None = None
        self.lines = 0

    def open(self) -> None:
        """Start a fresh file for a new run."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.lines = 0

    def write(self, record: CallRecord) -> None:
        if self._file is None:
            self.open()
        assert self._file is not None
        self._file.write(json.dumps(record.to_dict(), separators=(",", ":")) + "\n")
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
