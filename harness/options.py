"""The harness's command-line options, added to Locust's own parser.

Each option is a Locust custom argument, so it works the way Locust's do: on the
command line, in ``locust.conf`` / ``pyproject.toml`` ``[tool.locust]``, and from a
``LOCUST_*`` environment variable, and it shows in the web UI's start form.
The API key is deliberately not an option: it comes from ``ANTHROPIC_API_KEY`` only,
so it never lands in a shell history, a process list or a config file.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, fields
from typing import Any

from harness.errors import ConfigError
from harness.transport import TRANSPORTS

__all__ = ["HarnessOptions", "add_arguments", "show_in_web_ui"]

# Options a run started from the web UI's form applies (the rest take effect at start-up only).
WEB_UI_OPTIONS = ("transport", "model", "max_tokens", "max_retries", "request_timeout", "connect_timeout")


def show_in_web_ui(group: Any, dests: tuple[str, ...] | None = None) -> None:
    """Show a group's options (or those named in ``dests``) in the web UI's start form.

    Locust marks the arguments its own parser adds; arguments added through
    ``parser.add_argument_group(...)`` bypass that, so they are marked here.
    """
    for action in group._group_actions:
        if dests is None or action.dest in dests:
            action.include_in_web_ui = True


def add_arguments(parser: Any) -> None:
    """Register the harness's options on Locust's (configargparse) parser."""
    group = parser.add_argument_group("LLM harness options")
    group.add_argument(
        "--report-dir",
        metavar="DIR",
        env_var="LOCUST_REPORT_DIR",
        default=None,
        help="Write requests.jsonl and summary.json (METRICS.md) to DIR. Default: write no files.",
    )
    group.add_argument(
        "--transport",
        choices=TRANSPORTS,
        env_var="LOCUST_TRANSPORT",
        default="sdk",
        help="How calls are sent: 'sdk' = the official anthropic client; 'fast' = raw HTTP on geventhttpclient, "
        "several times less CPU per streamed token (docs/performance.md). Default: sdk.",
    )
    group.add_argument(
        "--model",
        metavar="NAME",
        env_var="LOCUST_MODEL",
        default="",
        help="Override every scenario's model (e.g. claude-haiku-4-5). Default: each scenario's own.",
    )
    group.add_argument(
        "--max-tokens",
        metavar="N",
        type=int,
        env_var="LOCUST_MAX_TOKENS",
        default=0,
        help="Override every scenario's max_tokens. Default: each scenario's own.",
    )
    group.add_argument(
        "--max-retries",
        metavar="N",
        type=int,
        env_var="LOCUST_MAX_RETRIES",
        default=0,
        help="Retries inside the SDK. Default 0: retries hide 429/529 and distort latency.",
    )
    group.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=float,
        env_var="LOCUST_REQUEST_TIMEOUT",
        default=60.0,
        help="Longest wait for any read or write; a stream silent this long fails as 'timeout'. Default 60.",
    )
    group.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=float,
        env_var="LOCUST_CONNECT_TIMEOUT",
        default=10.0,
        help="Longest wait for a TCP/TLS connection. Default 10.",
    )
    group.add_argument(
        "--simulator-args",
        metavar="ARGS",
        env_var="LOCUST_SIMULATOR_ARGS",
        default="",
        help='Extra arguments for the auto-started simulator, e.g. "--seed 7" '
        "(see python -m harness.simulator --help).",
    )
    show_in_web_ui(group, WEB_UI_OPTIONS)


@dataclass(frozen=True)
class HarnessOptions:
    """The validated option values one run uses."""

    report_dir: str | None = None
    transport: str = "sdk"
    model: str = ""
    max_tokens: int = 0
    max_retries: int = 0
    request_timeout: float = 60.0
    connect_timeout: float = 10.0
    simulator_args: str = ""
    call_timeout: float = 600.0
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"--transport {self.transport!r} is unknown; choose one of: {', '.join(TRANSPORTS)}")
        if self.max_tokens < 0:
            raise ConfigError(f"--max-tokens must be a positive integer, got {self.max_tokens}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be 0 or more, got {self.max_retries}")
        if self.request_timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigError("--request-timeout and --connect-timeout must be positive numbers of seconds")
        if self.call_timeout < 0:
            raise ConfigError(f"--call-timeout must be 0 (off) or a positive number of seconds: {self.call_timeout}")

    @classmethod
    def from_namespace(cls, options: Namespace | None) -> HarnessOptions:
        """Pick this harness's values out of Locust's parsed options."""
        if options is None:
            return cls()
        values = {f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)}
        values = {k: v for k, v in values.items() if v is not None or k == "report_dir"}
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The options as written into summary.json."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
