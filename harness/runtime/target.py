"""Which endpoint a run talks to, as whom, and the embedded simulator when there is none.

The order follows the anthropic SDK's own conventions. On the first-party API:

1. ``--host`` (Locust's option, also ``LOCUST_HOST`` / ``host =`` in locust.conf)
2. ``ANTHROPIC_BASE_URL``
3. ``ANTHROPIC_API_KEY`` set and no host: the real API at https://api.anthropic.com
4. neither: the embedded simulator, started on a free loopback port and stopped at exit.

With ``--platform bedrock`` (``vertex``) the same, with ``ANTHROPIC_BEDROCK_BASE_URL``
(``ANTHROPIC_VERTEX_BASE_URL``) for 2, and for 3 the platform's credentials configured in
the environment (:func:`has_credentials`), which give the region's endpoint; 4 starts the
simulator as that platform. A target on loopback (the simulator's) is always sent the
simulator's test credentials, never the real ones; elsewhere the platform's own chain
(botocore's, google-auth's) signs, resolved by the transport (:mod:`harness.transports.credentials`).
"""

from __future__ import annotations

import atexit
import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError
from harness.core.platforms import bedrock_url, is_loopback, vertex_url
from harness.runtime.options import HarnessOptions
from harness.transports.base import ANTHROPIC_API_URL

__all__ = [
    "SIMULATOR_KEY",
    "SIMULATOR_TOKEN",
    "PlatformTarget",
    "Target",
    "api_key_for",
    "has_credentials",
    "platform_of",
    "resolve_target",
    "start_simulator",
    "transport_auth",
]

log = logging.getLogger(__name__)

# The simulator accepts any key; this placeholder is not a secret.
SIMULATOR_KEY = "sk-simulator-placeholder"
# The bearer token sent to a Vertex simulator (any is accepted); not a secret either.
SIMULATOR_TOKEN = "simulator-test-token"
SIMULATOR_PROJECT = "harness-simulator"
_BASE_URL_VARS = {
    "anthropic": "ANTHROPIC_BASE_URL",
    "bedrock": "ANTHROPIC_BEDROCK_BASE_URL",
    "vertex": "ANTHROPIC_VERTEX_BASE_URL",
}
# Set, each says AWS credentials are configured (the chain may still find none: the transport says so).
_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass(frozen=True)
class Target:
    """``url`` is None when the simulator is still to be started."""

    url: str | None
    source: str  # "host", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "AWS credentials", ... or "simulator"


@dataclass(frozen=True)
class PlatformTarget:
    """The run's platform with its region and project, from the options and then the environment."""

    name: str = "anthropic"
    region: str | None = None
    project: str | None = None


def platform_of(options: HarnessOptions, environ: Mapping[str, str]) -> PlatformTarget:
    """``--platform`` with its ``--aws-region`` / ``--vertex-*`` or the SDK's environment variables."""
    if options.platform == "bedrock":
        region = options.aws_region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
        return PlatformTarget("bedrock", region)
    if options.platform == "vertex":
        region = options.vertex_region or environ.get("CLOUD_ML_REGION") or "global"
        project = options.vertex_project or environ.get("ANTHROPIC_VERTEX_PROJECT_ID") or None
        return PlatformTarget("vertex", region, project)
    return PlatformTarget()


def has_credentials(platform: str, environ: Mapping[str, str]) -> bool:
    """Whether the platform's credentials are configured here (variables or files; no network asked).

    An EC2/ECS role with nothing configured is not seen: give such a run ``--host`` (or the base-URL
    variable) and the transport's chain finds the role.
    """
    home = Path(environ.get("HOME") or Path.home())
    if platform == "bedrock":
        if any(environ.get(name) for name in _AWS_VARS):
            return True
        files = (
            environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials",
            environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config",
        )
        return any(Path(f).is_file() for f in files)
    if platform == "vertex":
        if environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            return True
        gcloud = Path(environ.get("CLOUDSDK_CONFIG") or home / ".config" / "gcloud")
        return (gcloud / "application_default_credentials.json").is_file()
    return bool(environ.get("ANTHROPIC_API_KEY"))


