"""The one place that knows which values are secrets: :func:`redact` removes them from text.

Pure standard library, so the exception classes (:mod:`harness.core.errors`) can use it.
The secrets are the values of :data:`SECRET_ENV_VARS` (the Anthropic API key; AWS secret
keys, session tokens and Bedrock bearer tokens), read from the environment at each call,
plus what a transport resolved at run time and registered with :func:`add_secret` (AWS
credentials from a profile or SSO, each Google access token it obtained), and anything
shaped like a Google OAuth access token (``ya29.…``).
"""

from __future__ import annotations

import os
import re

__all__ = ["REDACTED", "SECRET_ENV_VARS", "add_secret", "api_key", "redact", "secrets"]

REDACTED = "***"

# Shorter values are not a real key and would redact ordinary words.
_MIN_KEY_LENGTH = 8

SECRET_ENV_VARS = (
    "ANTHROPIC_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",  # boto's older name for the session token
    "AWS_BEARER_TOKEN_BEDROCK",
)
# A Google OAuth 2 access token: what google-auth puts in "Authorization: Bearer ...".
_GOOGLE_TOKEN = re.compile(r"ya29\.[0-9A-Za-z_\-.~+/]+=*")
_registered: set[str] = set()


def api_key() -> str | None:
    """The real key, if one is set (the simulator's placeholder is not a secret)."""
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    return key if len(key) >= _MIN_KEY_LENGTH else None


def add_secret(value: str | None) -> None:
    """Treat ``value`` (a credential resolved at run time) as a secret from now on."""
    if value and len(value) >= _MIN_KEY_LENGTH:
        _registered.add(value)


def secrets() -> list[str]:
    """Every secret value known now, longest first (a token that contains another is removed whole)."""
    found = set(_registered)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= _MIN_KEY_LENGTH:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "ya29." in text:
        text = _GOOGLE_TOKEN.sub(REDACTED, text)
    return text
