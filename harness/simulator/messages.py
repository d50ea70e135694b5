"""Validation of a Messages API request body and the simulator's input-token heuristic.

Validation mirrors the real API's 400 `invalid_request_error` messages for the mistakes a load test is
likely to make (missing `max_tokens`, empty `messages`, a bad role, bad `thinking`), so a harness sees the
same error class from the simulator as from the service.

Input tokens (documented in docs/simulator.md): the prompt is flattened into units in the order the API
caches them (tools, then system, then each message's content blocks); each unit counts
ceil(characters / 4) tokens, where the characters are the text of a text/thinking block, the name plus
JSON of a tool definition or tool_use input, the text of a tool_result, and images/documents count a fixed
1,600 tokens. The total is at least 1.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .length import scan_window

FIXED_MEDIA_TOKENS = 1600


class InvalidRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class PromptUnit:
    """One cacheable piece of the prompt: its tokens, a digest of its content and its cache_control TTL."""

    tokens: int
    digest: bytes
    cache_ttl_s: float | None  # set when the unit carries a cache_control breakpoint


@dataclass(slots=True)
class MessagesRequest:
    model: str
    max_tokens: int
    stream: bool
    stop_sequences: list[str]
    thinking_budget: int | None
    tools: list[dict[str, Any]]
    tool_choice: dict[str, Any]
    last_user_has_tool_result: bool
    units: list[PromptUnit] = field(default_factory=list)
    # The two ends of the system prompt's and the last user turn's text: where length.py looks for
    # "in one sentence" or "explain".
    system_text: str = ""
    last_user_text: str = ""

    @property
    def input_tokens(self) -> int:
        return max(1, sum(u.tokens for u in self.units))


def tokens_for_chars(n: int) -> int:
    return math.ceil(n / 4)


def _ttl(block: Any) -> float | None:
    if not isinstance(block, dict):
        return None
    cc = block.get("cache_control")
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
        return None
    return 3600.0 if cc.get("ttl") == "1h" else 300.0


def _strip(block: Any) -> Any:
    # The breakpoint marker is not part of the cached content: the same block with or without it must
    # hash the same, so that a later request can read what an earlier one wrote.
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _unit(chars: int, content: Any, ttl: float | None, fixed: int | None = None) -> PromptUnit:
    digest = hashlib.blake2b(json.dumps(content, sort_keys=True).encode(), digest_size=16).digest()
    return PromptUnit(tokens=fixed if fixed is not None else tokens_for_chars(chars), digest=digest, cache_ttl_s=ttl)


def _block_chars(block: Any) -> tuple[int, int | None]:
    """(characters, fixed token count or None) of one content block."""
    if isinstance(block, str):
        return len(block), None
    if not isinstance(block, dict):
        return len(json.dumps(block)), None
    kind = block.get("type")
    if kind == "text":
        return len(str(block.get("text", ""))), None
    if kind in ("thinking", "redacted_thinking"):
        return len(str(block.get("thinking", block.get("data", "")))), None
    if kind == "tool_use":
        return len(str(block.get("name", ""))) + len(json.dumps(block.get("input", {}))), None
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return sum(_block_chars(b)[0] for b in content), None
        return len(str(content)), None
    if kind in ("image", "document"):
        return 0, FIXED_MEDIA_TOKENS
    return len(json.dumps(block)), None


def _texts(blocks: list[Any]) -> list[str]:
    """The text of a block list's text blocks (what a reader of the prompt sees as instructions)."""
    return [str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"]


def parse_messages_request(body: Any, *, for_count: bool = False) -> MessagesRequest:
    """Validate a /v1/messages (or count_tokens, `for_count`) body; raise InvalidRequest like the API."""
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model: Field required")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Input should be a valid string")
    max_tokens = body.get("max_tokens", 0 if for_count else None)
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise InvalidRequest("max_tokens: Input should be a valid integer")
    if max_tokens < 1 and not for_count:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean")

    stop_sequences = body.get("stop_sequences") or []
    if not isinstance(stop_sequences, list) or not all(isinstance(s, str) and s for s in stop_sequences):
        raise InvalidRequest("stop_sequences: Input should be a list of non-empty strings")

    thinking_budget: int | None = None
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            raise InvalidRequest("thinking: Input tag must be 'enabled' or 'disabled'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool):
                raise InvalidRequest("thinking.enabled.budget_tokens: Field required")
            if budget < 1024:
                raise InvalidRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if not for_count and max_tokens <= budget:
                raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
            thinking_budget = budget

    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        raise InvalidRequest("tools: each tool must be an object with a string `name`")
    tool_choice = body.get("tool_choice") or {"type": "auto"}
    if not isinstance(tool_choice, dict) or tool_choice.get("type") not in ("auto", "any", "tool", "none"):
        raise InvalidRequest("tool_choice: Input tag must be one of 'auto', 'any', 'tool', 'none'")
    if tool_choice["type"] == "tool" and not any(t["name"] == tool_choice.get("name") for t in tools):
        raise InvalidRequest(f"tool_choice: tool {tool_choice.get('name')!r} is not in `tools`")

    units: list[PromptUnit] = []
    for tool in tools:
        chars = (
            len(tool["name"]) + len(str(tool.get("description", ""))) + len(json.dumps(tool.get("input_schema", {})))
        )
        units.append(_unit(chars, _strip(tool), _ttl(tool)))
    system = body.get("system")
    system_text = ""
    if isinstance(system, str):
        units.append(_unit(len(system), system, None))
        system_text = scan_window(system)
    elif isinstance(system, list):
        system_text = scan_window("\n".join(_texts(system)))
        for block in system:
            chars, fixed = _block_chars(block)
            units.append(_unit(chars, _strip(block), _ttl(block), fixed))
    elif system is not None:
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")

    last_user_has_tool_result = False
    last_user_text = ""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        content = message["content"]
        # The role is part of what is cached: hash it with the first unit of each message.
        if isinstance(content, str):
            units.append(_unit(len(content), [role, content], None))
            blocks: list[Any] = []
        elif isinstance(content, list):
            blocks = content
            for j, block in enumerate(blocks):
                chars, fixed = _block_chars(block)
                clean = _strip(block)
                units.append(_unit(chars, [role, clean] if j == 0 else clean, _ttl(block), fixed))
        else:
            raise InvalidRequest(f"messages.{i}.content: Input should be a valid string or list")
        if role == "user":
            last_user_has_tool_result = any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
            last_user_text = scan_window(content if isinstance(content, str) else "\n".join(_texts(blocks)))

    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        stop_sequences=list(stop_sequences),
        thinking_budget=thinking_budget,
        tools=list(tools),
        tool_choice=tool_choice,
        last_user_has_tool_result=last_user_has_tool_result,
        units=units,
        system_text=system_text,
        last_user_text=last_user_text,
    )
