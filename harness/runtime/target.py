"""Which endpoint a run talks to, and the embedded simulator when there is none.

The order follows the anthropic SDK's own conventions:

1. ``--host`` (Locust's option, also ``LOCUST_HOST`` / ``host =`` in locust.conf)
2. ``ANTHROPIC_BASE_URL``
3. ``ANTHROPIC_API_KEY`` set and no host: the real API at https://api.anthropic.com
4. neither: the embedded simulator, started on a free loopback port and stopped at exit.
"""

from __future__ import annotations

import atexit
import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from harness.core.errors import ConfigError
from harness.transports.base import ANTHROPIC_API_URL

__all__ = ["SIMULATOR_KEY", "Target", "api_key_for", "resolve_target", "start_simulator"]

log = logging.getLogger(__name__)

# The simulator accepts any key; this placeholder is not a secret.
SIMULATOR_KEY = "sk-simulator-placeholder"


@dataclass(frozen=True)
class Target:
    """``url`` is None when the simulator is still to be started."""

    url: str | None
    source: str  # "host", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY" or "simulator"


def resolve_target(host: str | None, environ: Mapping[str, str]) -> Target:
    """Pick the target from ``--host`` and the environment (see module docstring)."""
    if host:
        return Target(_checked(host, "--host"), "host")
    base_url = environ.get("ANTHROPIC_BASE_URL", "").strip()
    if base_url:
        return Target(_checked(base_url, "ANTHROPIC_BASE_URL"), "ANTHROPIC_BASE_URL")
    if environ.get("ANTHROPIC_API_KEY"):
        return Target(ANTHROPIC_API_URL, "ANTHROPIC_API_KEY")
    return Target(None, "simulator")


def api_key_for(environ: Mapping[str, str]) -> str:
    """The key sent to the target: ``ANTHROPIC_API_KEY``, or a placeholder the simulator accepts."""
    return environ.get("ANTHROPIC_API_KEY") or SIMULATOR_KEY


def _checked(url: str, where: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where} {url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080")
    return url.rstrip("/")


def start_simulator(extra_args: str = "") -> str:
    """Start ``python -m harness.simulator`` on a free loopback port; return its URL.

    The process is stopped when this one exits.
    """
    from harness.simulator.launcher import SimulatorProcess

    try:
        args = shlex.split(extra_args)
    except ValueError as exc:
        raise ConfigError(f'--simulator-args cannot be parsed ({exc}); quote it like "--seed 7"') from None
    process = SimulatorProcess(args)
    try:
        url = process.start()
    except RuntimeError as exc:
        raise ConfigError(f"the embedded simulator did not start: {exc}") from None
    atexit.register(process.stop)
    log.info(
        "No --host and no ANTHROPIC_API_KEY: started the embedded simulator at %s (python -m harness.simulator)",
        url,
    )
    return url
