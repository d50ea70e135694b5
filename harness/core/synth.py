"""Request bodies for trace lines: prompts of a recorded length whose shared prefixes hit the prompt cache.

A trace records lengths, not text, so each line's prompt is synthesised (the filler prose of
:func:`harness.prompts.text_of_chars`):

* the line's ``hash_ids`` become ``system`` text blocks, one per id, :data:`BLOCK_TOKENS` (512,
  Mooncake's block size) each, the last one shorter if the line ends inside it; the text of a
  block depends on its id only, so lines that share ids share a prefix, and lines with different
  ids do not (a shorter cut of a block is a prefix of its full text);
* ``cache_control`` marks the ends of the prefixes this line shares with other lines of the trace
  (found with a trie over all lines' ids), at most four per request as the API allows: the three
  shortest (shared by the most lines) and the longest; prefixes under ``min_cache_tokens`` are not
  marked, as the API would not cache them;
* a conversation's turns (``session_id``) send the earlier turns as their history
  (:meth:`TracePrompts.next_history`: each turn as sent, then a stand-in answer of the recorded
  output length), all in content-block form so a prefix reads the same in every later turn. A turn
  that another turn follows marks the end of its own user turn (where the cache is written), and a
  turn with history marks the end of the last user turn in it (where the previous turn wrote), so
  each turn reads its history from the cache as the API's multi-turn caching advice does;
* the new user turn is fresh filler, seeded by the line (and loop), holding what the blocks and the
  history leave of ``input_tokens`` (at least :data:`USER_TOKENS`);
* ``max_tokens`` is the recorded output length (at least 1), and ``model`` the line's, if any.

Lengths are converted to characters by a :class:`Calibration`: the target's tokens per character
of this filler, measured with its ``count_tokens`` endpoint (:meth:`Calibration.measure`), so
"1,000 input tokens" means 1,000 of the target's tokens. Without one, 4 characters per token (the
simulator's count; see harness/simulator/messages.py). A line with a full ``request`` body is
sent as recorded. Nothing here does I/O: ``measure`` is handed the function that calls the target.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.errors import ConfigError
from harness.core.prompts import CHARS_PER_TOKEN, text_of_chars
from harness.core.trace import TraceLine

__all__ = ["BLOCK_TOKENS", "MAX_BREAKPOINTS", "USER_TOKENS", "Calibration", "TracePrompts"]

BLOCK_TOKENS = 512
MAX_BREAKPOINTS = 4  # the Messages API refuses more cache_control blocks in one request
USER_TOKENS = 8  # the API refuses an empty user turn: keep a few tokens of the budget for it
BLOCK_CACHE = 4096  # block texts kept (~2 KB each), so a replay rebuilds a shared prefix once
CALIBRATION_CHARS = (2_000, 20_000)  # two sizes: a slope (tokens per char) and an intercept (framing)

Request = dict[str, Any]


@dataclass(frozen=True)
class Calibration:
    """How the target counts this filler: ``tokens = overhead_tokens + tokens_per_char * chars``."""

    tokens_per_char: float = 1 / CHARS_PER_TOKEN
    overhead_tokens: float = 0.0  # what a request counts besides its text (message framing)

    def __post_init__(self) -> None:
        if not self.tokens_per_char > 0:
            raise ConfigError(f"a calibration of {self.tokens_per_char:g} tokens per character must be above 0")

    def chars_for(self, tokens: int) -> int:
        """Characters of filler that the target counts as ``tokens`` tokens."""
        return max(0, round(tokens / self.tokens_per_char))

    def tokens_of(self, chars: int) -> int:
        return round(chars * self.tokens_per_char)

    @classmethod
    def from_counts(cls, samples: Sequence[tuple[int, int]]) -> Calibration:
        """Fit (characters, counted tokens) pairs: a ratio from one pair, a line through two or more."""
        if not samples or any(c <= 0 or t <= 0 for c, t in samples):
            raise ConfigError(f"count_tokens gave {list(samples)} (characters, tokens); cannot calibrate from it")
        if len({c for c, _ in samples}) < 2:
            chars, tokens = samples[0]
            return cls(tokens / chars)
        slope, intercept = statistics.linear_regression([c for c, _ in samples], [t for _, t in samples])
        if not slope > 0:
            raise ConfigError(f"count_tokens gave {list(samples)} (characters, tokens): more text counted no more")
        return cls(slope, max(0.0, intercept))

    @classmethod
    def requests(cls, model: str, sizes: Sequence[int] = CALIBRATION_CHARS) -> list[tuple[int, Request]]:
        """The count_tokens bodies to send: (characters of filler, body), one per size."""
        rng = random.Random("calibration")
        return [(n, {"model": model, "messages": [{"role": "user", "content": text_of_chars(n, rng)}]}) for n in sizes]

    @classmethod
    def measure(cls, count_tokens: Callable[[Request], int], model: str) -> Calibration:
        """Count :meth:`requests` with ``count_tokens`` (body -> the target's ``input_tokens``) and fit."""
        return cls.from_counts([(chars, int(count_tokens(body))) for chars, body in cls.requests(model)])


class _Trie:
    """How many lines start with each prefix of hash ids."""

    def __init__(self) -> None:
        self.children: dict[tuple[int, int], int] = {}  # (node, hash id) -> node
        self.counts: list[int] = [0]

    def add(self, ids: Sequence[int]) -> None:
        node = 0
        for h in ids:
            child = self.children.get((node, h))
            if child is None:
                child = self.children[(node, h)] = len(self.counts)
                self.counts.append(0)
            self.counts[child] += 1
            node = child

    def path_counts(self, ids: Sequence[int]) -> list[int]:
        """counts[d - 1]: the lines sharing the first d ids of ``ids``."""
        node, out = 0, []
        for h in ids:
            node = self.children.get((node, h), -1)
            if node < 0:
                break
            out.append(self.counts[node])
        return out


class TracePrompts:
    """Synthesises the request body of each line of a trace (see the module docstring)."""

    def __init__(
        self,
        lines: Iterable[TraceLine],
        calibration: Calibration | None = None,
        *,
        block_tokens: int = BLOCK_TOKENS,
        min_cache_tokens: int = 1024,
        seed: int = 0,
    ) -> None:
        if block_tokens < 1:
            raise ConfigError(f"a hash block of {block_tokens} tokens must be at least 1")
        self.calibration = calibration or Calibration()
        self.block_tokens = block_tokens
        self.min_cache_tokens = min_cache_tokens
        self.seed = seed
        self._trie = _Trie()
        self._blocks: dict[tuple[int, int], str] = {}  # (hash id, tokens) -> text: a block of filler costs ~0.2 ms
        self._last_turn: dict[str, int] = {}  # session id -> its last turn in the trace
        for line in lines:
            self._trie.add(line.hash_ids)
            if line.session_id is not None and line.turn is not None:
                self._last_turn[line.session_id] = max(line.turn, self._last_turn.get(line.session_id, 0))

    def block_text(self, hash_id: int, tokens: int) -> str:
        """The text of block ``hash_id`` cut to ``tokens`` tokens: the same id gives the same text."""
        key = (hash_id, tokens)
        text = self._blocks.get(key)
        if text is None:
            if len(self._blocks) >= BLOCK_CACHE:  # shared blocks recur; a trace's own ones mostly do not
                self._blocks.clear()
            rng = random.Random(f"{self.seed}:block:{hash_id}")
            text = self._blocks[key] = text_of_chars(self.calibration.chars_for(tokens), rng)
        return text

    def block_sizes(self, line: TraceLine, budget: int) -> list[int]:
        """Tokens of each of the line's hash blocks within ``budget`` (the user turn keeps its share)."""
        room = max(0, budget - USER_TOKENS)
        sizes = []
        for i in range(len(line.hash_ids)):
            size = min(self.block_tokens, room - i * self.block_tokens)
            if size <= 0:
                break
            sizes.append(size)
        return sizes

    def breakpoints(self, line: TraceLine, sizes: Sequence[int], limit: int = MAX_BREAKPOINTS) -> list[int]:
        """Indexes of the blocks that end a prefix shared with another line, at most ``limit``."""
        if limit < 1:
            return []
        counts = self._trie.path_counts(line.hash_ids[: len(sizes)])
        ends, tokens = [], 0
        for d, count in enumerate(counts):
            tokens += sizes[d]
            widest_here = d + 1 == len(counts) or counts[d + 1] < count
            if count >= 2 and widest_here and tokens >= self.min_cache_tokens:
                ends.append(d)
        if len(ends) > limit:
            ends = [*ends[: limit - 1], ends[-1]]
        return ends

    def continues(self, line: TraceLine) -> bool:
        """Whether a later turn of the trace continues this line's conversation."""
        if line.session_id is None or line.turn is None:
            return False
        return line.turn < self._last_turn.get(line.session_id, 0)

    def request(self, line: TraceLine, history: Sequence[Mapping[str, Any]] = ()) -> Request:
        """The body for ``line``; ``history`` is its conversation so far (:meth:`next_history`)."""
        max_tokens = max(1, line.output_tokens)
        if line.request is not None:
            body = {"max_tokens": max_tokens, **line.request}
            if line.model is not None:
                body.setdefault("model", line.model)
            return body
        cal = self.calibration
        messages = [_as_blocks(m, strip=True) for m in history]
        budget = line.input_tokens - round(cal.overhead_tokens) - cal.tokens_of(_text_chars(messages))
        sizes = self.block_sizes(line, budget)
        read_at = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
        write = self.continues(line)
        reserved = (read_at is not None) + write
        marks = set(self.breakpoints(line, sizes, MAX_BREAKPOINTS - reserved))
        system = []
        for i, (hash_id, size) in enumerate(zip(line.hash_ids, sizes, strict=False)):
            block: dict[str, Any] = {"type": "text", "text": self.block_text(hash_id, size)}
            if i in marks:
                block["cache_control"] = {"type": "ephemeral"}
            system.append(block)
        if read_at is not None:
            messages[read_at] = _with_breakpoint(messages[read_at])
        user_tokens = max(USER_TOKENS, budget - sum(sizes))
        rng = random.Random(f"{self.seed}:user:{line.line}:{line.loop}:{line.turn}")
        text = text_of_chars(cal.chars_for(user_tokens), rng)
        if line.session_id is None:
            messages.append({"role": "user", "content": text})
        else:  # block form: the next turn sends it again, and must hash it the same
            turn: dict[str, Any] = {"role": "user", "content": [{"type": "text", "text": text}]}
            messages.append(_with_breakpoint(turn) if write else turn)
        out: Request = {"messages": messages, "max_tokens": max_tokens}
        if system:
            out["system"] = system
        if line.model is not None:
            out["model"] = line.model
        return out

    def next_history(self, line: TraceLine, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The history the next turn of ``line``'s conversation sends: ``body``'s turns and a stand-in answer.

        The answer is filler of the recorded output length, not the target's text: so every
        process can rebuild any turn from the trace alone, and the next turn's length does not
        depend on how the target answered.
        """
        rng = random.Random(f"{self.seed}:answer:{line.line}:{line.loop}:{line.turn}")
        answer = text_of_chars(self.calibration.chars_for(max(1, line.output_tokens)), rng)
        turns = [_as_blocks(m, strip=True) for m in body.get("messages", ())]
        return [*turns, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _text_chars(messages: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, str):
            total += len(content)
            continue
        for block in content:
            if isinstance(block, Mapping):
                total += len(str(block.get("text", block.get("thinking", ""))))
    return total


def _as_blocks(message: Mapping[str, Any], strip: bool = False) -> dict[str, Any]:
    """A copy of ``message`` with its content as text blocks (``strip``: without cache_control)."""
    content = message.get("content", "")
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content]
    )
    if strip:
        for block in blocks:
            block.pop("cache_control", None)
    return {**message, "content": blocks}


def _with_breakpoint(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``message`` whose last content block carries ``cache_control``."""
    marked = _as_blocks(message)
    if marked["content"]:
        marked["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return marked
