"""Spend guard: what a run costs, before it starts, while it runs, and a hard cap.

* Prices from :mod:`harness.core.prices` (overridable with ``--price-file FILE``), for the run's
  ``--platform``: Bedrock and Vertex ids are priced at Anthropic's list prices (see there).
* An estimate before the run starts, from each scenario's prompt and ``max_tokens``
  and the load (``-u`` users for ``-t``): :func:`estimate`. Rough on purpose: it prices
  every call at its ``max_tokens`` and assumes a call rate; it says so.
* Live cost from the usage the server reports on each call, in the terminal (a periodic
  line against the real API or with a cap, and one at the end), in summary.json's
  ``cost`` section, and through the run's :class:`CostTracker` for the web UI.
* ``--max-cost USD``: when the run's cost reaches it, the run stops cleanly (Locust's
  ``runner.quit()``, so every artefact is written) and the process exits with
  :data:`~harness.core.exitcodes.EXIT_COST_CAP` unless something else already set the exit code.
* Against the real API a run without ``--max-cost`` prints the estimate and a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust.env import Environment
from locust.runners import WorkerRunner

from harness.core.errors import ConfigError
from harness.core.exitcodes import EXIT_COST_CAP
from harness.core.measure import CallRecord
from harness.core.options import option
from harness.core.platforms import platform_model
from harness.core.prices import DEFAULT_PRICES, PRICES_SOURCE, Price, list_prices, load_price_file, price_for
from harness.runtime.features import Feature
from harness.runtime.state import Harness
from harness.runtime.target import platform_of
from harness.transports.base import ANTHROPIC_API_URL

__all__ = ["FEATURE", "CostTracker", "SpendOptions", "call_estimate", "estimate", "install", "is_real_api"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpendOptions:
    """The spend cap and the prices it is counted at."""

    max_cost: float | None = option(
        "--max-cost",
        default=None,
        type=float,
        metavar="USD",
        help="Stop the run cleanly once the cost of the usage the server reported reaches USD "
        f"(exit code {EXIT_COST_CAP}). Default: no cap (a warning against the real API).",
    )
    price_file: str | None = option(
        "--price-file",
        default=None,
        metavar="FILE",
        help='JSON or TOML prices in USD per million tokens, e.g. {"models": {"my-model": {"input": 3, '
        '"output": 15, "cache_write": 3.75, "cache_read": 0.3}}}; merged over the built-in table.',
    )

    def __post_init__(self) -> None:
        if self.max_cost is not None and self.max_cost <= 0:
            raise ConfigError(f"--max-cost must be a positive number of US dollars, got {self.max_cost}")


# -- the estimate before the run ---------------------------------------------------------

# Assumptions of the estimate, stated in its output.
_CHARS_PER_TOKEN = 4
_ASSUMED_CALL_OVERHEAD_S = 1.0
_ASSUMED_DECODE_TOKENS_PER_S = 80.0


def _scenario_shape(user_class: Any, options: Any) -> tuple[str, int, int]:
    """(model, estimated input tokens, max_tokens) of one scenario class."""
    model = getattr(options, "model", "") or getattr(user_class, "model", "")
    # Priced as it will be sent: on Bedrock or Vertex by the platform's id.
    model = platform_model(str(model), getattr(options, "platform", None) or "anthropic") or model
    max_tokens = getattr(options, "max_tokens", 0) or getattr(user_class, "max_tokens", 0) or 0
    text = json.dumps([getattr(user_class, name, None) for name in ("system", "prompt", "conversation")], default=str)
    return str(model), len(text) // _CHARS_PER_TOKEN + 10, int(max_tokens)


def call_estimate(user_class: Any, options: Any, prices: Mapping[str, Price]) -> float | None:
    """One call's rough cost in USD for a scenario class (priced as :func:`estimate` does); None if unpriced."""
    model, input_tokens, max_tokens = _scenario_shape(user_class, options)
    price = price_for(model, prices)
    return None if price is None else (input_tokens * price.input + max_tokens * price.output) / 1e6


