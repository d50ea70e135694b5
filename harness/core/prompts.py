"""Prompt sources: where a scenario's requests come from, one request per call.

A scenario sets ``prompt_source`` to one of these (see ``docs/authoring.md``)::

    Text("Name three prime numbers.")                      the same user turn every call
    Template("Summarise {topic} in {n} sentences.",        a template; each call picks a value
             topic=["TCP", "DNS"], n=[1, 3])                 per variable
    Dataset("requests.jsonl")                              one Messages API request per line, in order;
                                                             ``--dataset FILE`` replaces the file
    Synthetic(tokens=uniform(500, 4000))                   filler prompts of a target token length,
                                                             drawn from fixed / uniform / normal lengths

Every source is seeded (``seed=``), so a run asks the same things in the same order. A source is
built when its scenario module is imported, so it never raises there: :meth:`PromptSource.check`
runs at start and raises :class:`~harness.core.errors.ConfigError` with one line (file and line number
for a dataset), which the harness prefixes with the scenario's name. Nothing here imports Locust.
"""

from __future__ import annotations

import itertools
import json
import random
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError
from harness.core.request import user_message

__all__ = [
    "CHARS_PER_TOKEN",
    "Dataset",
    "Lengths",
    "PromptSource",
    "Synthetic",
    "Template",
    "Text",
    "check_request_body",
    "fixed",
    "load_jsonl",
    "normal",
    "synthetic_text",
    "text_of_chars",
    "uniform",
]

# Anthropic's rule of thumb for English text, and the simulator's token count.
CHARS_PER_TOKEN = 4

Request = dict[str, Any]  # keyword arguments for AnthropicUser.messages: "messages" and maybe more fields


class PromptSource(ABC):
    """Where each call's request comes from. Subclass it for a source of your own."""

    @abstractmethod
    def next_request(self) -> Request:
        """The next call's fields: always ``messages``, sometimes ``system``, ``max_tokens``, ``model``…"""

    def check(self) -> None:  # noqa: B027  (optional hook: most sources have nothing to check)
        """Raise ConfigError (one line) if the source cannot produce requests. Runs once at start."""

    def bind(self, options: Any) -> None:  # noqa: B027  (optional hook)
        """Read run options (Locust's parsed options, e.g. ``--dataset``). Runs at start, before check()."""


class Text(PromptSource):
    """The same single user turn on every call (what ``prompt = "..."`` does)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def check(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError("Text(...) has an empty prompt; give it the text of the user turn")

    def next_request(self) -> Request:
        return {"messages": [user_message(self.text)]}


class Template(PromptSource):
    """A ``str.format`` template whose ``{name}`` fields are filled per call.

    Each keyword argument gives a field its values: a list (one is picked at random per call,
    seeded) or a single value. ``{{`` and ``}}`` are literal braces.
    """

    def __init__(self, template: str, *, seed: int = 0, **variables: Any) -> None:
        self.template = template
        self.variables = {k: _as_values(v) for k, v in variables.items()}
        self._rng = random.Random(seed)

    def fields(self) -> list[str]:
        """The field names the template uses, in order of first use."""
        names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None]
        return list(dict.fromkeys(names))

    def check(self) -> None:
        if not isinstance(self.template, str) or not self.template.strip():
            raise ConfigError("Template(...) has an empty template")
        try:
            fields = self.fields()
        except ValueError as exc:
            raise ConfigError(f"Template {self.template[:40]!r} cannot be parsed: {exc}") from None
        for name in fields:
            if not name.isidentifier():
                raise ConfigError(f"Template field {{{name}}} must be a plain name like {{topic}}")
            if not self.variables.get(name):
                raise ConfigError(f"Template field {{{name}}} has no values; pass {name}=[...]")
        unused = sorted(set(self.variables) - set(fields))
        if unused:
            raise ConfigError(f"Template variable(s) {', '.join(unused)} do not appear in the template")

    def render(self) -> str:
        """One filled-in prompt."""
        chosen = {name: self._rng.choice(values) for name, values in self.variables.items()}
        return self.template.format(**chosen)

    def next_request(self) -> Request:
        return {"messages": [user_message(self.render())]}


class Dataset(PromptSource):
    """Replay a JSONL file: one Messages API request body per line, sent in file order.

    Each line is a JSON object with a non-empty ``messages`` list; any other field it has
    (``system``, ``max_tokens``, ``model``, ``tools``…) is sent too and wins over the scenario's
    class attributes. Blank lines are skipped. At the end of the file the replay starts again
    at the first line. All users of a scenario share one cursor, so together they send the
    lines in order. ``--dataset FILE`` on the command line replaces ``default``.
    """

    def __init__(self, default: str | Path | None = None) -> None:
        self.default = default
        self.path: Path | None = Path(default) if default is not None else None
        self._requests: list[Request] | None = None
        self._cursor: itertools.cycle[Request] | None = None

    def bind(self, options: Any) -> None:
        chosen = getattr(options, "dataset", None)
        if chosen:
            self.path = Path(chosen)
            self._requests = None

    def check(self) -> None:
        self.requests()

    def requests(self) -> list[Request]:
        """Every request of the file, loaded and checked once."""
        if self._requests is None:
            if self.path is None:
                raise ConfigError("needs a dataset; pass --dataset FILE.jsonl")
            self._requests = load_jsonl(self.path)
            self._cursor = itertools.cycle(self._requests)
        return self._requests

    def next_request(self) -> Request:
        self.requests()
        assert self._cursor is not None
        request = next(self._cursor)
        return {**request, "messages": list(request["messages"])}


def load_jsonl(path: Path) -> list[Request]:
    """Parse and check a dataset file; ConfigError names the file and line of the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"dataset {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"dataset {path} cannot be read: {exc}") from None
    requests: list[Request] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            requests.append(_request_from_line(line, f"{path} line {number}"))
    if not requests:
        raise ConfigError(f"dataset {path} has no requests (one JSON object per line)")
    return requests


