"""The fast transport (``--transport fast``): raw HTTP/1.1 on geventhttpclient, SSE read by line.

Why it exists: the anthropic SDK costs ~90 µs of CPU per content delta under gevent,
so one core saturates near 3,500 deltas/s and its event-loop lag inflates every TTFT
it measures. This path keeps only what the metrics need on the hot path:

* geventhttpclient's connection pool (connect and read timeouts, TLS, keep-alive) and
  its C HTTP parser (llhttp) for status, headers and chunked bodies (the pools and the
  stamped response in :mod:`harness.transports.fast_http`);
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
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import gevent
from geventhttpclient.connectionpool import ConnectionPool
from geventhttpclient.response import HTTPParseError

from harness.core.errors import CallError, ProtocolError
from harness.core.measure import CONNECTION, TIMEOUT, CallMeasurement, Outcome, error_detail
from harness.core.request import MessageRequest
from harness.core.stream_decoder import StreamEventDecoder
from harness.core.stream_events import StreamEvent, usage_from
from harness.transports.base import FIRST_TOKEN_LATE, TransportConfig
from harness.transports.fast_http import READ_BLOCK, HeaderDict, Pool, SSLPool, StreamingResponse, send_all

__all__ = ["FastTransport"]

# Each stream may hold its connection for the whole call; the pool must never make a user wait.
POOL_SIZE = 100_000
# An error body larger than this is cut: only its error type and message are kept.
MAX_ERROR_BODY = 64 * 1024
MESSAGES_PATH = "/v1/messages"
ANTHROPIC_VERSION = "2023-06-01"
USER_AGENT = "llm-loadtest-harness (geventhttpclient)"


def _is_utf8(data: bytes | bytearray) -> bool:
    # A delta of non-ASCII text (CJK, accents) is still one more delta: decoding the chunk
    # checks it in C, where handing it to feed() would match and build it all over again.
    # Invalid bytes do go to feed(), which raises the ProtocolError the SDK path gives.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
            pool = SSLPool(host, port, host, port, insecure=not config.verify_tls, **pool_args)
            if not config.verify_tls:
                # geventhttpclient's `insecure` only stops the host-name check: the certificate
                # would still be verified, and a self-signed endpoint refused.
                pool.ssl_context.verify_mode = ssl.CERT_NONE
            self._pool: ConnectionPool = pool
        else:
            self._pool = Pool(host, port, host, port, **pool_args)
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
        response: StreamingResponse | None = None
        watch: _StallWatch | None = None
        try:
            sock = self._pool.get_socket()
            try:
                measurement.request_sent()
                # From here one watch bounds every wait of the call, send, head and body.
                sock.settimeout(None)
                watch = _StallWatch(self.config.timeout_s)
                send_all(sock, data)
            except BaseException:
                self._pool.release_socket(sock)
                raise
            # From here the response owns the socket: it releases it itself, even when reading
            # the head fails (releasing twice would over-release the pool's semaphore).
            response = StreamingResponse(sock, self._pool, block_size=READ_BLOCK, method="POST")
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
    def _stream(response: StreamingResponse, measurement: CallMeasurement, watch: _StallWatch) -> None:
        decoder = StreamEventDecoder()
        feed, event, delta = decoder.feed, measurement.event, measurement.content_delta
        read, clock = response.read_stamped, time.monotonic
        offset = read_until_first_token(read, lambda data: feed(bytes(data)), measurement, watch)
        if offset is not None:  # the first token came (a body that ended first skips this)
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
    def _whole(response: StreamingResponse, measurement: CallMeasurement, watch: _StallWatch) -> None:
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
    def _status_error(status: int, response: StreamingResponse, watch: _StallWatch) -> CallError:
        # Parsed as the SDK parses an error body: JSON if it is, else the stripped text.
        text = _read_body(response, watch, limit=MAX_ERROR_BODY).decode("utf-8", "replace").strip()
        body: object = text
        with contextlib.suppress(ValueError):
            body = json.loads(text)
        error_type, message = error_detail(body, _headers(response))
        return CallError(Outcome.http(status), f"{error_type}: {message[:200]}")


def read_until_first_token(
    read: Callable[[], tuple[bytes | bytearray, float | None]],
    feed: Callable[[bytes | bytearray], Iterable[StreamEvent]],
    measurement: CallMeasurement,
    watch: _StallWatch,
) -> float | None:
    """Read and handle a stream's events up to its first token; the clock offset for the rest.

    Each read is stamped with when the kernel received its newest bytes (Linux; over TLS, the
    raw read's that completed the record), mapped to the monotonic clock: a token that waited
    in the socket while the loop was busy (a burst of calls ending, the run's stop) keeps its
    true time. Without a kernel stamp, events are stamped as read. The first token's possible
    lateness goes to :data:`FIRST_TOKEN_LATE`. Returns the wall clock minus the monotonic one
    (see stamped_tls.monotonic_of), read once a call (only a step of the wall clock changes
    it, and a stamp is never later than its read), to map the later reads' stamps; ``None``
    when the body ended before a first token.
    """
    event, clock = measurement.event, time.monotonic
    last_read = clock()
    offset = time.time() - last_read
    while measurement.t_first_token is None:
        data, arrived = read()
        if not data:
            return None
        watch.last = read_at = clock()
        now = read_at if arrived is None or arrived - offset > read_at else arrived - offset
        before = measurement.deltas
        for typed in feed(data):
            event(typed, now)
        if measurement.t_first_token is not None and arrived is not None:
            # The stamp is the newest segment's: exact for the first token unless a later
            # delta shared its read (the reader fell a token behind and the kernel merged
            # them); then the token came between the last read and that stamp.
            FIRST_TOKEN_LATE.add(0.0 if measurement.deltas - before == 1 else now - last_read)
        last_read = read_at
    return offset


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


def _read_body(response: StreamingResponse, watch: _StallWatch, limit: int | None) -> bytes:
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


def _headers(response: StreamingResponse) -> HeaderDict:
    headers: HeaderDict = response.info()  # type: ignore[assignment]  # its headers_type: no copy needed
    return headers


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE):
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"[:200]
