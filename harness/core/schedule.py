"""A study's plan: the interleaved block schedule of its arms, and the latency guide's levers as data.

Arms run one block at a time, in rounds. Each round is a seeded random order of the arms
followed by its reverse (A B B A, C A B B A C, ...): every arm runs twice per round, and
the order's mirror cancels a linear drift within the round, so a machine, a network or a
service that changes during the study moves every arm alike. The schedule is an endless
sequence, so a study that runs until its intervals are narrow enough (``--precision``)
takes as many rounds as it needs; the first k rounds never depend on how many follow.

:data:`LEVERS` is what Anthropic's latency guide says each lever buys, as pairs of
scenario classes from ``scenarios/`` (a: without the lever, b: with it) and the predicted
direction of b against a per metric. :func:`agreement` sets a prediction beside a
measured :class:`~harness.core.compare.Comparison`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from harness.core.compare import Comparison, Metric, Verdict
from harness.core.errors import ConfigError

__all__ = [
    "LEVERS",
    "Agreement",
    "Block",
    "Direction",
    "Lever",
    "Pair",
    "Prediction",
    "ad_hoc_lever",
    "agreement",
    "blocks",
    "lever_arms",
    "rounds",
    "select_levers",
]


@dataclass(frozen=True)
class Block:
    """One block of the schedule: the index-th block overall, in round ``round``, runs ``arm``."""

    index: int
    round: int
    arm: str


def _check_arms(arms: Sequence[str]) -> list[str]:
    arms = list(arms)
    if len(arms) < 2:
        raise ConfigError(f"a study needs two or more arms (scenario classes), got {len(arms)}: name at least two")
    twice = sorted({a for a in arms if arms.count(a) > 1})
    if twice:
        raise ConfigError(f"arm {twice[0]} is named twice: name each scenario class once")
    return arms


def rounds(arms: Sequence[str], seed: int) -> Iterator[tuple[str, ...]]:
    """Endless rounds: each a random order of ``arms`` then its reverse, reproducible by ``seed``."""
    order = _check_arms(arms)
    rng = random.Random(seed)
    while True:
        rng.shuffle(order)
        yield (*order, *reversed(order))


def blocks(arms: Sequence[str], seed: int, count: int | None = None) -> Iterator[Block]:
    """The schedule block by block: ``count`` rounds' worth, or endless when ``count`` is None."""
    index = itertools.count()
    chosen = rounds(arms, seed) if count is None else itertools.islice(rounds(arms, seed), count)
    for number, order in enumerate(chosen):
        for arm in order:
            yield Block(next(index), number, arm)


class Direction(str, Enum):
    """What a lever is predicted to do to a metric: b against a."""

    LOWER = "lower"
    HIGHER = "higher"
    UNCHANGED = "about the same"


class Agreement(str, Enum):
    AGREES = "agrees"
    CONTRADICTS = "contradicts"
    INCONCLUSIVE = "inconclusive"


# "About the same" is met when the whole relative interval lies within ±10% of a.
UNCHANGED_TOLERANCE = 0.10


@dataclass(frozen=True)
class Prediction:
    metric: Metric
    direction: Direction


@dataclass(frozen=True)
class Pair:
    """Arm b against arm a, with the guide's predictions for b."""

    a: str
    b: str
    predictions: tuple[Prediction, ...] = ()

    def predicted(self, metric: Metric) -> Direction | None:
        return next((p.direction for p in self.predictions if p.metric is metric), None)


@dataclass(frozen=True)
class Lever:
    """One lever of the guide: its pairs of arms, the metrics to compare, and the guide's claim."""

    key: str
    title: str
    guide: str
    pairs: tuple[Pair, ...]
    metrics: tuple[Metric, ...]

    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(arm for pair in self.pairs for arm in (pair.a, pair.b)))


def _pairs(a: str, predictions: dict[Metric, Direction], *bs: str) -> tuple[Pair, ...]:
    return tuple(Pair(a, b, tuple(Prediction(m, d) for m, d in predictions.items())) for b in bs)


def _opposite(predictions: dict[Metric, Direction]) -> dict[Metric, Direction]:
    flip = {Direction.LOWER: Direction.HIGHER, Direction.HIGHER: Direction.LOWER}
    return {m: flip.get(d, d) for m, d in predictions.items()}


_T, _FT, _C, _TPS, _P = Metric.TTFT, Metric.FIRST_TEXT, Metric.COMPLETION, Metric.OUTPUT_TPS, Metric.PERCEIVED
_LOW, _HIGH, _SAME = Direction.LOWER, Direction.HIGHER, Direction.UNCHANGED
_FASTER_MODEL = {_T: _LOW, _C: _LOW, _TPS: _HIGH}

