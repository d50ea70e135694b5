"""What a simulated response says: its content blocks, token by token, stop reason and output tokens.

The whole response is decided up front from the request and a per-request seeded RNG; only its timing is
decided later by the latency model. Each "token" is one delta on the wire (a word of text or thinking, or
a few characters of tool-input JSON) and counts as one output token.

Lengths: the answer's natural length follows what the prompt asks for (length.py: a stated size, brief,
open, or the profile's default), then `max_tokens` cuts it (stop_reason "max_tokens"). Thinking comes
first; its median is the profile's unconstrained thinking length, pulled down by a small budget
(ModelProfile.thinking_median), and is capped by the budget.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

from .length import LengthAsk, read_length_ask
from .messages import MessagesRequest
from .model import ModelProfile, sample_output_tokens

# Short common words so a stop sequence such as " the" is met early in most responses.
_WORDS = (
    "the of and to a in is that for it as with was on be by this are or from at an which not have but "
    "model token stream latency load test request response server client queue batch time rate system "
    "simulated output input cache prompt message data value result"
)
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split(" "))

TOOL_JSON_CHUNK = 6  # characters of tool-input JSON per input_json_delta (one output token each)


@dataclass(slots=True)
class BlockPlan:
    kind: str  # "text" | "thinking" | "tool_use"
    deltas: list[str] = field(default_factory=list)  # payload of each delta (one token each)
    tool_id: str = ""
    tool_name: str = ""
    signature: str = ""

    @property
    def delta_type(self) -> str:
        return {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}[self.kind]

    def start_block(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"type": "text", "text": ""}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": "", "signature": ""}
        return {"type": "tool_use", "id": self.tool_id, "name": self.tool_name, "input": {}}

    def final_block(self) -> dict[str, Any]:
        """The block as it appears in a non-streaming response."""
        joined = "".join(self.deltas)
        if self.kind == "text":
            return {"type": "text", "text": joined}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": joined, "signature": self.signature}
        try:
            tool_input = json.loads(joined) if joined else {}
        except ValueError:
            tool_input = {}  # cut short by max_tokens: incomplete JSON, like the real API's partial input
        return {"type": "tool_use", "id": self.tool_id, "name": self.tool_name, "input": tool_input}


@dataclass(slots=True)
class ResponsePlan:
    blocks: list[BlockPlan]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    length_ask: LengthAsk  # what the prompt asked for, which set the answer's natural length


def _rand_id(rng: random.Random, prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(rng.choice(alphabet) for _ in range(24))


_SPACED = tuple(" " + w for w in VOCABULARY)


def _words(rng: random.Random, n: int) -> list[str]:
    """n tokens of text: words with their leading space, a capital first word, a period every 12."""
    out = rng.choices(_SPACED, k=n)  # one call: this runs for every request, hundreds of tokens each
    if out:
        out[0] = out[0][1:].capitalize()
    for i in range(11, n, 12):
        out[i] += "."
    return out


def _example_value(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A plausible value for a JSON schema (enough for tool-input streaming, not a full validator)."""
    if not isinstance(schema, dict):
        return "value"
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    kind = schema.get("type", "string")
    if kind == "object" and depth < 3:
        props = schema.get("properties", {})
        return {k: _example_value(v, rng, depth + 1) for k, v in props.items()}
    if kind == "array" and depth < 3:
        return [_example_value(schema.get("items", {}), rng, depth + 1)]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return " ".join(rng.choice(VOCABULARY) for _ in range(2))


def make_plan(req: MessagesRequest, profile: ModelProfile, rng: random.Random) -> ResponsePlan:
    budget = req.max_tokens
    blocks: list[BlockPlan] = []
    used = 0
    ask = read_length_ask(req.system_text, req.last_user_text)

    if req.thinking_budget is not None:
        n = round(rng.lognormvariate(0.0, 0.5) * profile.thinking_median(req.thinking_budget))
        n = max(1, min(n, req.thinking_budget, budget))
        blocks.append(BlockPlan("thinking", _words(rng, n), signature=_rand_id(rng, "Sig")))
        used += n
        if used >= budget:
            return ResponsePlan(blocks, "max_tokens", None, used, ask)

    wants_tool = bool(req.tools) and req.tool_choice.get("type") != "none" and not req.last_user_has_tool_result
    if wants_tool:
        if req.tool_choice.get("type") == "tool":
            tool = next(t for t in req.tools if t["name"] == req.tool_choice["name"])
        else:
            tool = rng.choice(req.tools)
        text = json.dumps(_example_value(tool.get("input_schema", {"type": "object"}), rng))
        pieces = [text[i : i + TOOL_JSON_CHUNK] for i in range(0, len(text), TOOL_JSON_CHUNK)]
        room = budget - used
        block = BlockPlan("tool_use", pieces[:room], tool_id=_rand_id(rng, "toolu_"), tool_name=tool["name"])
        blocks.append(block)
        used += len(block.deltas)
        return ResponsePlan(blocks, "tool_use" if len(pieces) <= room else "max_tokens", None, used, ask)

    natural = sample_output_tokens(profile, rng, ask)
    n = min(natural, budget - used)
    tokens = _words(rng, n)
    stop_reason = "end_turn" if natural <= budget - used else "max_tokens"
    stop_sequence: str | None = None
    if req.stop_sequences:
        text = ""
        for i, tok in enumerate(tokens):
            start = max(0, len(text) - max(len(s) for s in req.stop_sequences) + 1)
            text += tok
            hits = [(p, s) for s in req.stop_sequences if (p := text.find(s, start)) >= 0]
            if hits:
                pos, stop_sequence = min(hits)
                # Show the text up to the stop sequence; the tokens holding it are generated (and billed).
                shown: list[str] = []
                cum = 0
                for t in tokens[: i + 1]:
                    part = t[: max(0, pos - cum)]
                    if part:
                        shown.append(part)
                    cum += len(t)
                    if cum >= pos:
                        break
                tokens = shown
                n = i + 1
                stop_reason = "stop_sequence"
                break
    blocks.append(BlockPlan("text", tokens))
    return ResponsePlan(blocks, stop_reason, stop_sequence, used + n, ask)