def resolve_target(host: str | None, environ: Mapping[str, str], platform: PlatformTarget | None = None) -> Target:
    """Pick the target from ``--host``, the platform and the environment (see module docstring)."""
    name = platform.name if platform is not None else "anthropic"
    if host:
        return Target(_checked(host, "--host"), "host")
    variable = _BASE_URL_VARS[name]
    base_url = environ.get(variable, "").strip()
    if base_url:
        return Target(_checked(base_url, variable), variable)
    if not has_credentials(name, environ):
        return Target(None, "simulator")
    if platform is None or name == "anthropic":
        return Target(ANTHROPIC_API_URL, "ANTHROPIC_API_KEY")
    if name == "bedrock":
        return Target(bedrock_url(platform.region or _aws_profile_region()), "AWS credentials")
    return Target(vertex_url(platform.region or "global"), "Google credentials")


def api_key_for(environ: Mapping[str, str]) -> str:
    """The key sent to the target: ``ANTHROPIC_API_KEY``, or a placeholder the simulator accepts."""
    return environ.get("ANTHROPIC_API_KEY") or SIMULATOR_KEY


def transport_auth(options: HarnessOptions, host: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The :class:`~harness.transports.base.TransportConfig` fields that say where and as whom calls go."""
    platform = platform_of(options, environ)
    if platform.name == "anthropic":
        return {"api_key": api_key_for(environ)}
    fields: dict[str, Any] = {"platform": platform.name, "region": platform.region, "project": platform.project}
    if is_loopback(host):
        # The simulator's test credentials: a developer's real ones never go to a local server.
        from harness.simulator.sigv4 import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY

        if platform.name == "bedrock":
            fields.update(api_key="", aws_access_key=DEFAULT_ACCESS_KEY_ID, aws_secret_key=DEFAULT_SECRET_ACCESS_KEY)
            fields["region"] = platform.region or "us-east-1"
        else:
            fields.update(api_key=SIMULATOR_TOKEN, project=platform.project or SIMULATOR_PROJECT)
        return fields
    if platform.name == "bedrock":
        fields["api_key"] = environ.get("AWS_BEARER_TOKEN_BEDROCK", "")
        fields["region"] = platform.region or _aws_profile_region()
    else:
        fields.update(api_key="")
    return fields


def _aws_profile_region() -> str:
    import botocore.session

    region = botocore.session.Session().get_config_variable("region")
    if not region:
        raise ConfigError("no AWS region for --platform bedrock: give --aws-region or set AWS_REGION")
    return str(region)


def _checked(url: str, where: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where} {url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080")
    return url.rstrip("/")


def start_simulator(extra_args: str = "", platform: str = "anthropic") -> str:
    """Start ``python -m harness.simulator`` (as ``platform``) on a free loopback port; return the base URL.

    The process is stopped when this one exits. A Vertex base URL ends in ``/v1``, as the SDK's does.
    """
    from harness.simulator.launcher import SimulatorProcess

    try:
        args = shlex.split(extra_args)
    except ValueError as exc:
        raise ConfigError(f'--simulator-args cannot be parsed ({exc}); quote it like "--seed 7"') from None
    process = SimulatorProcess(args, platform=platform)
    try:
        url = process.start()
    except RuntimeError as exc:
        raise ConfigError(f"the embedded simulator did not start: {exc}") from None
    atexit.register(process.stop)
    if platform == "anthropic":
        log.info(
            "No --host and no ANTHROPIC_API_KEY: started the embedded simulator at %s (python -m harness.simulator)",
            url,
        )
        return url
    if platform == "vertex":
        url += "/v1"
    credentials = "AWS credentials" if platform == "bedrock" else "Google credentials"
    log.info(
        "No --host and no %s: started the embedded simulator as %s at %s (python -m harness.simulator --platform %s)",
        credentials,
        platform.capitalize(),
        url,
        platform,
    )
    return url