def estimate(environment: Environment, prices: Mapping[str, Price]) -> dict[str, Any]:
    """A rough cost estimate of the run from its scenarios and load (see module docstring)."""
    options = environment.parsed_options
    classes = [c for c in environment.user_classes if getattr(c, "model", None)]
    weights = [max(getattr(c, "weight", 1) or 1, 0) for c in classes]
    total_weight = sum(weights) or 1
    per_call = 0.0
    call_s = 0.0
    unpriced: list[str] = []
    for user_class, weight in zip(classes, weights, strict=True):
        model, input_tokens, max_tokens = _scenario_shape(user_class, options)
        price = price_for(model, prices)
        share = weight / total_weight
        call_s += share * (_ASSUMED_CALL_OVERHEAD_S + max_tokens / _ASSUMED_DECODE_TOKENS_PER_S)
        if price is None:
            unpriced.append(model)
            continue
        per_call += share * (input_tokens * price.input + max_tokens * price.output) / 1e6
    users = getattr(options, "num_users", None) or 1
    run_time = getattr(options, "run_time", None)
    calls = math.ceil(users * run_time / call_s) if run_time and call_s > 0 else None
    return {
        "per_call_usd": per_call,
        "calls": calls,
        "run_usd": per_call * calls if calls is not None else None,
        "per_minute_usd": per_call * users * 60.0 / call_s if call_s > 0 else None,
        "unpriced_models": sorted(set(unpriced)),
        "assumes": f"every call outputs max_tokens; {_CHARS_PER_TOKEN} characters per input token; "
        f"{_ASSUMED_CALL_OVERHEAD_S:g} s + {_ASSUMED_DECODE_TOKENS_PER_S:g} tokens/s per call",
    }


def describe_estimate(document: Mapping[str, Any]) -> str:
    head = f"spend estimate: ~${document['per_call_usd']:.4f} per call"
    if document["run_usd"] is not None:
        head += f", ~{document['calls']} calls, ~${document['run_usd']:.2f} for the run"
    elif document["per_minute_usd"] is not None:
        head += f", ~${document['per_minute_usd']:.2f} per minute (no -t given)"
    if document["unpriced_models"]:
        head += f"; no price for {', '.join(document['unpriced_models'])} (add them with --price-file)"
    return f"{head} (rough: {document['assumes']})"


# -- live cost and the cap -----------------------------------------------------------------


class CostTracker:
    """The run's cost from server-reported usage, per model and per token kind; enforces the cap."""

    PRINT_EVERY_S = 10.0

    def __init__(
        self,
        environment: Environment,
        prices: Mapping[str, Price],
        *,
        max_cost: float | None = None,
        source: str = PRICES_SOURCE,
    ) -> None:
        self.environment = environment
        self.prices = dict(prices)
        self.max_cost = max_cost
        self.source = source
        self.estimate: dict[str, Any] | None = None
        self._printer: gevent.Greenlet | None = None
        self.reset()

    def reset(self) -> None:
        self.total_usd = 0.0
        self.calls = 0
        self.unpriced_calls = 0
        self.by_model: dict[str, dict[str, Any]] = {}
        self.stopped_by_cap = False
        self.max_call_usd = 0.0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        price = price_for(record.model, self.prices)
        entry = self.by_model.setdefault(
            record.model,
            {
                "calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "usd": None if price is None else 0.0,
            },
        )
        entry["calls"] += 1
        for kind in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            entry[kind] += getattr(record, kind) or 0
        if price is None:
            self.unpriced_calls += 1
            return
        usd = price.cost(record)
        entry["usd"] += usd
        self.total_usd += usd
        self.max_call_usd = max(self.max_call_usd, usd)
        if self.max_cost is not None and self.total_usd >= self.max_cost and not self.stopped_by_cap:
            self._stop_at_cap()

    def _stop_at_cap(self) -> None:
        self.stopped_by_cap = True
        environment = self.environment
        runner = environment.runner
        if runner is None or isinstance(runner, WorkerRunner):
            return  # the master (or the local runner) owns the run
        log.warning("--max-cost $%.4f reached ($%.4f spent): stopping the run", self.max_cost or 0.0, self.total_usd)
        if environment.process_exit_code is None:
            environment.process_exit_code = EXIT_COST_CAP
        # Not from this greenlet: quit() kills every user, which may be the one running this.
        gevent.spawn(runner.quit)

    def line(self) -> str:
        text = f"cost at list prices: ${self.total_usd:.4f} over {self.calls} calls"
        if not is_real_api(self.environment.host):
            # Against the simulator or another endpoint this is what the calls would cost.
            text += " (not the Anthropic API, Bedrock or Vertex: nothing billed there)"
        if self.max_cost is not None:
            text += f" (cap ${self.max_cost:.4f})"
        if self.unpriced_calls:
            text += f"; {self.unpriced_calls} calls of unpriced models not counted"
        return text

    def snapshot(self) -> dict[str, Any]:
        """The ``cost`` section of summary.json (also what the web UI shows)."""
        by_kind = dict.fromkeys(("input", "output", "cache_write", "cache_read"), 0.0)
        for model, entry in self.by_model.items():
            price = price_for(model, self.prices)
            if price is None:
                continue
            by_kind["input"] += entry["input_tokens"] * price.input / 1e6
            by_kind["output"] += entry["output_tokens"] * price.output / 1e6
            by_kind["cache_write"] += entry["cache_creation_input_tokens"] * price.cache_write / 1e6
            by_kind["cache_read"] += entry["cache_read_input_tokens"] * price.cache_read / 1e6
        return {
            "currency": "USD",
            "total_usd": self.total_usd,
            "by_kind_usd": by_kind,
            "by_model": {model: dict(entry) for model, entry in sorted(self.by_model.items())},
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "max_call_usd": self.max_call_usd,
            "max_cost_usd": self.max_cost,
            "stopped_by_cap": self.stopped_by_cap,
            "estimate": self.estimate,
            "prices_source": self.source,
        }

    # -- terminal ---------------------------------------------------------------------

    def start_printing(self) -> None:
        self.stop_printing()
        self._printer = gevent.spawn(self._print_periodically)

    def stop_printing(self) -> None:
        if self._printer is not None:
            self._printer.kill(block=False)
            self._printer = None

    def _print_periodically(self) -> None:
        while True:
            gevent.sleep(self.PRINT_EVERY_S)
            log.info(self.line())


