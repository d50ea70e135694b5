"""The fast transport (``--transport fast``): raw HTTP/1.1 on geventhttpclient, SSE read by line.

Why it exists: the anthropic SDK costs ~90 µs of CPU per content delta under gevent,
so one core saturates near 3,500 deltas/s and its event-loop lag inflates every TTFT
it measures. This path keeps only what the metrics need on the hot path:

* geventhttpclient's connection pool (connect and read timeouts, TLS, keep-alive) and
  its C HTTP parser (llhttp) for status, headers and chunked bodies;
* each read returns whatever bytes have arrived — never waiting to fill a block, which
  is what adds tens of ms to TTFT with 1 KB ``iter_content`` reads — and a connection
  that closes before the body's end is a ``connection`` failure, never a silent truncation;
* a call's waits (its send, the response head, every read of the body) run without a
  socket timeout: gevent would arm and cancel a timer for every one (a sixth of this
  path's CPU). One :class:`_StallWatch` per call checks instead, once per timeout
  period, whether anything arrived in it;
* :class:`harness.core.stream_decoder.StreamEventDecoder` turns those bytes into the same typed events
  the SDK path produces, stamped with the kernel's receive time of the read that delivered
  them (``SO_TIMESTAMPNS``, Linux; over TLS too, run over ``ssl.MemoryBIO`` by
  :mod:`harness.transports.stamped_tls`), so a token that waited in the socket while the
  process was busy keeps its true time; a read
  that is one more delta of the block before it (most reads) is matched by one compiled
  pattern and timed with no event built (``decoder.repeat``, ``measurement.content_delta``).

Everything else is shared with the SDK path so the records are the same: the body is
:meth:`MessageRequest.body`, the measurement is :class:`~harness.core.measure.CallMeasurement`,
and failures take the outcome classes of :mod:`harness.core.measure`. The headers are the
API's documented ones (``x-api-key``, ``anthropic-version``) plus ``Accept-Encoding:
identity``: a compressed stream cannot be read by line as it arrives.
"""

from __future__ import annotations

import contextlib
import errno
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent import monkey
from geventhttpclient._parser import HTTPResponseParser
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketPoolResponse

from harness.core.errors import CallError, ProtocolError
from harness.core.measure import CONNECTION, TIMEOUT, CallMeasurement, Outcome, error_detail
from harness.core.request import MessageRequest
from harness.core.stream_decoder import StreamEventDecoder
from harness.core.stream_events import usage_from
from harness.transports.base import FIRST_TOKEN_LATE, TransportConfig
from harness.transports.stamped_tls import (
    ANCILLARY,
    SO_TIMESTAMPNS,
    TIMESPEC_SIZE,
    StampedTLSSocket,
    enable_stamps,
    kernel_stamp,
    unpack_timespec,
)

__all__ = ["FastTransport"]

# Each stream may hold its connection for the whole call; the pool must never make a user wait.
POOL_SIZE = 100_000
# One recv returns at most this much; a delta is ~120 bytes, a burst of them a few KB.
READ_BLOCK = 16 * 1024
# An error body larger than this is cut: only its error type and message are kept.
MAX_ERROR_BODY = 64 * 1024
MESSAGES_PATH = "/v1/messages"
ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = "llm-loadtest-harness (geventhttpclient)"
_parse = HTTPResponseParser.feed
# The blocking select.select, whether or not gevent has patched the module.
_select = monkey.get_original("select", "select")


class _HeaderDict(dict[str, str]):
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


class _Pool(_IdleCheck, ConnectionPool):
    """The plain-HTTP pool with :class:`_IdleCheck`, its connections stamped by the kernel.

    The kernel stamps every segment it receives (``SO_TIMESTAMPNS``): each read carries
    when its newest bytes reached this host, however long they then waited to be read.
    """

    def _connect_socket(self, sock: Any, address: Any) -> Any:
        sock = super()._connect_socket(sock, address)
        enable_stamps(sock)
        return sock


class _SSLPool(_IdleCheck, SSLConnectionPool):
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


def _send_all(sock: Any, data: bytes) -> None:
    # A request fits the empty send buffer of a pooled connection, so one plain send
    # usually writes it all; gevent's sendall would first arm a timeout and ask the
    # kernel for the buffer size, on every call.
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


