"""Write the small sample traces of scenarios/data/, one per format that --trace-replay reads.

    python scenarios/data/make_traces.py        # rewrites the four files; the output never changes

Each trace has 40 calls over about 10 seconds, short prompts (under 3,000 tokens) and short answers,
so a replay against the simulator takes seconds. Prompts share prefixes the way real traffic does:
most lines start with the same two 512-token blocks (a system prompt, hash ids 0 and 1), some go on
with one of two shared documents, the rest with blocks of their own. The harness format adds two
2-turn conversations and one line carrying a full request body; the Azure file, like the real
one, is not quite in time order.
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LINES = 40
SPAN_S = 10.0
BLOCK = 512
MODELS = ("ChatGPT", "GPT-4")


@dataclass(frozen=True)
class Call:
    offset_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: list[int]


def calls(rng: random.Random) -> list[Call]:
    """40 calls: arrival offset (s), input and output tokens, and hash ids covering the input."""
    offsets = sorted(round(rng.uniform(0, SPAN_S), 3) for _ in range(LINES - 1))
    offsets = [0.0, *offsets]
    offsets[7] = offsets[6]  # two calls at the same instant, as traces have
    next_id = 100
    out = []
    for i, offset in enumerate(offsets):
        kind = i % 4
        if kind == 3:
            shared: list[int] = []  # no shared prefix at all
        elif kind == 2:
            shared = [0, 1, 10 + i % 2, 20 + i % 2]  # system prompt + one of two documents
        else:
            shared = [0, 1]  # the system prompt only
        own = rng.randint(1, 2)
        input_tokens = BLOCK * (len(shared) + own - 1) + rng.randint(40, BLOCK)
        blocks = math.ceil(input_tokens / BLOCK)
        hash_ids = [*shared, *range(next_id, next_id + blocks - len(shared))]
        next_id += blocks - len(shared)
        out.append(Call(offset, input_tokens, rng.randint(16, 160), hash_ids))
    return out


def write_mooncake(rows: list[Call]) -> None:
    with open(HERE / "trace_mooncake.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            line = {
                "timestamp": round(r.offset_s * 1000),
                "input_length": r.input_tokens,
                "output_length": r.output_tokens,
                "hash_ids": r.hash_ids,
            }
            f.write(json.dumps(line) + "\n")


def write_azure(rows: list[Call]) -> None:
    start = datetime(2023, 11, 16, 18, 15, 46, 680590)
    stamps = [start + timedelta(seconds=r.offset_s) for r in rows]
    order = list(range(len(rows)))
    order[20], order[21] = order[21], order[20]  # the real trace is not strictly sorted either
    with open(HERE / "trace_azure.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for i in order:
            # Azure writes 7 fractional digits (100 ns ticks).
            stamp = stamps[i].strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
            w.writerow([stamp, rows[i].input_tokens, rows[i].output_tokens])


def write_burstgpt(rows: list[Call], rng: random.Random) -> None:
    with open(HERE / "trace_burstgpt.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"])
        for i, r in enumerate(rows):
            output = 0 if i == 13 else r.output_tokens  # BurstGPT logs failed calls with 0 response tokens
            log = "Conversation log" if rng.random() < 0.7 else "API log"
            # BurstGPT's clock counts from its collection's start, not from this trace's first call.
            w.writerow(
                [f"{1200 + r.offset_s:.3f}", rng.choice(MODELS), r.input_tokens, output, r.input_tokens + output, log]
            )


def write_harness(rows: list[Call]) -> None:
    lines: list[dict[str, Any]] = [asdict(r) for r in rows]
    # Two 2-turn conversations: the second turn comes a few seconds later and counts the whole
    # prompt (its history too), as the API's usage does.
    for session, first, second in (("conv-a", 2, 9), ("conv-b", 5, 14)):
        lines[first].update(session_id=session, turn=1, scenario="chat")
        lines[first].pop("hash_ids")
        lines[second].update(
            session_id=session,
            turn=2,
            scenario="chat",
            input_tokens=lines[first]["input_tokens"] + lines[first]["output_tokens"] + 60,
        )
        lines[second].pop("hash_ids")
    lines[30]["request"] = {
        "messages": [{"role": "user", "content": "Name three prime numbers."}],
        "max_tokens": lines[30]["output_tokens"],
    }
    lines[30]["input_tokens"] = 7
    lines[30].pop("hash_ids")
    with open(HERE / "trace_harness.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def main() -> None:
    rows = calls(random.Random(22))
    write_mooncake(rows)
    write_azure(rows)
    write_burstgpt(rows, random.Random(23))
    write_harness(rows)


if __name__ == "__main__":
    main()