def is_real_api(host: str | None) -> bool:
    """Whether ``host`` bills: the Anthropic API, or Bedrock's or Vertex's endpoints."""
    if not host:
        return False
    text = str(host).rstrip("/")
    domain = urlsplit(text).hostname or ""
    return text.startswith(ANTHROPIC_API_URL) or domain.endswith((".amazonaws.com", ".googleapis.com"))


def install(
    harness: Harness,
    prices: Mapping[str, Price] | None = None,
    *,
    max_cost: float | None = None,
    source: str = PRICES_SOURCE,
) -> CostTracker:
    """Track the cost of ``harness``'s run and add the ``cost`` summary section."""
    environment = harness.environment
    tracker = CostTracker(environment, prices or DEFAULT_PRICES, max_cost=max_cost, source=source)
    hooks: Any = environment.events

    def on_start(**_: Any) -> None:
        tracker.reset()
        if not isinstance(environment.runner, WorkerRunner) and (
            tracker.max_cost is not None or is_real_api(environment.host)
        ):
            tracker.start_printing()

    def on_summary(summary: dict[str, Any], **_: Any) -> None:
        tracker.stop_printing()
        summary["cost"] = tracker.snapshot()
        if not isinstance(environment.runner, WorkerRunner):
            log.info(tracker.line())

    hooks.test_start.add_listener(on_start)
    hooks.llm_request.add_listener(lambda record, **_: tracker.add(record))
    hooks.llm_summary.add_listener(on_summary)
    return tracker


def _from_options(harness: Harness) -> CostTracker:
    """The spend guard as the command line asks for it: prices, cap, and the estimate up front."""
    environment = harness.environment
    options = harness.options_of(SpendOptions)
    max_cost = options.max_cost
    platform = platform_of(harness.options, os.environ)
    prices = list_prices(platform.name, platform.region)
    source = PRICES_SOURCE
    if options.price_file:
        prices.update(load_price_file(options.price_file))
        source = f"{PRICES_SOURCE}; overridden by {options.price_file}"
    tracker = install(harness, prices, max_cost=max_cost, source=source)
    if isinstance(environment.runner, WorkerRunner):
        return tracker
    tracker.estimate = estimate(environment, prices)
    unpriced = tracker.estimate["unpriced_models"]
    if max_cost is not None and unpriced:
        raise ConfigError(
            f"--max-cost cannot guard models with no price: {', '.join(unpriced)}; give their prices with --price-file"
        )
    if is_real_api(environment.host) or max_cost is not None:
        log.info(describe_estimate(tracker.estimate))
    if is_real_api(environment.host) and max_cost is None:
        log.warning("This run calls the real API and spends real money with no cap: add --max-cost USD to cap it")
    return tracker


FEATURE = Feature("spend", _from_options, options=(SpendOptions,), title="LLM harness: spend guard")
