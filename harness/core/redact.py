"""The one place that knows the API key is a secret: :func:`redact` removes it from text.

Pure standard library, so the exception classes (:mod:`harness.core.errors`) can use it.
The key is read from ``ANTHROPIC_API_KEY`` at each call, never stored elsewhere.
"""

from __future__ import annotations

import os

__all__ = ["REDACTED", "api_key", "redact"]

REDACTED = "***"

# Shorter values are not a real key and would redact ordinary words.
_MIN_KEY_LENGTH = 8


def api_key() -> str | None:
    """The real key, if one is set (the simulator's placeholder is not a secret)."""
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    return key if len(key) >= _MIN_KEY_LENGTH else None


def redact(text: str) -> str:
    """``text`` with every occurrence of the API key replaced by ``***``."""
    key = api_key()
    return text.replace(key, REDACTED) if key and key in text else text
