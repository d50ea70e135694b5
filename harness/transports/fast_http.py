"""The fast transport's HTTP: geventhttpclient's pools, and a response that returns each read at once, stamped.

:class:`StreamingResponse` reads whatever bytes have arrived (never waiting to fill a
block) and, on plain sockets, with ``recvmsg`` and the kernel's receive time of the newest
segment it takes (``SO_TIMESTAMPNS``); over TLS :class:`SSLPool` runs TLS over
``ssl.MemoryBIO`` (:mod:`harness.transports.stamped_tls`) to keep those stamps. The pools
check an idle connection with one zero-timeout select. :mod:`harness.transports.fast`
builds the calls on them.
"""

from __future__ import annotations

from typing import Any

from gevent import monkey
from geventhttpclient._parser import HTTPResponseParser
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketPoolResponse

from harness.transports.stamped_tls import (
    ANCILLARY,
    SO_TIMESTAMPNS,
    TIMESPEC_SIZE,
    StampedTLSSocket,
    enable_stamps,
    kernel_stamp,
    unpack_timespec,
)

__all__ = ["READ_BLOCK", "HeaderDict", "Pool", "SSLPool", "StreamingResponse", "send_all"]

# One recv returns at most this much; a delta is ~120 bytes, a burst of them a few KB.
READ_BLOCK = 16 * 1024
_parse = HTTPResponseParser.feed
# The blocking select.select, whether or not gevent has patched the module.
_select = monkey.get_original("select", "select")


class HeaderDict(dict[str, str]):
    """Response headers by lower-case name, a repeated header's last value kept: all a call reads.

    Given to geventhttpclient as its ``headers_type``: its own case-insensitive multi-dict
    took a fifth of parsing a response head of 24 API-like headers (41 -> 32 µs hot).
    """

    def add(self, name: str, value: str) -> None:
        self[name.lower()] = value

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


class _IdleCheck:
    """geventhttpclient's check of an idle connection before its reuse, made leaner.

    The check is the pool's own (an idle keep-alive connection that is readable has been
    closed by the server, or holds stray bytes: do not reuse it), made with one
    zero-timeout select. geventhttpclient calls gevent's cooperative select, which after
    its own zero-timeout select also yields to the event loop once: a loop iteration per
    call that nothing waits for.
    """

    def _is_socket_alive(self, sock: Any) -> bool:
        return _idle_and_open(sock)


class Pool(_IdleCheck, ConnectionPool):
    """The plain-HTTP pool with :class:`_IdleCheck`, its connections stamped by the kernel.

    The kernel stamps every segment it receives (``SO_TIMESTAMPNS``): each read carries
    when its newest bytes reached this host, however long they then waited to be read.
    """

    def _connect_socket(self, sock: Any, address: Any) -> Any:
        sock = super()._connect_socket(sock, address)
        enable_stamps(sock)
        return sock


class SSLPool(_IdleCheck, SSLConnectionPool):
    """The TLS pool with :class:`_IdleCheck`, its TLS run over a MemoryBIO to keep the kernel's stamps.

    geventhttpclient's own SSL pool wraps each socket in ``ssl``'s SSLSocket, which reads
    records itself and hands over no receive timestamps. Its connect, proxy tunnel, context
    (verification, ``--insecure``) and host name are kept; only the TLS socket differs
    (:class:`harness.transports.stamped_tls.StampedTLSSocket`).
    """

    def _connect_socket(self, sock: Any, address: Any) -> Any:
        sock = ConnectionPool._connect_socket(self, sock, address)
        if self._use_proxy:
            self._setup_proxy(sock)
        enable_stamps(sock)
        server_hostname = self.ssl_options.get("server_hostname", self._request_host)
        return StampedTLSSocket(sock, self.ssl_context, server_hostname)


def _idle_and_open(sock: Any) -> bool:
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        return fd >= 0 and not _select([fd], [], [], 0.0)[0]
    except (OSError, ValueError):
        return False


def send_all(sock: Any, data: bytes) -> None:
    # A request fits the empty send buffer of a pooled connection, so one plain send
    # usually writes it all; gevent's sendall would first arm a timeout and ask the
    # kernel for the buffer size, on every call.
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


