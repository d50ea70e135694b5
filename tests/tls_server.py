"""A test server of tests/ over HTTPS, with a fresh self-signed certificate for 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["https_server"]

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def https_server(script: str, where: Path) -> Iterator[str]:
    """Run ``tests/<script>`` with ``--tls CERT KEY`` (made in ``where``) and yield its https:// URL."""
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / script), "--tls", str(cert), str(key)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "https://" in line, line
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
