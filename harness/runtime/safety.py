"""Secrets and TLS: the API key never leaves the process except in the request's header.

* :func:`harness.core.redact.redact` replaces every secret (``ANTHROPIC_API_KEY``; AWS secret keys,
  session tokens and Bedrock bearer tokens; Google access tokens) in any text with
  ``***``; call errors and ``ConfigError`` go through it, and :class:`RedactingFilter`
  does the same to every log record on every Locust handler (terminal, ``--logfile``
  and the web UI's log view), tracebacks included, as a last line of defence.
* TLS certificates are verified unless ``--insecure`` is given, which logs a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from harness.core.redact import redact, secrets
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "RedactingFilter", "install_log_redaction"]

log = logging.getLogger(__name__)


class RedactingFilter(logging.Filter):
    """Renders each record once, secrets removed, so no handler can format one back in."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = secrets()
        message = record.getMessage()
        if _holds(message, known):
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and _holds(record.exc_text, known):
            record.exc_text = redact(record.exc_text)
        if record.stack_info and _holds(record.stack_info, known):
            record.stack_info = redact(record.stack_info)
        return True


def _holds(text: str, known: list[str]) -> bool:
    # A Google access token is found by its shape: it may never have been registered.
    return "ya29." in text or any(secret in text for secret in known)


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Put :class:`RedactingFilter` on every handler configured now (Locust's are, by ``init``)."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [obj for obj in logging.Logger.manager.loggerDict.values() if isinstance(obj, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def install(harness: Harness) -> None:
    """Redact every log line from now on; warn when TLS is not verified."""
    install_log_redaction()
    if harness.options.insecure:
        log.warning("--insecure: TLS certificates are NOT verified; anyone on the path can read the API key")


# First in the plugin's list: every line logged after it is redacted. Its options
# (--insecure, --call-timeout) are HarnessOptions: the transport and the call path read them.
FEATURE = Feature("safety", install)