def _request_from_line(line: str, where: str) -> Request:
    try:
        body = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    return check_request_body(body, where)


def check_request_body(body: Any, where: str) -> Request:
    """``body`` if it is a Messages API request body a dataset line may hold; ConfigError naming ``where``."""
    if not isinstance(body, dict):
        raise ConfigError(f"{where} is not a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f'{where} has no "messages" list (a Messages API request body per line)')
    if not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        raise ConfigError(f'{where}: every message needs a "role" and a "content"')
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0):
        raise ConfigError(f"{where}: max_tokens must be a positive integer, got {max_tokens!r}")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigError(f"{where}: model must be a non-empty string")
    return body


# -- synthetic prompts ------------------------------------------------------------------


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts; build one with :func:`fixed`, :func:`uniform` or :func:`normal`."""

    kind: str
    a: float
    b: float = 0.0
    minimum: int = 1

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            n = round(self.a)
        elif self.kind == "uniform":
            n = rng.randint(round(self.a), round(self.b))
        else:
            n = round(rng.gauss(self.a, self.b))
        return max(self.minimum, n)

    def check(self) -> None:
        if self.kind == "fixed" and self.a < 1:
            raise ConfigError(f"fixed({self.a:g}) must be at least 1 token")
        if self.kind == "uniform" and not 1 <= self.a <= self.b:
            raise ConfigError(f"uniform({self.a:g}, {self.b:g}) needs 1 <= low <= high")
        if self.kind == "normal" and (self.a < 1 or self.b < 0 or self.minimum < 1):
            raise ConfigError(f"normal({self.a:g}, {self.b:g}) needs mean >= 1, sd >= 0 and minimum >= 1")


def fixed(tokens: int) -> Lengths:
    """Always ``tokens`` tokens."""
    return Lengths("fixed", tokens)


def uniform(low: int, high: int) -> Lengths:
    """Any whole number of tokens from ``low`` to ``high``, equally likely."""
    return Lengths("uniform", low, high)


def normal(mean: float, sd: float, minimum: int = 1) -> Lengths:
    """A normal distribution of tokens, rounded and never below ``minimum``."""
    return Lengths("normal", mean, sd, minimum)


class Synthetic(PromptSource):
    """Prompts of a target length in tokens: seeded filler text, then ``question``.

    ``tokens`` is an int or a :class:`Lengths`. Lengths count :data:`CHARS_PER_TOKEN`
    characters per token, which is how the simulator counts and close to the real tokenizer
    for English; ``input_tokens`` in ``requests.jsonl`` is what the server counted. Every call
    gets fresh filler, so no two prompts share a prefix. A prompt is never shorter than ``question``.
    """

    def __init__(
        self,
        tokens: int | Lengths = 1000,
        *,
        question: str = "Summarise the text above in one sentence.",
        seed: int = 0,
    ) -> None:
        self.lengths = tokens if isinstance(tokens, Lengths) else fixed(tokens)
        self.question = question
        self._rng = random.Random(seed)

    def check(self) -> None:
        self.lengths.check()

    def render(self) -> str:
        tokens = self.lengths.draw(self._rng)
        tail = f"\n\n{self.question}" if self.question else ""
        chars = max(1, tokens * CHARS_PER_TOKEN - len(tail))
        return text_of_chars(chars, self._rng) + tail

    def next_request(self) -> Request:
        return {"messages": [user_message(self.render())]}


_VOCABULARY = (
    "the of and to in is was for on that with as by at from this which are be or an it have "
    "not were has but their they its been more one all would there also can when these other "
    "model request latency token stream server queue cache prompt answer system network load "
    "time first last batch output input context window history result value record measure "
    "river mountain city harbour market garden library engine signal bridge archive season"
)
_WORDS = tuple(_VOCABULARY.split())


def synthetic_text(tokens: int, rng: random.Random | None = None) -> str:
    """Seeded filler prose of about ``tokens`` tokens (``CHARS_PER_TOKEN`` characters each)."""
    return text_of_chars(max(1, tokens) * CHARS_PER_TOKEN, rng or random.Random(0))


def text_of_chars(chars: int, rng: random.Random) -> str:
    """Seeded filler prose of exactly ``chars`` characters; the same seed gives a prefix of a longer text."""
    words: list[str] = []
    length = -1
    while length < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


def _as_values(value: Any) -> list[Any]:
    # Lists, tuples and ranges are choices; anything else (a str too) is one fixed value.
    return list(value) if isinstance(value, list | tuple | range) else [value]
