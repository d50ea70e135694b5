"""The simulator's HTTP server: connections, routing, and the life of each Messages API call.

Life of a POST /v1/messages (class Call): authenticate; validate; resolve the model profile; charge the
rate limiter; pick a fault; decide the whole response (plan.py) and its prompt-cache usage; wait the
sampled base delay (timer); wait for a batch slot (model.Engine); write the response head and opening SSE
events; then the shared Scheduler calls `Call.tick` once per output token until the response is written.

Connections are asyncio Protocols fed by a push parser (http.RequestParser), and a call is a chain of
callbacks rather than a coroutine: at thousands of concurrent streams every per-connection object
(Task, coroutine, StreamReader, Future) adds to the cyclic garbage collector's pauses, which show up
directly as send lag. Measured: asyncio streams + a Task per connection gave 40-100 ms full-collection
pauses at 3,000 streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from . import wire
from .cache import CacheUsage, PromptCache
from .config import SimulatorConfig
from .faults import FAULT_HEADER, FaultConfig, FaultInjector
from .http import LAST_CHUNK, HttpError, Request, RequestParser, response_head
from .messages import InvalidRequest, MessagesRequest, parse_messages_request
from .model import Engine, ModelProfile, build_profiles, resolve_model, sample_base_delay
from .plan import ResponsePlan, make_plan
from .platform import PlatformRequest
from .ratelimit import RateLimiter, key_id, limits_from_config
from .router import Router
from .scheduler import Scheduler
from .trace import TraceRecord, TraceWriter

_mono = time.monotonic

OVERLOADED_MESSAGE = "Overloaded"


class Response:
    """Status, headers and body of a complete (non-streamed) answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


