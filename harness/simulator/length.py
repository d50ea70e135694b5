"""How long an answer a prompt asks for: the simulator's reading of "in one sentence" or "explain".

A real model answers "in one sentence" with a sentence and "write a detailed guide" with pages; the
latency guide's output-length lever depends on it. This module reads the instructions of a request —
the last user message and the system prompt — and classifies them (rules in docs/simulator.md):

    EXACT    a stated size: "in one sentence", "in 50 words", "two paragraphs", "one word", "yes or no"
             -> that many tokens (TOKENS_PER_UNIT per word/sentence/line/bullet/paragraph)
    BRIEF    "briefly", "short answer", "be concise", "tl;dr", "keep it short" ... -> brief_tokens_median
    LONG     "explain", "describe", "in detail", "write an essay", "tell me about" ... -> long_tokens_median
    DEFAULT  anything else -> output_tokens_median

The first rule that matches wins, in this order: user EXACT, user BRIEF, system EXACT, system BRIEF,
user LONG, system LONG. A stated size beats a style ("explain in one paragraph" is one paragraph), and
brevity beats openness ("briefly explain" is brief). Only the first and last SCAN_CHARS / 2 characters
of each text are read: instructions sit at the ends of a prompt, and a 100k-token prompt must not cost
a regex pass over all of it. `max_tokens` is deliberately not a hint: the model never sees it, the API
cuts the answer (stop_reason "max_tokens").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_ASK", "SCAN_CHARS", "TOKENS_PER_UNIT", "Ask", "LengthAsk", "read_length_ask", "scan_window"]

SCAN_CHARS = 2000

# Output tokens per unit of a stated size. The simulator writes one word per token, so a word is a token.
TOKENS_PER_UNIT: dict[str, int] = {
    "word": 1,
    "sentence": 20,
    "line": 12,
    "bullet": 15,
    "paragraph": 90,
}

_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "single": 1,
    "a single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twenty": 20,
    "fifty": 50,
    "hundred": 100,
    "a hundred": 100,
}
_COUNT_WORDS = "|".join(sorted((k for k in _NUMBERS if k not in ("a", "an")), key=len, reverse=True))
_UNITS = r"(?P<unit>word|sentence|line|bullet(?:[ -]point)?|paragraph)s?\b"
# "in one sentence", "3 sentences", "a 500-word essay", "one-word answer"; "a"/"an" only after "in"
# ("in a sentence"), since "a word for happy" or "correct a sentence" state no size.
_EXACT = re.compile(
    rf"(?:\b(?P<num>\d{{1,5}}|{_COUNT_WORDS})|\bin (?P<art>an?))[ -]+{_UNITS}|\b(?P<yesno>yes or no)\b",
    re.IGNORECASE,
)
_BRIEF = re.compile(
    r"\b(?:brief(?:ly)?|short(?:est)? (?:answer|reply|response)|answer short(?:ly)?|keep it short|be short"
    r"|something short|concise(?:ly)?|succinct(?:ly)?|terse(?:ly)?|tl;?dr|one-liner|in a nutshell"
    r"|just the answer|only the answer|no explanation)\b",
    re.IGNORECASE,
)
_LONG = re.compile(
    r"\b(?:explain|describe|elaborate|discuss|analy[sz]e|in (?:great )?detail|detailed|in[ -]depth"
    r"|thorough(?:ly)?|comprehensive(?:ly)?|step[ -]by[ -]step|walk me through|tell me (?:all )?about"
    r"|essay|article|report|guide|tutorial|story|everything you know)\b",
    re.IGNORECASE,
)


class Ask(enum.Enum):
    DEFAULT = "default"
    BRIEF = "brief"
    LONG = "long"
    EXACT = "exact"


@dataclass(frozen=True, slots=True)
class LengthAsk:
    """What the prompt asks for: a class, the stated size in tokens (EXACT only) and the words that said so."""

    ask: Ask
    tokens: int = 0
    phrase: str = ""


DEFAULT_ASK = LengthAsk(Ask.DEFAULT)


def scan_window(text: str) -> str:
    """The part of a prompt text that is read for instructions: its two ends."""
    if len(text) <= SCAN_CHARS:
        return text
    half = SCAN_CHARS // 2
    return text[:half] + "\n" + text[-half:]


def _exact(text: str) -> LengthAsk | None:
    m = _EXACT.search(text)
    if m is None:
        return None
    if m.group("yesno"):
        return LengthAsk(Ask.EXACT, 1, m.group(0))
    raw = (m.group("num") or m.group("art") or "one").lower()
    count = int(raw) if raw.isdigit() else _NUMBERS[raw]
    unit = m.group("unit").lower()
    per = TOKENS_PER_UNIT["bullet" if unit.startswith("bullet") else unit]
    return LengthAsk(Ask.EXACT, max(1, count * per), m.group(0))


def _match(pattern: re.Pattern[str], ask: Ask, text: str) -> LengthAsk | None:
    m = pattern.search(text)
    return LengthAsk(ask, 0, m.group(0)) if m else None


def read_length_ask(system: str, user: str) -> LengthAsk:
    """Classify the instructions (already cut by `scan_window`) by the rules in the module docstring."""
    rules = (
        lambda: _exact(user),
        lambda: _match(_BRIEF, Ask.BRIEF, user),
        lambda: _exact(system),
        lambda: _match(_BRIEF, Ask.BRIEF, system),
        lambda: _match(_LONG, Ask.LONG, user),
        lambda: _match(_LONG, Ask.LONG, system),
    )
    for rule in rules:
        found = rule()
        if found is not None:
            return found
    return DEFAULT_ASK
