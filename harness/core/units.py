"""Durations and lists of loads as the command line writes them: ``1m30s``, ``500ms``, ``1,2,4,8``."""

from __future__ import annotations

import re

from harness.core.errors import ConfigError

__all__ = ["parse_duration", "parse_fraction", "parse_loads"]

_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str, option: str) -> float:
    """Seconds from ``30``, ``2.5s``, ``500ms``, ``1m30s`` or ``1h``; ConfigError otherwise."""
    raw = str(text).strip()
    try:
        if raw.endswith("ms"):
            return float(raw[:-2]) / 1000.0
        return float(raw)
    except ValueError:
        pass
    match = _DURATION.match(raw)
    if not raw or match is None or not any(match.groupdict().values()):
        raise ConfigError(f"{option} {raw!r} is not a duration; write e.g. 30s, 2.5s, 500ms or 1m30s")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0)


def parse_loads(text: str, option: str) -> tuple[float, ...]:
    """A comma-separated list of positive numbers, all different."""
    try:
        loads = tuple(float(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be numbers separated by commas, e.g. 1,2,4,8") from None
    if not loads or any(not (v > 0) for v in loads):
        raise ConfigError(f"{option} {text!r} must be positive numbers separated by commas, e.g. 1,2,4,8")
    if len(set(loads)) != len(loads):
        raise ConfigError(f"{option} {text!r} repeats a load; each stage needs its own")
    return loads


def parse_fraction(text: str, option: str) -> float:
    """A fraction from ``0.05`` or ``5%``."""
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be a fraction (0.05) or a percentage (5%)") from None