class _StreamingResponse(HTTPSocketPoolResponse):
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
        super().__init__(sock, pool, headers_type=_HeaderDict, **kw)

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


def _is_utf8(data: bytes | bytearray) -> bool:
    # A delta of non-ASCII text (CJK, accents) is still one more delta: decoding the chunk
    # checks it in C, where handing it to feed() would match and build it all over again.
    # Invalid bytes do go to feed(), which raises the ProtocolError the SDK path gives.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _join_parts(parts: list[bytearray]) -> bytes:
    data = b"".join(parts)
    parts.clear()
    return data


class FastTransport:
    """Sends requests over geventhttpclient's pool; one per process and base URL."""

    name = "fast"

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        url = urlsplit(config.base_url)
        tls = url.scheme == "https"
        host = url.hostname or "localhost"
        port = url.port or (443 if tls else 80)
        pool_args: dict[str, Any] = {
            "size": POOL_SIZE,
            "connection_timeout": config.connect_timeout_s,
            "network_timeout": config.timeout_s,
        }
        if tls:
            pool = _SSLPool(host, port, host, port, insecure=not config.verify_tls, **pool_args)
            if not config.verify_tls:
                # geventhttpclient's `insecure` only stops the host-name check: the certificate
                # would still be verified, and a self-signed endpoint refused.
                pool.ssl_context.verify_mode = ssl.CERT_NONE
            self._pool: ConnectionPool = pool
        else:
            self._pool = _Pool(host, port, host, port, **pool_args)
        authority = host if port == (443 if tls else 80) else f"{host}:{port}"
        if ":" in host:
            authority = f"[{host}]" if port == (443 if tls else 80) else f"[{host}]:{port}"
        # What a platform's requests (fast_platforms.py) are built from: they sign or name each one.
        self._authority = authority
        self._origin = f"{url.scheme}://{authority}"
        self._base_path = url.path.rstrip("/")
        path = self._base_path + MESSAGES_PATH
        lines = [f"POST {path} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{k}: {v}" for k, v in api_headers(config).items()]
        lines.append("Accept-Encoding: identity")
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    def request_bytes(self, request: MessageRequest) -> bytes:
        """The whole HTTP request for ``request``: the fixed head, its length and the JSON body."""
        payload = json.dumps(request.body(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return b"%s%d\r\n\r\n%s" % (self._head, len(payload), payload)

    def send(self, request: MessageRequest, measurement: CallMeasurement) -> None:
        data = self.request_bytes(request)
        response: _StreamingResponse | None = None
        watch: _StallWatch | None = None
        try:
            sock = self._pool.get_socket()
            try:
                measurement.request_sent()
                # From here one watch bounds every wait of the call, send, head and body.
                sock.settimeout(None)
                watch = _StallWatch(self.config.timeout_s)
                _send_all(sock, data)
            except BaseException:
                self._pool.release_socket(sock)
                raise
            # From here the response owns the socket: it releases it itself, even when reading
            # the head fails (releasing twice would over-release the pool's semaphore).
            response = _StreamingResponse(sock, self._pool, block_size=READ_BLOCK, method="POST")
            status = response.status_code
            measurement.response(status, _headers(response))
            if not 200 <= status < 300:
                raise self._status_error(status, response, watch)
            if request.stream:
                self._stream(response, measurement, watch)
            else:
                self._whole(response, measurement, watch)
        except CallError:
            raise
        except TimeoutError as exc:
            raise CallError(TIMEOUT, type(exc).__name__) from None
        except (HTTPParseError, OSError) as exc:
            raise CallError(CONNECTION, _describe(exc)) from None
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise ProtocolError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        finally:
            if watch is not None:
                watch.cancel()
            if response is not None:
                response.release()

    @staticmethod
    def _stream(response: _StreamingResponse, measurement: CallMeasurement, watch: _StallWatch) -> None:
        decoder = StreamEventDecoder()
        feed, event, delta = decoder.feed, measurement.event, measurement.content_delta
        read, clock = response.read_stamped, time.monotonic
        # Each read is stamped with when the kernel received its newest bytes (Linux; over TLS,
        # the raw read's that completed the record), mapped to the monotonic clock: a token that
        # waited in the socket while the loop was busy (a burst of calls ending, the run's
        # stop) keeps its true time. Without a kernel stamp, events are stamped as read.
        last_read = clock()
        # The wall clock minus the monotonic one (see stamped_tls.monotonic_of), read once a call:
        # only a step of the wall clock changes it, and a stamp is never later than its read.
        offset = time.time() - last_read
        while measurement.t_first_token is None:
            data, arrived = read()
            if not data:
                break
            watch.last = read_at = clock()
            now = read_at if arrived is None or arrived - offset > read_at else arrived - offset
            before = measurement.deltas
            for typed in feed(bytes(data)):
                event(typed, now)
            if measurement.t_first_token is not None and arrived is not None:
                # The stamp is the newest segment's: exact for the first token unless a later
                # delta shared its read (the reader fell a token behind and the kernel merged
                # them); then the token came between the last read and that stamp.
                FIRST_TOKEN_LATE.add(0.0 if measurement.deltas - before == 1 else now - last_read)
            last_read = read_at
        else:  # the first token came (a body that ended first skips this)
            while True:
                data, arrived = read()
                if not data:
                    break
                watch.last = now = clock()
                if arrived is not None:
                    arrived -= offset
                    if arrived < now:
                        now = arrived
                # Most reads are one more delta of the block before: timed without an event.
                repeat = decoder.repeat
                if repeat is not None and repeat(data) is not None and (data.isascii() or _is_utf8(data)):
                    delta(decoder.delta_type, now)
                    continue
                for typed in feed(bytes(data)):
                    event(typed, now)  # message_stop's stamp is the call's end (CallMeasurement.finish)
        for typed in decoder.flush():
            event(typed, clock())
        measurement.stream_ended()

    @staticmethod
    def _whole(response: _StreamingResponse, measurement: CallMeasurement, watch: _StallWatch) -> None:
        message = json.loads(_read_body(response, watch, limit=None))
        if not isinstance(message, dict):
            raise ProtocolError("message body is not a JSON object")
        stop_reason, message_id = message.get("stop_reason"), message.get("id")
        measurement.message(
            usage_from(message.get("usage")),
            stop_reason if isinstance(stop_reason, str) else None,
            message_id if isinstance(message_id, str) else None,
        )

    @staticmethod
    def _status_error(status: int, response: _StreamingResponse, watch: _StallWatch) -> CallError:
        # Parsed as the SDK parses an error body: JSON if it is, else the stripped text.
        text = _read_body(response, watch, limit=MAX_ERROR_BODY).decode("utf-8", "replace").strip()
        body: object = text
        with contextlib.suppress(ValueError):
            body = json.loads(text)
        error_type, message = error_detail(body, _headers(response))
        return CallError(Outcome.http(status), f"{error_type}: {message[:200]}")


class _StallWatch:
    """Ends the current greenlet's read with TimeoutError once ``timeout_s`` pass without data.

    The reader stamps ``last`` on every read, an attribute store; the timer wakes once
    per period and only re-arms for the rest of it when something arrived meanwhile.
    """

    __slots__ = ("_greenlet", "_loop", "_timeout", "_timer", "last")

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._greenlet = gevent.getcurrent()
        self._loop = gevent.get_hub().loop
        self.last = time.monotonic()
        self._timer = self._loop.timer(timeout_s)
        self._timer.start(self._check)

    def _check(self) -> None:
        idle = time.monotonic() - self.last
        self._timer.close()
        if idle >= self._timeout:
            self._greenlet.throw(TimeoutError("timed out"))
        else:
            self._timer = self._loop.timer(self._timeout - idle)
            self._timer.start(self._check)

    def cancel(self) -> None:
        self._timer.close()


def _read_body(response: _StreamingResponse, watch: _StallWatch, limit: int | None) -> bytes:
    parts: list[bytes | bytearray] = []
    size = 0
    while limit is None or size < limit:
        data = response.read_some()
        if not data:
            break
        watch.last = time.monotonic()
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def api_headers(config: TransportConfig) -> dict[str, str]:
    """The headers of every request: the Messages API's documented authentication and version.

    Written out rather than taken from an SDK client: importing the SDK costs ~1 s of
    CPU, which is what this transport exists to avoid.
    """
    return {
        "x-api-key": config.api_key,
        "anthropic-version": ANTHROPIC_VERSION,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


def _headers(response: _StreamingResponse) -> _HeaderDict:
    headers: _HeaderDict = response.info()  # type: ignore[assignment]  # its headers_type: no copy needed
    return headers


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE):
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"[:200]
