"""The harness's exception tree, kept short on purpose (as in httpx and the anthropic SDK).

    HarnessError
    ├── ConfigError     bad flag, scenario or config: stops the run at start with one line
    └── CallError       one measured call failed; carries its outcome class (METRICS.md)
        └── ProtocolError   malformed SSE/JSON or events out of order (outcome ``protocol``)

``str(CallError)`` is ``"<outcome>: <short reason>"`` and stays stable across calls, so
Locust's failure table groups failures by class instead of by message text.
"""

from __future__ import annotations

from harness.core.outcome import PROTOCOL, Outcome
from harness.core.redact import redact

__all__ = ["CallError", "ConfigError", "HarnessError", "ProtocolError"]


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """Invalid configuration; the message is one line saying what is wrong and how to fix it.

    The API key is removed from the message: a key pasted into the wrong option must not
    be echoed back to the terminal or a CI log.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class CallError(HarnessError):
    """A classified failure of one call. ``outcome`` is an error class from METRICS.md."""

    def __init__(self, outcome: Outcome | str, reason: str = "") -> None:
        self.outcome = Outcome.parse(outcome)
        self.reason = redact(reason)  # a server may echo the key in its error body
        reason = self.reason
        super().__init__(f"{outcome}: {reason}" if reason else outcome)


class ProtocolError(CallError):
    """The server's stream broke the Messages API's wire format."""

    def __init__(self, reason: str) -> None:
        super().__init__(PROTOCOL, reason)
