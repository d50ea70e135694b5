"""The run's own options: where files go, how calls are sent, what every scenario is overridden with.

Each option is declared once (:func:`harness.core.options.option`) and becomes a Locust
custom argument, so it works the way Locust's do: on the command line, in
``locust.conf`` / ``pyproject.toml`` ``[tool.locust]``, and from a ``LOCUST_*``
environment variable; those marked ``web_ui`` show in the web UI's start form. The API
key is deliberately not an option: it comes from ``ANTHROPIC_API_KEY`` only, so it never
lands in a shell history, a process list or a config file.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, fields
from typing import Any

from harness.core.errors import ConfigError
from harness.core.options import from_namespace, option
from harness.core.platforms import PLATFORMS
from harness.transports.registry import TRANSPORTS

__all__ = ["HarnessOptions"]


@dataclass(frozen=True)
class HarnessOptions:
    """The validated option values one run uses."""

    report_dir: str | None = option(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="Write requests.jsonl and summary.json (METRICS.md) to DIR. Default: write no files.",
    )
    transport: str = option(
        "--transport",
        default="sdk",
        choices=TRANSPORTS,
        web_ui=True,
        help="How calls are sent: 'sdk' = the official anthropic client; 'fast' = raw HTTP on geventhttpclient, "
        "several times less CPU per streamed token (docs/performance.md). Default: sdk.",
    )
    model: str = option(
        "--model",
        default="",
        metavar="NAME",
        web_ui=True,
        help="Override every scenario's model (e.g. claude-haiku-4-5). Default: each scenario's own.",
    )
    max_tokens: int = option(
        "--max-tokens",
        default=0,
        type=int,
        metavar="N",
        web_ui=True,
        help="Override every scenario's max_tokens. Default: each scenario's own.",
    )
    max_retries: int = option(
        "--max-retries",
        default=0,
        type=int,
        metavar="N",
        web_ui=True,
        help="Retries inside the SDK. Default 0: retries hide 429/529 and distort latency.",
    )
    request_timeout: float = option(
        "--request-timeout",
        default=60.0,
        type=float,
        metavar="SECONDS",
        web_ui=True,
        help="Longest wait for any read or write; a stream silent this long fails as 'timeout'. Default 60.",
    )
    connect_timeout: float = option(
        "--connect-timeout",
        default=10.0,
        type=float,
        metavar="SECONDS",
        web_ui=True,
        help="Longest wait for a TCP/TLS connection. Default 10.",
    )
    simulator_args: str = option(
        "--simulator-args",
        default="",
        metavar="ARGS",
        help='Extra arguments for the auto-started simulator, e.g. "--seed 7" '
        "(see python -m harness.simulator --help).",
    )
    call_timeout: float = option(
        "--call-timeout",
        default=600.0,
        type=float,
        metavar="SECONDS",
        help="Longest a whole call may take, even while bytes keep arriving; it then fails as 'timeout'. "
        "0 turns it off. Default 600.",
    )
    insecure: bool = option(
        "--insecure",
        default=False,
        action="store_true",
        help="Do not verify the target's TLS certificate (a test proxy with a self-signed one). Prints a warning.",
    )

    platform: str = option(
        "--platform",
        default="anthropic",
        choices=PLATFORMS,
        help="Where Claude is served: 'anthropic' (the Messages API), 'bedrock' (Amazon Bedrock) or 'vertex' "
        "(Google Vertex AI), with the SDK's credentials and environment variables; no credentials and no "
        "--host start the simulator as that platform (docs/platforms.md). Default: anthropic.",
    )
    aws_region: str = option(
        "--aws-region",
        default="",
        metavar="REGION",
        help="Bedrock's AWS region. Default: AWS_REGION, AWS_DEFAULT_REGION, then the AWS profile's region.",
    )
    vertex_project: str = option(
        "--vertex-project",
        default="",
        metavar="PROJECT",
        help="Vertex's Google Cloud project. Default: ANTHROPIC_VERTEX_PROJECT_ID, then the credentials' project.",
    )
    vertex_region: str = option(
        "--vertex-region",
        default="",
        metavar="REGION",
        help="Vertex's location (e.g. us-east5, global). Default: CLOUD_ML_REGION, else global.",
    )

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ConfigError(f"--platform {self.platform!r} is unknown; choose one of: {', '.join(PLATFORMS)}")
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
        return from_namespace(cls, options)

    def public(self) -> dict[str, Any]:
        """The options as written into summary.json."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
