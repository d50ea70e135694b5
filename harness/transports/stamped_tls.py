"""Kernel receive timestamps for reads, over plain TCP and over TLS.

Linux stamps every segment it receives when a socket asks (``SO_TIMESTAMPNS``), and a
``recvmsg`` returns the stamp of the newest segment it took (CLOCK_REALTIME). A stamp
says when bytes reached this host, however long they then waited for a busy process to
read them; :func:`monotonic_of` puts it on the monotonic clock the harness measures with.

A TLS socket of the ``ssl`` module reads records itself and hands over no ancillary data,
so :class:`StampedTLSSocket` runs TLS over :class:`ssl.MemoryBIO`: it reads the raw socket
with ``recvmsg``, feeds the bytes to an :class:`ssl.SSLObject` and keeps the stamp of the
last raw read (``arrived``), which is the newest of the bytes any decrypted read returns.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ANCILLARY",
    "SO_TIMESTAMPNS",
    "TIMESPEC_SIZE",
    "StampedTLSSocket",
    "enable_stamps",
    "kernel_stamp",
    "monotonic_of",
    "unpack_timespec",
]

# Linux's receive timestamps in nanoseconds (asm-generic value; Python does not name it).
SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_TIMESPEC = struct.Struct("@qq")
TIMESPEC_SIZE = _TIMESPEC.size
unpack_timespec = _TIMESPEC.unpack_from  # (seconds, nanoseconds) of a struct timespec
ANCILLARY = socket.CMSG_SPACE(TIMESPEC_SIZE)
_RAW_READ = 64 * 1024


def enable_stamps(sock: Any) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; False where it cannot."""
    if SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def kernel_stamp(ancillary: Sequence[tuple[int, int, bytes]]) -> float | None:
    """The ``SO_TIMESTAMPNS`` stamp in a ``recvmsg``'s ancillary data (``time.time()`` clock), if any."""
    for level, kind, value in ancillary:
        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET and len(value) >= TIMESPEC_SIZE:
            seconds, nanoseconds = unpack_timespec(value)
            return float(seconds + nanoseconds * 1e-9)
    return None


def monotonic_of(stamp: float, read_at: float) -> float:
    """A kernel stamp on the monotonic clock, ``read_at`` being ``time.monotonic()`` at its read.

    The two clocks differ by an offset that only a step of the wall clock changes (NTP slews
    both alike), read here next to the read; a stamp is never later than its read.
    """
    return min(read_at, stamp - (time.time() - read_at))


class StampedTLSSocket:
    """A client TLS connection over ``ssl.MemoryBIO`` on a connected (gevent) socket.

    It offers what geventhttpclient's pool and the fast transport use of a socket: ``recv``,
    ``send``, ``sendall``, ``pending``, ``settimeout``, ``fileno``, ``close``. The handshake
    runs in the constructor, under the socket's current timeout; certificate and host-name
    checks are the context's, as ``SSLContext.wrap_socket`` would make them.
    """

    def __init__(self, sock: Any, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self.arrived: float | None = None  # the kernel's stamp of the last raw read (time.time() clock)
        self.read_at = 0.0  # time.monotonic() at that read
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionResetError("connection closed during the TLS handshake") from None
        self._flush()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._sock.sendall(data)

    def _fill(self) -> bool:
        # Waits for raw bytes (gevent's recvmsg); False at the end of the connection.
        data, ancillary, _, _ = self._sock.recvmsg(_RAW_READ, ANCILLARY)
        if not data:
            self._incoming.write_eof()
            return False
        self.read_at = time.monotonic()
        self.arrived = kernel_stamp(ancillary)
        self._incoming.write(data)
        return True

    def recv(self, size: int) -> bytes:
        """Decrypted bytes, at most ``size``, waiting for a record if none is buffered; ``b""`` at the end."""
        while True:
            try:
                return self._tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()  # e.g. session tickets, a key update
                if not self._fill():
                    continue  # the TLS object now raises the end of the stream
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""  # a clean close, or a ragged one, as ssl's suppress_ragged_eofs reads it

    def send(self, data: bytes | memoryview) -> int:
        sent = self._tls.write(data)
        self._flush()
        return sent

    def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The TLS state (negotiated protocol, ALPN, peer certificate)."""
        return self._tls

    def pending(self) -> int:
        """Decrypted bytes buffered here, which the kernel no longer reports as readable."""
        return self._tls.pending()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def close(self) -> None:
        self._sock.close()