LEVERS: tuple[Lever, ...] = (
    Lever(
        "control",
        "A/A control",
        "The same request under two names: any difference is chance, so its interval is the study's noise floor.",
        _pairs("ControlA", {_T: _SAME, _C: _SAME, _TPS: _SAME}, "ControlB"),
        (_T, _C, _TPS),
    ),
    Lever(
        "model",
        "Model",
        "Choose the right model: Haiku is the fastest; larger models are slower to start and to write.",
        _pairs("CompareSonnet", _FASTER_MODEL, "CompareHaiku")
        + _pairs("CompareSonnet", _opposite(_FASTER_MODEL), "CompareOpus"),
        (_T, _C, _TPS),
    ),
    Lever(
        "max_tokens",
        "max_tokens",
        "Cap the output: completion time scales with output tokens; TTFT barely moves.",
        _pairs("MaxTokens1024", {_T: _SAME, _C: _LOW}, "MaxTokens256", "MaxTokens64"),
        (_T, _C),
    ),
    Lever(
        "answer_length",
        "One sentence vs an open question",
        "Ask for brevity: a shorter answer finishes sooner; TTFT barely moves.",
        _pairs("OpenQuestion", {_T: _SAME, _C: _LOW}, "OneSentence"),
        (_T, _C),
    ),
    Lever(
        "prompt_length",
        "Short vs long prompt",
        "Input is processed before the first output token: a longer prompt raises TTFT.",
        _pairs("ShortPrompt", {_T: _HIGH, _C: _HIGH}, "LongContext"),
        (_T, _C),
    ),
    Lever(
        "streaming",
        "Streamed vs not",
        "Streaming cuts perceived latency (the first text shows early), not the total time.",
        _pairs("NonStreamed", {_P: _LOW, _C: _SAME}, "Streamed"),
        (_P, _C),
    ),
    Lever(
        "caching",
        "Prompt cache cold vs warm",
        "A cached prefix is not processed again: a warm cache cuts TTFT.",
        _pairs("CacheCold", {_T: _LOW}, "CacheWarm"),
        (_T, _C),
    ),
    Lever(
        "thinking",
        "Thinking budget",
        "Thinking comes before the answer: more thinking delays the first text and the end.",
        _pairs("NoThinking", {_FT: _HIGH, _C: _HIGH}, "Thinking1k", "Thinking2k"),
        (_T, _FT, _C),
    ),
)


def select_levers(keys: Sequence[str] | None = None) -> list[Lever]:
    """The catalogue's levers named by ``keys`` (all when None); ConfigError for an unknown key."""
    if keys is None:
        return list(LEVERS)
    known = {lever.key: lever for lever in LEVERS}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ConfigError(f"unknown lever {unknown[0]!r}: choose from {', '.join(known)}")
    return [known[k] for k in keys]


def lever_arms(levers: Sequence[Lever]) -> list[str]:
    """Every arm the levers compare, once each, in catalogue order."""
    return list(dict.fromkeys(arm for lever in levers for arm in lever.arms))


def ad_hoc_lever(arms: Sequence[str], metrics: Sequence[Metric] = (_T, _C, _TPS)) -> Lever:
    """Arms named on the command line: the first is the baseline a, each other one a b; no predictions."""
    first, *rest = _check_arms(arms)
    return Lever("arms", "Arms", f"Each arm against {first}.", tuple(Pair(first, b) for b in rest), tuple(metrics))


def agreement(predicted: Direction, measured: Comparison) -> Agreement:
    """Does the measured difference bear the prediction out, contradict it, or not tell?"""
    if predicted is Direction.UNCHANGED:
        ci = measured.ci95_relative
        if ci is None:
            return Agreement.INCONCLUSIVE
        if ci.low >= -UNCHANGED_TOLERANCE and ci.high <= UNCHANGED_TOLERANCE:
            return Agreement.AGREES
        if ci.low > UNCHANGED_TOLERANCE or ci.high < -UNCHANGED_TOLERANCE:
            return Agreement.CONTRADICTS
        return Agreement.INCONCLUSIVE
    if measured.verdict is Verdict.NO_DIFFERENCE:
        return Agreement.INCONCLUSIVE
    same = (measured.verdict is Verdict.LOWER) == (predicted is Direction.LOWER)
    return Agreement.AGREES if same else Agreement.CONTRADICTS
