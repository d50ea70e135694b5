"""The SDK transport's socket reads, stamped with the kernel's receive time (Linux).

The SDK reads a stream's body through httpcore's socket reads, in the caller's greenlet,
and yields an event once the read that completed it is done. :func:`stamp_reads` gives
the SDK's HTTP client a network backend whose plain TCP streams read with ``recvmsg`` and
the ``SO_TIMESTAMPNS`` ancillary data (:class:`_StampedStream`; over TLS,
:class:`_StampedTLSStream` on :class:`~harness.transports.stamped_tls.StampedTLSSocket`)
and leave each read's stamp, mapped to the monotonic clock, for the call being read
(:func:`reading`): the SDK transport stamps each event with it instead of the time the
SDK handed it over, so an event that waited in the socket while the process was busy
keeps its true time.
"""

from __future__ import annotations

import contextvars
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2
import httpx2

from harness.transports.stamped_tls import ANCILLARY, StampedTLSSocket, enable_stamps, kernel_stamp, monotonic_of

__all__ = ["reading", "stamp_reads"]

# The kernel's receive time of the current call's last read, on the monotonic clock; one per
# greenlet (each has its own context). None outside a call or without a stamp.
_last_read: contextvars.ContextVar[list[float | None] | None] = contextvars.ContextVar(
    "harness_last_read", default=None
)


@contextmanager
def reading() -> Iterator[list[float | None]]:
    """For one call: a holder whose one item is the stamp of this greenlet's last stamped read."""
    holder: list[float | None] = [None]
    token = _last_read.set(holder)
    try:
        yield holder
    finally:
        _last_read.reset(token)


def _note(stamp: float | None) -> None:
    holder = _last_read.get()
    if holder is not None:
        read_at = time.monotonic()
        holder[0] = read_at if stamp is None else monotonic_of(stamp, read_at)


class _StampedStream(httpcore2.NetworkStream):
    """A plain TCP stream whose reads note the kernel's receive time of their newest bytes.

    Each read is one ``recvmsg`` with the ``SO_TIMESTAMPNS`` ancillary data; the stamp
    (CLOCK_REALTIME) is mapped to the monotonic clock at the read and left for the call
    being read. Everything else is the wrapped stream's.
    """

    def __init__(self, stream: httpcore2.NetworkStream, sock: socket.socket) -> None:
        self._stream = stream
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._sock.settimeout(timeout)
            data, ancillary, _, _ = self._sock.recvmsg(max_bytes, ANCILLARY)
        except TimeoutError as exc:
            raise httpcore2.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore2.ReadError(exc) from exc
        _note(kernel_stamp(ancillary) if ancillary else None)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        # ssl's own TLS socket reads records itself and keeps no stamp: TLS over a MemoryBIO does.
        try:
            self._sock.settimeout(timeout)
            tls = StampedTLSSocket(self._sock, ssl_context, server_hostname)
        except TimeoutError as exc:
            self.close()
            raise httpcore2.ConnectTimeout(exc) from exc
        except OSError as exc:
            self.close()
            raise httpcore2.ConnectError(exc) from exc
        return _StampedTLSStream(tls, self._sock)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _StampedTLSStream(httpcore2.NetworkStream):
    """A TLS stream (:class:`~harness.transports.stamped_tls.StampedTLSSocket`) whose reads note the kernel's stamp.

    The stamp of a decrypted read is that of the raw read that completed its record.
    """

    def __init__(self, tls: StampedTLSSocket, sock: socket.socket) -> None:
        self._tls = tls
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._tls.settimeout(timeout)
            data = self._tls.recv(max_bytes)
        except TimeoutError as exc:
            raise httpcore2.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore2.ReadError(exc) from exc
        _note(self._tls.arrived)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._tls.settimeout(timeout)
            self._tls.sendall(buffer)
        except TimeoutError as exc:
            raise httpcore2.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore2.WriteError(exc) from exc

    def close(self) -> None:
        self._tls.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        raise httpcore2.ConnectError("TLS in TLS (an HTTPS proxy to an HTTPS target) is not supported here")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._tls.ssl_object
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "is_readable":  # a kept-alive connection with bytes waiting was closed or dirtied
            return self._tls.pending() > 0 or bool(select.select([self._sock], [], [], 0)[0])
        return None


class _StampingBackend(httpcore2.SyncBackend):
    """httpcore's own backend (its socket options kept), its TCP connections stamped by the kernel."""

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore2.NetworkStream:
        stream = super().connect_tcp(*args, **kwargs)
        sock = stream.get_extra_info("socket")
        if sock is None or not enable_stamps(sock):
            return stream
        return _StampedStream(stream, sock)


def stamp_reads(http_client: httpx2.Client) -> bool:
    """Stamp the reads of ``http_client``'s own connections (not a proxy's); False where it cannot.

    The SDK's default client builds its transport itself (TCP keep-alive socket options, the
    environment's proxies as mounts), and httpx builds httpcore's pool without a way to pass
    a network backend: the pool keeps it in one attribute, replaced here before any
    connection is made. Where it does not (another httpcore), events are stamped as read.
    """
    pool = getattr(getattr(http_client, "_transport", None), "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        return False
    pool._network_backend = _StampingBackend()
    return True