class Connection(asyncio.Protocol):
    """One client connection: parses requests and serves them one at a time, in order (keep-alive)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.parser = RequestParser(sim.config.max_body_bytes)
        self.queue: deque[Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.call: Call | None = None
        self.busy = False
        self.closed = False
        self._dispatching = False
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Without TCP_NODELAY, Nagle holds each small SSE write until the client's delayed ACK (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sim.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.parser.feed(data)
        except HttpError as exc:
            self.sim.reject_unparsable(self, exc)
            return
        if requests:
            self.queue.extend(requests)
            if len(self.queue) > 16 and not self._paused and self.transport is not None:
                self.transport.pause_reading()  # a client pipelining without reading: stop buffering it
                self._paused = True
            self._next()

    def _next(self) -> None:
        if self._dispatching:
            return  # a request answered synchronously: the loop below picks up the next one
        self._dispatching = True
        try:
            while not self.busy and self.queue and not self.closed:
                self.busy = True
                self.sim.handle(self, self.queue.popleft())
        finally:
            self._dispatching = False
        if self._paused and len(self.queue) < 4 and self.transport is not None:
            self.transport.resume_reading()
            self._paused = False

    def write(self, data: bytes) -> None:
        transport = self.transport
        # A transport that is closing (peer gone, connection_lost not yet delivered) must not be written:
        # asyncio would log a warning per write.
        if transport is not None and not self.closed and not transport.is_closing():
            transport.write(data)

    def response_done(self, keep_alive: bool) -> None:
        self.call = None
        self.busy = False
        if self.closed:
            return
        if not keep_alive:
            self.close()
            return
        self._next()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flushes what was written, then FIN

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.sim.connections.discard(self)
        if self.call is not None:
            self.call.client_gone()


class Call:
    """One admitted-or-waiting POST /v1/messages; the Scheduler's ticker once it is generating.

    Streaming calls write items[i] at each tick; non-streaming calls only keep time and write the whole
    message when the last token is due, so both hold their batch slot for the same simulated duration.
    """

    __slots__ = (
        "abandoned",
        "conn",
        "engine",
        "fault",
        "fault_at",
        "i",
        "items",
        "jitter",
        "keep_alive",
        "model",
        "n",
        "plan",
        "platform",
        "profile",
        "rand",
        "record",
        "rid",
        "rl_headers",
        "rng",
        "sim",
        "state",
        "stream",
        "t_queue",
        "timer",
        "transport",
        "usage",
    )

    def __init__(
        self,
        sim: Simulator,
        conn: Connection,
        req: Request,
        rid: str,
        record: TraceRecord,
        rng: random.Random,
        parsed: MessagesRequest,
        profile: ModelProfile,
        plan: ResponsePlan,
        usage: CacheUsage,
        fault: str | None,
        rl_headers: list[tuple[str, str]],
    ) -> None:
        self.sim = sim
        self.conn = conn
        assert conn.transport is not None  # requests only arrive on connected transports
        self.transport = conn.transport
        self.keep_alive = req.keep_alive
        self.rid = rid
        self.record = record
        self.rng = rng
        self.rand = rng.random
        # Keep only what the response needs: the parsed request (one object per prompt block) would
        # otherwise live, and be scanned by the garbage collector, for the whole response.
        self.model = parsed.model
        self.stream = parsed.stream
        self.profile = profile
        self.engine = sim.engines[profile.name]
        self.jitter = profile.step_jitter
        self.plan = plan
        self.usage = usage
        self.fault = fault
        self.rl_headers = rl_headers
        self.platform: PlatformRequest | None = None  # set for a Bedrock or Vertex request
        self.abandoned = False
        self.state = "delay"
        self.timer: asyncio.TimerHandle | None = None
        self.t_queue = 0.0
        self.items: list[bytes] | None = None
        self.i = 0
        # One tick per generated token: the time it takes does not depend on how much of it is shown.
        self.n = max(1, plan.output_tokens)
        self.fault_at = -1
        if fault in ("drop", "stream_error", "stall"):
            # Mid-response: after at least one delta when there is more than one.
            self.fault_at = rng.randint(1, self.n - 1) if self.n > 1 else 0

    # ---- before the first token ------------------------------------------------------------------

    def start(self) -> None:
        delay = sample_base_delay(self.profile, self.rng)
        if self.fault == "slow_headers":
            delay += self.sim.faults.config.slow_headers_s
        self.timer = asyncio.get_running_loop().call_later(delay, self._after_delay)

    def _after_delay(self) -> None:
        try:
            self._admit()
        except Exception as exc:
            traceback.print_exc()
            self.crash(exc)

    def _admit(self) -> None:
        self.timer = None
        if self.fault in ("overloaded", "api_error", "rate_limit"):
            self.state = "done"
            self.sim.fault_response(self)
            return
        self.state = "queued"
        self.t_queue = _mono()
        if self.engine.acquire(self):
            self.on_slot()

    def on_slot(self) -> None:
        try:
            self._admitted()
        except Exception as exc:  # called from another call's release: never let it fail that call
            traceback.print_exc()
            self.crash(exc)

    def _admitted(self) -> None:
        now = _mono()
        self.state = "running"
        self.record.queue_s = now - self.t_queue
        u = self.usage
        first_due = now + self.profile.prefill_s(u.created + u.uncached, u.read) + self.engine.step_time()
        if self.fault_at == 0 and self.fault == "stall":
            first_due += self.sim.faults.config.stall_s
        if self.stream:
            opening, self.items = self.sim.stream_bytes(self)
            self.conn.write(opening)
            self.record.t_headers = _mono()
        self.sim.scheduler.add(first_due, self)

    def client_gone(self) -> None:
        """The connection closed under us: stop waiting, or stop generating at the next tick."""
        self.abandoned = True
        if self.state == "delay":
            if self.timer is not None:
                self.timer.cancel()
            self._end(_mono(), "client_closed", release=False)
        elif self.state == "queued":
            self._end(_mono(), "client_closed", release=False)  # Engine.release skips abandoned waiters

    # ---- generating (called by the Scheduler) ----------------------------------------------------

    def tick(self, now: float, due: float) -> float | None:
        if self.abandoned:
            self._end(now, "client_closed", release=True)
            return None
        i = self.i
        if i == self.fault_at and self.fault != "stall":
            self._mid_response_fault(now)
            return None
        items = self.items
        if items is not None:
            transport = self.transport
            if not transport.is_closing():  # the peer is gone; connection_lost will follow
                transport.write(items[i])
            if i == 0:
                self.record.t_first_delta = now
        i += 1
        self.i = i
        if i >= self.n:
            if items is None:
                self.conn.write(self.sim.final_message(self))
            else:
                self.record.t_last_delta = now
            self.record.status = 200
            self._end(_mono(), "ok", release=True)
            return None
        gap = self.engine.step * (1.0 + self.jitter * (2.0 * self.rand() - 1.0))
        if i == self.fault_at and self.fault == "stall":  # the next tick is a stall: it starts late
            gap += self.sim.faults.config.stall_s
        return due + gap

    def _mid_response_fault(self, now: float) -> None:
        if self.i > 0 and self.items is not None:
            self.record.t_last_delta = now
        if self.fault == "drop":
            self.record.status = 200 if self.stream else 0
            self.conn.close()
            self._end(now, "fault_drop", release=True, keep_alive=False)
            return
        # stream_error
        if self.stream and self.platform is not None:
            self.conn.write(self.platform.stream_error())
            self.record.status = 200
        elif self.stream:
            error = {"type": "error", "error": {"type": "overloaded_error", "message": OVERLOADED_MESSAGE}}
            self.conn.write(wire.sse("error", error) + LAST_CHUNK)
            self.record.status = 200
        else:
            resp = self.sim.error(529, OVERLOADED_MESSAGE, self.rid, self.rl_headers)
            self.conn.write(self.sim.encode(resp, self.rid, close=not self.keep_alive, platform=self.platform))
            self.record.status = 529
        self._end(_mono(), "fault_stream_error", release=True)

    def crash(self, exc: BaseException) -> None:
        """A bug in the simulator hit this call: free its slot, close its connection, trace it."""
        if self.state == "done":
            return
        self.abandoned = True  # if still queued, the engine skips it
        self.conn.close()
        self.record.status = self.record.status or 500
        self._end(_mono(), f"simulator_bug_{type(exc).__name__}", release=self.state == "running", keep_alive=False)

    def _end(self, now: float, outcome: str, release: bool, keep_alive: bool | None = None) -> None:
        if release:
            self.engine.release()
        self.state = "done"
        self.record.t_end = now
        self.record.outcome = outcome
        self.sim.trace_write(self.record)
        self.conn.response_done(self.keep_alive if keep_alive is None else keep_alive)


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.profiles: dict[str, ModelProfile] = build_profiles(config.models, config.all_models)
        self.engines: dict[str, Engine] = {name: Engine(p) for name, p in self.profiles.items()}
        self.scheduler = Scheduler()
        self.templates = wire.DeltaTemplates()
        self.limiter = RateLimiter(limits_from_config(config.rate_limits))
        self.faults = FaultInjector(FaultConfig.from_dict(config.faults), _mono())
        self.cache = PromptCache()
        # Bedrock and Vertex paths (platform.py); None when only the first-party API is served.
        self.router = Router(config) if config.platform != "anthropic" else None
        self.connections: set[Connection] = set()
        self._ids = random.Random(config.seed)
        self._count = 0
        self.requests = 0
        self.trace = TraceWriter(config.trace) if config.trace else None
        self._server: asyncio.Server | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), self.config.host, self.config.port, backlog=4096
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)  # let the transports report connection_lost
        if self.trace is not None:
            self.trace.close()

    # ---- plumbing --------------------------------------------------------------------------------

    def _new_id(self, prefix: str, record: TraceRecord | None = None) -> str:
        self._count += 1
        new = f"{prefix}{self._ids.getrandbits(64):016x}{self._count:08x}"
        if record is not None:
            record.message_id = new
        return new

    def encode(
        self, resp: Response, request_id: str, close: bool = False, platform: PlatformRequest | None = None
    ) -> bytes:
        if platform is not None:
            return platform.encode(resp.status, resp.body, resp.headers, request_id, close)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(resp.body))),
            ("request-id", request_id),
            *resp.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        return response_head(resp.status, headers) + resp.body

    def error(self, status: int, message: str, rid: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return Response(status, wire.error_body(status, message, rid), headers)

    def trace_write(self, record: TraceRecord) -> None:
        if self.trace is not None:
            self.trace.write(record)

    def reject_unparsable(self, conn: Connection, exc: HttpError) -> None:
        rid = self._new_id("req_")
        conn.write(self.encode(self.error(exc.status, exc.message, rid), rid, close=True))
        conn.close()

    def _respond(
        self, conn: Connection, req: Request, record: TraceRecord, resp: Response, platform: PlatformRequest | None
    ) -> None:
        conn.write(self.encode(resp, record.request_id, close=not req.keep_alive, platform=platform))
        record.status = resp.status
        record.t_end = _mono()
        if not record.outcome:
            record.outcome = "ok" if resp.status == 200 else f"error_{_error_type(resp.body)}"
        if req.path.startswith("/v1/messages") or platform is not None:
            self.trace_write(record)
        conn.response_done(req.keep_alive)

    # ---- routing ---------------------------------------------------------------------------------

    def handle(self, conn: Connection, req: Request) -> None:
        arrival = _mono()
        self.requests += 1
        seq = self.requests
        rid = self._new_id("req_")
        record = TraceRecord(request_id=rid, t_arrival=arrival)
        platform = None
        try:
            platform = self.router.match(req) if self.router is not None else None
            if platform is None:
                resp = self._route(conn, req, rid, record, seq)
            else:
                resp = self._platform_route(conn, req, rid, record, seq, platform)
        except Exception as exc:  # a bug must answer 500, not kill the connection silently
            resp = self.error(500, f"Internal simulator error: {type(exc).__name__}", rid)
        if resp is not None:
            self._respond(conn, req, record, resp, platform)

    def _route(self, conn: Connection, req: Request, rid: str, record: TraceRecord, seq: int) -> Response | None:
        path, method = req.path, req.method
        if path.startswith("/v1/simulator/"):
            if method == "GET" and path == "/v1/simulator/stats":
                return Response(200, wire.dumps(self.stats()))
            if method == "POST" and path == "/v1/simulator/stats/reset":
                self.scheduler.lag.reset()
                return Response(200, wire.dumps(self.stats()))
            return self.error(404, f"Not found: {method} {path}", rid)
        api_key = _api_key(req)
        if self.config.require_key is not None and api_key != self.config.require_key:
            # Never echo the key, not even a prefix of it.
            return self.error(401, "invalid x-api-key", rid)
        key = key_id(api_key)
        if method == "POST" and path == "/v1/messages":
            return self._messages(conn, req, rid, record, seq, key)
        if method == "POST" and path == "/v1/messages/count_tokens":
            return self._count_tokens(req, rid, record, key)
        if method == "GET" and path == "/v1/models":
            return Response(200, wire.dumps(self._models()), self.limiter.peek(key, _mono()))
        return self.error(404, f"Not found: {method} {path}", rid, self.limiter.peek(key, _mono()))

    def _platform_route(
        self, conn: Connection, req: Request, rid: str, record: TraceRecord, seq: int, platform: PlatformRequest
    ) -> Response | None:
        refusal = platform.check(req)
        if refusal is not None:
            return Response(*refusal)
        key = key_id(platform.key)
        if req.method == "POST" and platform.operation == "messages":
            return self._messages(conn, req, rid, record, seq, key, platform)
        if req.method == "POST" and platform.operation == "count_tokens":
            return self._count_tokens(req, rid, record, key, platform)
        return self.error(404, f"Not found: {req.method} {req.path}", rid)

    # ---- endpoints -------------------------------------------------------------------------------

    def _parse(
        self,
        req: Request,
        rid: str,
        for_count: bool,
        rl: list[tuple[str, str]],
        platform: PlatformRequest | None = None,
    ) -> tuple[MessagesRequest, ModelProfile] | Response:
        if req.body_too_large:
            message = f"Request exceeds the maximum allowed number of bytes ({self.config.max_body_bytes})"
            return self.error(413, message, rid, rl)
        try:
            body: Any = json.loads(req.body)
        except ValueError:
            return self.error(400, "There was an error parsing the body of your request as JSON", rid, rl)
        try:
            if platform is not None:
                body = platform.prepare(body)
            parsed = parse_messages_request(body, for_count=for_count)
        except InvalidRequest as exc:
            return self.error(400, exc.message, rid, rl)
        profile = resolve_model(parsed.model, self.profiles)
        if profile is None:
            return self.error(404, f"model: {parsed.model}", rid, rl)
        return parsed, profile

    def _count_tokens(
        self, req: Request, rid: str, record: TraceRecord, key: str, platform: PlatformRequest | None = None
    ) -> Response:
        rl = self.limiter.peek(key, _mono())
        got = self._parse(req, rid, True, rl, platform)
        if isinstance(got, Response):
            return got
        parsed, _ = got
        record.model = parsed.model
        record.input_tokens = parsed.input_tokens
        return Response(200, wire.dumps({"input_tokens": parsed.input_tokens}), rl)

    def _messages(
        self,
        conn: Connection,
        req: Request,
        rid: str,
        record: TraceRecord,
        seq: int,
        key: str,
        platform: PlatformRequest | None = None,
    ) -> Response | None:
        now = _mono()
        got = self._parse(req, rid, False, self.limiter.peek(key, now), platform)
        if isinstance(got, Response):
            return got
        parsed, profile = got
        record.model = parsed.model
        record.stream = parsed.stream
        # One RNG per request, seeded by (seed, arrival number): a run with the same seed and the same
        # request order replays the same lengths, jitter and faults.
        rng = random.Random(f"{self.config.seed}:{seq}")
        plan = make_plan(parsed, profile, rng)
        usage = self.cache.apply(f"{key}:{profile.name}", parsed.units, profile.cache_min_tokens, now)
        record.input_tokens = usage.uncached
        record.cache_read_input_tokens = usage.read
        record.cache_creation_input_tokens = usage.created
        decision = self.limiter.admit(key, now, usage.uncached + usage.created, plan.output_tokens)
        if not decision.allowed:
            retry = str(max(1, round(decision.retry_after_s + 0.5)))
            return self.error(429, decision.message, rid, [*decision.headers, ("retry-after", retry)])
        # Its own RNG: which requests a fault hits must not shift when the length model draws more or less.
        fault = self.faults.pick(now, random.Random(f"{self.config.seed}:{seq}:fault"), req.headers.get(FAULT_HEADER))
        record.output_tokens = plan.output_tokens
        record.stop_reason = plan.stop_reason
        call = Call(self, conn, req, rid, record, rng, parsed, profile, plan, usage, fault, decision.headers)
        call.platform = platform
        conn.call = call
        call.start()
        return None

    def fault_response(self, call: Call) -> None:
        """Answer a call whose fault replaces the response (529, 500 or 429)."""
        fault, rid = call.fault, call.rid
        headers = list(call.rl_headers)
        if fault == "overloaded":
            resp = self.error(529, OVERLOADED_MESSAGE, rid, headers)
        elif fault == "api_error":
            resp = self.error(500, "Internal server error", rid, headers)
        else:
            retry = self.faults.config.retry_after_s
            headers.append(("retry-after", str(max(1, round(retry)))))
            resp = self.error(
                429,
                "Number of request tokens has exceeded your per-minute rate limit (simulated fault)",
                rid,
                headers,
            )
        record = call.record
        record.outcome = f"fault_{fault}"
        record.input_tokens = record.output_tokens = None
        record.cache_read_input_tokens = record.cache_creation_input_tokens = None
        record.stop_reason = None
        conn = call.conn
        conn.write(self.encode(resp, rid, close=not call.keep_alive, platform=call.platform))
        record.status = resp.status
        record.t_end = _mono()
        self.trace_write(record)
        conn.response_done(call.keep_alive)

    def _models(self) -> dict[str, Any]:
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": f"{name} (simulated)",
                "created_at": "2025-01-01T00:00:00Z",
            }
            for name in self.profiles
        ]
        return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}

    # ---- response bodies -------------------------------------------------------------------------

    def _usage(self, call: Call) -> dict[str, int]:
        u = call.usage
        return {
            "input_tokens": u.uncached,
            "cache_creation_input_tokens": u.created,
            "cache_read_input_tokens": u.read,
        }

    def final_message(self, call: Call) -> bytes:
        plan = call.plan
        message = {
            "id": self._new_id("msg_", call.record),
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [b.final_block() for b in plan.blocks],
            "stop_reason": plan.stop_reason,
            "stop_sequence": plan.stop_sequence,
            "usage": {**self._usage(call), "output_tokens": plan.output_tokens},
        }
        call.record.t_headers = _mono()
        resp = Response(200, wire.dumps(message), call.rl_headers)
        return self.encode(resp, call.rid, close=not call.keep_alive, platform=call.platform)

    def stream_bytes(self, call: Call) -> tuple[bytes, list[bytes]]:
        """The bytes written at admission, and one item per token tick (boundary events ride along)."""
        plan = call.plan
        usage = self._usage(call)
        framer = call.platform.framer if call.platform is not None else None
        sse: Callable[[str, Any], bytes]
        if framer is None:
            head = response_head(
                200,
                [
                    ("content-type", "text/event-stream; charset=utf-8"),
                    ("cache-control", "no-cache"),
                    ("transfer-encoding", "chunked"),
                    ("request-id", call.rid),
                    *call.rl_headers,
                    *([("connection", "close")] if not call.keep_alive else []),
                ],
            )
            sse, ping, templates, end = wire.sse, wire.PING, self.templates, LAST_CHUNK
        else:  # a platform's own framing (Bedrock's event stream) and headers
            head = framer.head(call.rid, call.keep_alive)
            sse, ping, templates, end = framer.event, framer.ping, framer.templates, framer.end
        start_msg: dict[str, Any] = {
            "id": self._new_id("msg_", call.record),
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        opening = head + sse("message_start", {"type": "message_start", "message": start_msg})
        items: list[bytes] = []
        pending = b""
        for index, block in enumerate(plan.blocks):
            start = sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block.start_block()},
            )
            if index == 0:
                opening += start + ping
            else:
                pending += start
            kind = block.delta_type
            for payload in block.deltas:
                items.append(pending + templates.get(index, kind, payload))
                pending = b""
            if block.kind == "thinking":
                signature = {"type": "signature_delta", "signature": block.signature}
                pending += sse(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": signature}
                )
            pending += sse("content_block_stop", {"type": "content_block_stop", "index": index})
        pending += sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence},
                "usage": {**usage, "output_tokens": plan.output_tokens},
            },
        )
        pending += sse("message_stop", {"type": "message_stop"}) + end
        # Tokens that are generated but not shown (a stop sequence) still take their tick.
        while len(items) < call.n:
            items.append(b"")
        items[-1] += pending
        return opening, items

    # ---- introspection ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        lag = self.scheduler.lag
        return {
            "requests": self.requests,
            "connections": len(self.connections),
            "streams_in_flight": len(self.scheduler),
            "deltas": self.scheduler.ticks,
            "lag_samples": lag.total,
            "lag_p50_s": lag.percentile(0.5),
            "lag_p99_s": lag.percentile(0.99),
            "lag_p999_s": lag.percentile(0.999),
            "lag_max_s": lag.max_s,
            "engines": {n: {"active": e.active, "queued": e.queued} for n, e in self.engines.items()},
        }


def _api_key(req: Request) -> str | None:
    key = req.headers.get("x-api-key")
    if key:
        return key
    auth = req.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def _error_type(body: bytes) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(body)["error"]["type"])
    return "unknown"
