"""Claude on Amazon Bedrock and Google Vertex AI: model ids, endpoints and request shapes.

Pure data and arithmetic, shared by both transports, the price table and the start-up:

* :data:`MODEL_IDS`, the documented table from a scenario's model name (``claude-haiku-4-5``)
  to each platform's id, and :func:`platform_model`, which applies it and leaves an id
  already in a platform's form as it is (``us.anthropic.…``, an ARN, ``name@version``);
* each platform's endpoint (:func:`bedrock_url`, :func:`vertex_url`), path and body
  (:func:`bedrock_request`, :func:`vertex_request`): ``model`` leaves the body for the
  path, ``anthropic_version`` enters it, as the SDK's ``AnthropicBedrock`` and
  ``AnthropicVertex`` do.

Sources: Anthropic's "Claude on Amazon Bedrock" and "Claude on Vertex AI" pages (model id
tables, global and regional endpoints), checked 2026-11-29. Newer Claude models on Bedrock
are only served through an inference profile; the table names the ``global.`` profile where
one exists (Anthropic's recommendation: no regional premium), else the US one, else the base id.
Models after Opus 4.6 are served on Bedrock's newer Messages-API endpoint, which this does not
cover; a name the table lacks is sent as given (``--model`` gives a platform id directly).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "BEDROCK_VERSION",
    "MODEL_IDS",
    "PLATFORMS",
    "REGIONAL_PREFIXES",
    "VERTEX_VERSION",
    "ModelIds",
    "bedrock_request",
    "bedrock_url",
    "is_loopback",
    "is_platform_id",
    "platform_model",
    "vertex_request",
    "vertex_url",
]

PLATFORMS = ("anthropic", "bedrock", "vertex")
# The documented anthropic_version of each platform's body (the SDK sends its own constant instead).
BEDROCK_VERSION = "bedrock-2023-05-31"
VERTEX_VERSION = "vertex-2023-10-16"
# Bedrock's geographic inference-profile prefixes (global. is the cross-region one).
REGIONAL_PREFIXES = ("us.", "eu.", "jp.", "apac.", "au.", "ca.", "us-gov.")


@dataclass(frozen=True)
class ModelIds:
    """One Claude model's ids: Bedrock's (an inference profile or the base id) and Vertex's."""

    bedrock: str
    vertex: str
    # Released with or after Claude Sonnet 4.5: regional endpoints cost 10 % more than global ones.
    regional_premium: bool = True


MODEL_IDS: dict[str, ModelIds] = {
    "claude-opus-4-6": ModelIds("global.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
    "claude-sonnet-4-6": ModelIds("global.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
    "claude-opus-4-5": ModelIds("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5@20251101"),
    "claude-haiku-4-5": ModelIds("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5@20251001"),
    "claude-sonnet-4-5": ModelIds("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5@20250929"),
    "claude-sonnet-4": ModelIds("global.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4@20250514", False),
    "claude-opus-4-1": ModelIds("us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1@20250805", False),
    "claude-opus-4": ModelIds("anthropic.claude-opus-4-20250514-v1:0", "claude-opus-4@20250514", False),
    "claude-3-7-sonnet": ModelIds("anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet@20250219", False),
    "claude-3-5-haiku": ModelIds("us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku@20241022", False),
    "claude-3-haiku": ModelIds("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku@20240307", False),
}
# The first-party aliases of the same models.
_ALIASES = {"claude-sonnet-4-0": "claude-sonnet-4", "claude-opus-4-0": "claude-opus-4"}
_SNAPSHOT = re.compile(r"-(\d{8}|latest)$")
# anthropic.<name>[-vN[:M]] after an optional inference-profile prefix; or an ARN ending in one.
_BEDROCK_ID = re.compile(r"^(arn:|([a-z-]+\.)?anthropic\.)")


def is_platform_id(model: str, platform: str) -> bool:
    """Whether ``model`` is already an id in ``platform``'s form (then it is sent as given)."""
    if platform == "bedrock":
        return _BEDROCK_ID.match(model) is not None
    if platform == "vertex":
        return "@" in model or model in _VERTEX_IDS
    return True


def platform_model(model: str, platform: str) -> str | None:
    """The id ``platform`` knows ``model`` by; ``model`` itself if it is already one; None if unknown.

    A first-party snapshot name (``claude-haiku-4-5-20251001``, ``…-latest``) maps as its model does.
    """
    if platform == "anthropic" or is_platform_id(model, platform):
        return model
    name = _SNAPSHOT.sub("", model)
    ids = MODEL_IDS.get(_ALIASES.get(name, name))
    if ids is None:
        return None
    return ids.bedrock if platform == "bedrock" else ids.vertex


_VERTEX_IDS = frozenset(ids.vertex for ids in MODEL_IDS.values())


def bedrock_url(region: str) -> str:
    """The Bedrock runtime endpoint of ``region``, as ``AnthropicBedrock`` builds it."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def vertex_url(region: str) -> str:
    """The Vertex AI endpoint (``…/v1``) of ``region``, as ``AnthropicVertex`` builds it."""
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def bedrock_request(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, body) of a Messages body sent to Bedrock's InvokeModel[WithResponseStream].

    ``model`` goes into the path (percent-encoded as the SDK does, ``:`` and ``;`` kept),
    ``stream`` picks the operation; ``anthropic_version`` enters the body (betas, which the
    SDK moves from its ``anthropic-beta`` header, go into a scenario's params as ``anthropic_beta``).
    """
    out = dict(body)
    model = str(out.pop("model"))
    stream = bool(out.pop("stream", False))
    out.setdefault("anthropic_version", BEDROCK_VERSION)
    operation = "invoke-with-response-stream" if stream else "invoke"
    return f"/model/{quote(model, safe=':;')}/{operation}", out


def vertex_request(body: Mapping[str, Any], project: str, region: str) -> tuple[str, dict[str, Any]]:
    """(path under the ``…/v1`` base, body) of a Messages body sent to Vertex's [stream]rawPredict.

    ``model`` goes into the path; ``stream`` stays in the body and picks the method, as in
    ``AnthropicVertex``; ``anthropic_version`` enters the body.
    """
    out = dict(body)
    model = str(out.pop("model"))
    out.setdefault("anthropic_version", VERTEX_VERSION)
    method = "streamRawPredict" if out.get("stream") else "rawPredict"
    where = f"/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
    return f"{where}/publishers/anthropic/models/{quote(model, safe='@')}:{method}", out


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (the simulator's, or a local test server's)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
