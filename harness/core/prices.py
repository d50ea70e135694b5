"""List prices per model (USD per million tokens) and how one call's usage is priced.

:data:`DEFAULT_PRICES` carries its source and date in :data:`PRICES_SOURCE`. It prices each
model under every id it has: the first-party name, and the Amazon Bedrock and Google Vertex
AI ids of :data:`harness.core.platforms.MODEL_IDS` at the same list price (Anthropic's
"Claude on Amazon Bedrock" and "Claude on Vertex AI" pages: the global endpoint has no
premium, a regional one costs 10 % more for Sonnet 4.5 and later models, which Bedrock's
regional inference profiles ``us.``/``eu.``/... carry here, and :func:`list_prices` applies
to a Vertex region other than ``global``). Neither AWS's nor Google's own price lists were
read: a negotiated or changed price goes into ``--price-file``.
``--price-file FILE`` (JSON or TOML, :func:`load_price_file`) overrides entries. A call
is priced from the usage the server reported: input, output, cache writes and cache
reads, each at its own price.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import ConfigError
from harness.core.platforms import MODEL_IDS, REGIONAL_PREFIXES

if TYPE_CHECKING:
    from harness.core.measure import CallRecord

__all__ = ["DEFAULT_PRICES", "PRICES_SOURCE", "Price", "list_prices", "load_price_file", "price_for"]


PRICES_SOURCE = (
    "Anthropic API list prices, https://docs.anthropic.com/en/docs/about-claude/pricing "
    "(standard tier, 5-minute cache writes), checked 2026-11-29; Bedrock and Vertex ids at the same "
    "list prices, regional endpoints +10 % for Sonnet 4.5 and later (Anthropic's platform pages)"
)
REGIONAL_PREMIUM = 1.10


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind the Messages API's ``usage`` reports."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def of(cls, input: float, output: float) -> Price:
        # Anthropic's multipliers: a 5-minute cache write costs 1.25x input, a cache read 0.1x.
        return cls(input, output, round(input * 1.25, 6), round(input * 0.1, 6))

    def cost(self, record: CallRecord) -> float:
        return (
            (record.input_tokens or 0) * self.input
            + (record.output_tokens or 0) * self.output
            + (record.cache_creation_input_tokens or 0) * self.cache_write
            + (record.cache_read_input_tokens or 0) * self.cache_read
        ) / 1e6


_OPUS_NEW = Price.of(5.0, 25.0)
_OPUS_OLD = Price.of(15.0, 75.0)
_SONNET = Price.of(3.0, 15.0)

DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-5": _OPUS_NEW,
    "claude-opus-4-8": _OPUS_NEW,
    "claude-opus-4-7": _OPUS_NEW,
    "claude-opus-4-6": _OPUS_NEW,
    "claude-opus-4-5": _OPUS_NEW,
    "claude-opus-4-1": _OPUS_OLD,
    "claude-opus-4": _OPUS_OLD,
    "claude-opus-4-0": _OPUS_OLD,
    "claude-3-opus": _OPUS_OLD,
    "claude-sonnet-4-6": _SONNET,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4": _SONNET,
    "claude-sonnet-4-0": _SONNET,
    "claude-3-7-sonnet": _SONNET,
    "claude-3-5-sonnet": _SONNET,
    "claude-haiku-4-5": Price.of(1.0, 5.0),
    "claude-3-5-haiku": Price(0.80, 4.0, 1.0, 0.08),
    "claude-3-haiku": Price(0.25, 1.25, 0.30, 0.03),
}


def _scaled(price: Price, factor: float) -> Price:
    kinds = ("input", "output", "cache_write", "cache_read")
    return Price(*(round(getattr(price, kind) * factor, 6) for kind in kinds))


def _platform_prices() -> dict[str, Price]:
    out: dict[str, Price] = {}
    for name, ids in MODEL_IDS.items():
        price = DEFAULT_PRICES.get(name)
        if price is None:
            continue
        base = ids.bedrock.partition("anthropic.")[2]
        out[f"anthropic.{base}"] = out[f"global.anthropic.{base}"] = price
        regional = _scaled(price, REGIONAL_PREMIUM) if ids.regional_premium else price
        for prefix in REGIONAL_PREFIXES:
            out[f"{prefix}anthropic.{base}"] = regional
        out[ids.vertex] = price
    return out


DEFAULT_PRICES.update(_platform_prices())


def list_prices(platform: str = "anthropic", region: str | None = None) -> dict[str, Price]:
    """The built-in table for a run on ``platform``: a Vertex region other than ``global`` costs 10 % more."""
    prices = dict(DEFAULT_PRICES)
    if platform == "vertex" and region not in (None, "global"):
        for ids in MODEL_IDS.values():
            if ids.regional_premium and ids.vertex in prices:
                prices[ids.vertex] = _scaled(prices[ids.vertex], REGIONAL_PREMIUM)
    return prices


_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|latest)$")


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: its exact id, else without a ``-YYYYMMDD``/``-latest`` suffix.

    A Bedrock ARN is priced as the model id or inference profile it ends in.
    """
    found = prices.get(model)
    if found is None:
        if model.startswith("arn:"):
            return price_for(model.rpartition("/")[2], prices)
        found = prices.get(_SNAPSHOT_SUFFIX.sub("", model))
    return found


def load_price_file(path: str) -> dict[str, Price]:
    """Prices from JSON or TOML (``.toml``): ``{"models": {"<id>": {"input": 3, "output": 15}}}``.

    ``cache_write`` and ``cache_read`` default to 1.25x and 0.1x ``input``. A top-level
    table of models without the ``models`` key works too.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--price-file {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    models = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(f"--price-file {path}: expected a table of models")
    prices: dict[str, Price] = {}
    for model, entry in models.items():
        if model == "source":
            continue
        try:
            base = Price.of(float(entry["input"]), float(entry["output"]))
            prices[model] = Price(
                base.input,
                base.output,
                float(entry.get("cache_write", base.cache_write)),
                float(entry.get("cache_read", base.cache_read)),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ConfigError(
                f"--price-file {path}: model {model!r} needs numeric 'input' and 'output' (USD per million tokens)"
            ) from None
    return prices
