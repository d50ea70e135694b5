"""The simulator's configuration: one dataclass, filled from defaults, then --config FILE, then CLI flags.

A config file is JSON or TOML (by extension: .toml is TOML, anything else JSON) with these optional keys:

    seed            int
    max_body_bytes  int, larger request bodies get 413 request_too_large (default 32 MB, like the API)
    require_key     str, only this API key is accepted (401 authentication_error otherwise)
    all_models      {profile parameter: value} applied to every model profile
    models          {model id: {profile parameter: value}} override a profile or define a new model id
    rate_limits     {"tier": name} and/or requests_per_minute / input_tokens_per_minute /
                    output_tokens_per_minute (see ratelimit.py; default: the generous "default" tier,
                    headers only in practice; {"tier": "off"}: no limits, no headers)
    faults          fault rates, durations and schedule (see faults.py; off by default)
    trace           path of the ground-truth trace file
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sigv4 import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY

try:  # stdlib from Python 3.11; on 3.10 only JSON config files work
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None  # type: ignore[assignment]

KNOWN_KEYS = {
    "seed",
    "max_body_bytes",
    "require_key",
    "all_models",
    "models",
    "rate_limits",
    "faults",
    "trace",
}


@dataclass(slots=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    max_body_bytes: int = 32 * 1024 * 1024
    require_key: str | None = None
    all_models: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    rate_limits: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    trace: str | None = None
    # Which API the simulator speaks (platform.py); the AWS credentials Bedrock requests are signed with.
    platform: str = "anthropic"
    aws_access_key_id: str = DEFAULT_ACCESS_KEY_ID
    aws_secret_access_key: str = DEFAULT_SECRET_ACCESS_KEY

    def __repr__(self) -> str:
        # Never show the required key in logs or error messages.
        key = "<set>" if self.require_key else None
        return f"SimulatorConfig(host={self.host!r}, port={self.port}, seed={self.seed}, require_key={key})"


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".toml":
        if tomllib is None:
            raise ValueError(f"{p}: TOML config needs Python 3.11+; use JSON")
        data: Any = tomllib.loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the top level must be an object/table")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    return data


def apply_file(config: SimulatorConfig, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if key in ("all_models", "rate_limits", "faults"):
            getattr(config, key).update(value)
        elif key == "models":
            for name, values in value.items():
                config.models.setdefault(name, {}).update(values)
        else:
            setattr(config, key, value)