class StreamingResponse(HTTPSocketPoolResponse):
    """geventhttpclient's pooled response with one more read: whatever has arrived."""

    def __init__(self, sock: Any, pool: ConnectionPool, **kw: Any) -> None:
        # The parser hands each piece of body to ``_on_body`` as a fresh bytearray; a list's
        # own append takes them without a Python frame per piece (the base class appends
        # to one bytearray in a Python method, then copies it out again).
        self._parts: list[bytearray] = []
        self._on_body = self._parts.append  # type: ignore[method-assign,assignment]
        # A TLS socket may hold bytes the kernel does not. Asked before the head is read: a whole
        # response with "connection: close" is read, and its socket closed, inside __init__.
        self._plain = not hasattr(sock, "pending")
        # Whether the next read should wait for bytes before it asks for them: see read_some.
        # The head's first read nearly always would find nothing: the request was just sent.
        self._wait_first = self._plain
        self._arrived: float | None = None  # the kernel's stamp of the last stamped read (plain sockets)
        self._tls = sock if isinstance(sock, StampedTLSSocket) else None  # which keeps its own
        super().__init__(sock, pool, headers_type=HeaderDict, **kw)

    def _read_headers(self, pre_buffered: bytes = b"") -> None:
        # geventhttpclient's own loop, with each read stamped by the kernel (plain sockets): when
        # the head is read late, the first token may already have come with it.
        if not self._plain or pre_buffered:
            super()._read_headers(pre_buffered)
            return
        sock = self._sock
        try:
            start = True
            while not self.headers_complete or self.get_code() < 200:
                try:
                    data = self._recv_stamped(sock)
                except ConnectionResetError:
                    if start:
                        raise HTTPConnectionClosed("connection closed.") from None
                    raise
                _parse(self, data)
                if not data:
                    if start:
                        raise HTTPConnectionClosed("connection closed.")
                    if self.headers_complete:
                        raise HTTPParseError("connection closed after interim response")
                    raise HTTPParseError("connection closed before end of the headers")
                start = False
            if self.message_complete:
                self.release()
        except BaseException:
            self.release()
            raise

    def _recv_stamped(self, sock: Any) -> bytes:
        """Whatever has arrived, at once (waiting first if the last read emptied the socket).

        Its receive time by the kernel (``time.time()`` clock), that of the newest segment it
        takes, goes to ``_arrived`` (``None`` without ``SO_TIMESTAMPNS``).
        """
        while True:
            if self._wait_first:
                sock._wait(sock._read_event)
            try:
                data, ancillary, _, _ = sock._sock.recvmsg(self.block_size, ANCILLARY)
            except BlockingIOError:
                self._wait_first = True
                continue
            break
        self._arrived = kernel_stamp(ancillary) if ancillary else None
        self._wait_first = len(data) < self.block_size
        return data

    def read_some(self) -> bytes | bytearray:
        """The next body bytes, as soon as any arrive; ``b""`` at the body's end.

        Raises HTTPConnectionClosed when the peer closes before the body is complete
        (geventhttpclient's own iteration would end quietly there).
        """
        parts = self._parts
        while not parts:
            sock = self._socket()
            if sock is None:
                return b""
            if self._wait_first:
                # The last read emptied the socket: a recv now would nearly always find nothing
                # and pay for a failed syscall and the exception gevent raises and catches for
                # it (~10 % of a streamed delta's CPU) before waiting anyway. Wait first.
                sock._wait(sock._read_event)
            self._parsed(sock.recv(self.block_size))
        # Each part is a fresh bytearray of the parser's: the caller may keep it.
        return parts.pop() if len(parts) == 1 else _join_parts(parts)

    def read_stamped(self) -> tuple[bytes | bytearray, float | None]:
        """:meth:`read_some`, with when the kernel received the newest of those bytes (``time.time()``).

        ``None`` without ``SO_TIMESTAMPNS``. Bytes that came with the response head carry the
        head's last read's stamp; over TLS, the stamp of the raw read that completed the
        record they came in. A read's stamp is that of the last segment it takes; and when
        a segment arrives while the one before it is still unread, the kernel merges them
        and keeps the newer stamp. So the stamp is exact for the newest bytes of the read,
        and for older ones only if nothing came after them before the read.
        """
        parts = self._parts
        tls = self._tls
        while not parts:
            sock = self._socket()
            if sock is None:
                return b"", None
            if not self._plain:
                data = self.read_some()
                return data, None if tls is None else tls.arrived
            # _recv_stamped's read, inline: this is the hot path of every streamed delta.
            if self._wait_first:
                sock._wait(sock._read_event)
            try:
                data, ancillary, _, _ = sock._sock.recvmsg(self.block_size, ANCILLARY)
            except BlockingIOError:
                self._wait_first = True
                continue
            if ancillary:  # kernel_stamp, inline: the socket asked for SO_TIMESTAMPNS and nothing else
                _, kind, value = ancillary[0]
                if kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC_SIZE:
                    seconds, nanoseconds = unpack_timespec(value)
                    self._arrived = seconds + nanoseconds * 1e-9
                else:
                    self._arrived = kernel_stamp(ancillary)
            else:
                self._arrived = None
            self._parsed(data)
        data = parts.pop() if len(parts) == 1 else _join_parts(parts)
        return data, self._arrived if tls is None else tls.arrived

    def _socket(self) -> Any:
        # The socket to read the body from; None once the body is complete.
        if self.message_complete:
            return None
        sock = self._sock
        if sock is None:
            raise HTTPConnectionClosed("connection released before the end of the body")
        return sock

    def _parsed(self, data: bytes) -> None:
        self._wait_first = self._plain and len(data) < self.block_size
        if not data:
            self.feed(b"")  # lets the parser end a body that is delimited by the close
            if not self.message_complete:
                raise HTTPConnectionClosed("connection closed before the end of the body")
            return
        # The C parser itself: HTTPResponse.feed only adds a rescue for a HEAD response's
        # stray body, and this is a POST's.
        _parse(self, data)


def _join_parts(parts: list[bytearray]) -> bytes:
    data = b"".join(parts)
    parts.clear()
    return data
