"""The simulator's HTTP server: routes requests, runs each through the latency model, streams the answer.

Life of a POST /v1/messages: read and validate the body; pick the model profile; decide the whole
response up front (plan.py); wait the base delay and for a batch slot (model.Engine); write the response
head and the opening SSE events; then hand the stream to the shared Scheduler, which writes one
pre-encoded delta per token at the model's current per-stream rate and finishes the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from typing import Any

from . import wire
from .config import SimulatorConfig
from .http import LAST_CHUNK, HttpError, Request, read_request, response_head
from .messages import InvalidRequest, MessagesRequest, parse_messages_request
from .model import Engine, ModelProfile, build_profiles, resolve_model, sample_base_delay
from .plan import ResponsePlan, make_plan
from .scheduler import Scheduler
from .trace import TraceRecord, TraceWriter

_mono = time.monotonic


class Response:
    """Status, headers and body of a non-streamed answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


class StreamJob:
    """One admitted request being generated; the Scheduler calls `tick` once per output token.

    Streaming jobs write items[i] at each tick; non-streaming jobs only keep time and write the whole
    message when the last token is due, so both hold their batch slot for the same simulated duration.
    """

    __slots__ = (
        "done",
        "engine",
        "final",
        "i",
        "items",
        "jitter",
        "n",
        "rand",
        "record",
        "server",
        "transport",
    )

    def __init__(
        self,
        server: Simulator,
        transport: asyncio.BaseTransport,
        engine: Engine,
        items: list[bytes] | None,
        n: int,
        final: bytes,
        record: TraceRecord,
        rng: random.Random,
    ) -> None:
        self.server = server
        self.transport = transport
        self.engine = engine
        self.items = items
        self.n = n
        self.final = final
        self.record = record
        self.rand = rng.random
        self.jitter = engine.profile.step_jitter
        self.i = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def tick(self, now: float, due: float) -> float | None:
        transport = self.transport
        if transport.is_closing():
            self._finish(now, "client_closed")
            return None
        i = self.i
        items = self.items
        if items is not None:
            transport.write(items[i])  # type: ignore[attr-defined]
        if i == 0:
            self.record.t_first_delta = now
        i += 1
        self.i = i
        if i >= self.n:
            self.record.t_last_delta = now
            if items is None:
                transport.write(self.final)  # type: ignore[attr-defined]
            self._finish(_mono(), "ok")
            return None
        return due + self.engine.step_time() * (1.0 + self.jitter * (2.0 * self.rand() - 1.0))

    def _finish(self, now: float, outcome: str) -> None:
        self.engine.release()
        self.record.t_end = now
        self.record.outcome = outcome
        if not self.done.done():
            self.done.set_result(None)


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.profiles: dict[str, ModelProfile] = build_profiles(config.models, config.all_models)
        self.engines: dict[str, Engine] = {name: Engine(p) for name, p in self.profiles.items()}
        self.scheduler = Scheduler()
        self.templates = wire.DeltaTemplates()
        self._ids = random.Random(config.seed)
        self._count = 0
        self.requests = 0
        self.trace = TraceWriter(config.trace) if config.trace else None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._on_connection, self.config.host, self.config.port, backlog=4096, limit=256 * 1024
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.trace is not None:
            self.trace.close()

    # ---- connections -----------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Without TCP_NODELAY, Nagle holds each small SSE write until the client's delayed ACK (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    req = await read_request(reader, self.config.max_body_bytes)
                except HttpError as exc:
                    rid = self._new_id("req_")
                    writer.write(
                        self._encode(
                            Response(exc.status, wire.error_body(exc.status, exc.message, rid)),
                            rid,
                            close=True,
                        )
                    )
                    break
                if req is None:
                    break
                keep = await self._dispatch(req, writer)
                if not keep or writer.is_closing():
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _new_id(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._ids.getrandbits(64):016x}{self._count:08x}"

    def _encode(self, resp: Response, request_id: str, close: bool = False) -> bytes:
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(resp.body))),
            ("request-id", request_id),
            *resp.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        return response_head(resp.status, headers) + resp.body

    async def _dispatch(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        arrival = _mono()
        self.requests += 1
        seq = self.requests
        rid = self._new_id("req_")
        record = TraceRecord(request_id=rid, t_arrival=arrival)
        try:
            if req.method == "POST" and req.path == "/v1/messages":
                resp = await self._messages(req, writer, rid, record, seq)
            elif req.method == "POST" and req.path == "/v1/messages/count_tokens":
                resp = self._count_tokens(req, rid, record)
            elif req.method == "GET" and req.path == "/v1/simulator/stats":
                resp = Response(200, wire.dumps(self.stats()))
            elif req.method == "POST" and req.path == "/v1/simulator/stats/reset":
                self.scheduler.lag.reset()
                resp = Response(200, wire.dumps(self.stats()))
            else:
                resp = self._error(404, f"Not found: {req.method} {req.path}", rid)
        except Exception as exc:  # a bug must answer 500, not kill the connection silently
            resp = self._error(500, f"Internal simulator error: {type(exc).__name__}", rid)
        if resp is not None:
            writer.write(self._encode(resp, rid, close=not req.keep_alive))
            record.status = resp.status
            record.t_end = _mono()
            if not record.outcome:
                record.outcome = "ok" if resp.status == 200 else f"error_{_error_type(resp.body)}"
        if self.trace is not None and req.path.startswith("/v1/messages"):
            self.trace.write(record)
        return req.keep_alive and record.outcome not in ("fault_drop", "client_closed")

    def _error(self, status: int, message: str, rid: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return Response(status, wire.error_body(status, message, rid), headers)

    # ---- endpoints -------------------------------------------------------------------------------

    def _parse(self, req: Request, rid: str, for_count: bool) -> tuple[MessagesRequest, ModelProfile] | Response:
        if req.body_too_large:
            return self._error(413, f"Request exceeds the maximum size of {self.config.max_body_bytes} bytes", rid)
        try:
            body: Any = json.loads(req.body)
        except ValueError:
            return self._error(400, "There was an error parsing the body of your request as JSON", rid)
        try:
            parsed = parse_messages_request(body, for_count=for_count)
        except InvalidRequest as exc:
            return self._error(400, exc.message, rid)
        profile = resolve_model(parsed.model, self.profiles)
        if profile is None:
            return self._error(404, f"model: {parsed.model}", rid)
        return parsed, profile

    def _count_tokens(self, req: Request, rid: str, record: TraceRecord) -> Response:
        got = self._parse(req, rid, for_count=True)
        if isinstance(got, Response):
            return got
        parsed, _ = got
        record.model = parsed.model
        record.input_tokens = parsed.input_tokens
        return Response(200, wire.dumps({"input_tokens": parsed.input_tokens}))

    async def _messages(
        self, req: Request, writer: asyncio.StreamWriter, rid: str, record: TraceRecord, seq: int
    ) -> Response | None:
        got = self._parse(req, rid, for_count=False)
        if isinstance(got, Response):
            return got
        parsed, profile = got
        record.model = parsed.model
        record.stream = parsed.stream
        # One RNG per request, seeded by (seed, arrival number): a run with the same seed and the same
        # request order replays the same lengths and jitter.
        rng = random.Random(f"{self.config.seed}:{seq}")
        plan = make_plan(parsed, profile, rng)
        input_tokens = parsed.input_tokens
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        uncached = input_tokens
        record.input_tokens = input_tokens
        record.output_tokens = plan.output_tokens
        record.stop_reason = plan.stop_reason

        await asyncio.sleep(sample_base_delay(profile, rng))
        engine = self.engines[profile.name]
        t_queue = _mono()
        await engine.acquire()
        try:
            now = _mono()
            record.queue_s = now - t_queue
            first_due = now + uncached / profile.prefill_tokens_per_s + engine.step_time()
            msg_id = self._new_id("msg_")
            transport = writer.transport
            if parsed.stream:
                head, items = self._stream_bytes(rid, msg_id, parsed.model, plan, usage)
                transport.write(head)
                record.t_headers = _mono()
                job = StreamJob(self, transport, engine, items, len(items), b"", record, rng)
            else:
                message = self._message_json(msg_id, parsed.model, plan, usage)
                final = self._encode(Response(200, wire.dumps(message)), rid, close=not req.keep_alive)
                job = StreamJob(self, transport, engine, None, max(1, plan.output_tokens), final, record, rng)
        except BaseException:
            engine.release()
            raise
        self.scheduler.add(first_due, job)
        try:
            await job.done
        except asyncio.CancelledError:
            # Server shutdown: the job may still be in the heap; make it finish on its next tick.
            transport.close()
            raise
        record.status = 200
        if not parsed.stream:
            record.t_headers = record.t_end
        return None

    # ---- response bodies -------------------------------------------------------------------------

    def _message_json(self, msg_id: str, model: str, plan: ResponsePlan, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [b.final_block() for b in plan.blocks],
            "stop_reason": plan.stop_reason,
            "stop_sequence": plan.stop_sequence,
            "usage": {**usage, "output_tokens": plan.output_tokens},
        }

    def _stream_bytes(
        self, rid: str, msg_id: str, model: str, plan: ResponsePlan, usage: dict[str, int]
    ) -> tuple[bytes, list[bytes]]:
        """The bytes written at admission, and one item per token tick (boundary events ride along)."""
        head = response_head(
            200,
            [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache"),
                ("transfer-encoding", "chunked"),
                ("request-id", rid),
            ],
        )
        start_msg: dict[str, Any] = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        opening = head + wire.sse("message_start", {"type": "message_start", "message": start_msg})
        items: list[bytes] = []
        pending = b""
        templates = self.templates
        for index, block in enumerate(plan.blocks):
            start = wire.sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block.start_block()},
            )
            if index == 0:
                opening += start + wire.PING
            else:
                pending += start
            kind = block.delta_type
            for payload in block.deltas:
                items.append(pending + templates.get(index, kind, payload))
                pending = b""
            if block.kind == "thinking":
                pending += wire.sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block.signature},
                    },
                )
            pending += wire.sse("content_block_stop", {"type": "content_block_stop", "index": index})
        pending += wire.sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence},
                "usage": {**usage, "output_tokens": plan.output_tokens},
            },
        )
        pending += wire.sse("message_stop", {"type": "message_stop"}) + LAST_CHUNK
        if items:
            items[-1] += pending
        else:
            items.append(pending)
        return opening, items

    # ---- introspection ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        lag = self.scheduler.lag
        return {
            "requests": self.requests,
            "streams_in_flight": len(self.scheduler),
            "deltas": self.scheduler.ticks,
            "lag_samples": lag.total,
            "lag_p50_s": lag.percentile(0.5),
            "lag_p99_s": lag.percentile(0.99),
            "lag_p999_s": lag.percentile(0.999),
            "lag_max_s": lag.max_s,
            "engines": {n: {"active": e.active, "queued": e.queued} for n, e in self.engines.items()},
        }


def _error_type(body: bytes) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(body)["error"]["type"])
    return "unknown"
