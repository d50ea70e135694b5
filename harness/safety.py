"""Secrets and TLS: the API key never leaves the process except in the request's header.

* :func:`harness.redact.redact` replaces the key (``ANTHROPIC_API_KEY``) in any text with
  ``***``; call errors and ``ConfigError`` go through it, and :class:`RedactingFilter`
  does the same to every log record on every Locust handler (terminal, ``--logfile``
  and the web UI's log view), tracebacks included, as a last line of defence.
* TLS certificates are verified unless ``--insecure`` is given, which logs a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from locust import events
from locust.env import Environment

from harness.redact import api_key, redact

__all__ = ["RedactingFilter", "install_log_redaction"]

log = logging.getLogger(__name__)


class RedactingFilter(logging.Filter):
    """Renders each record once, key removed, so no handler can format the key back in."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = api_key()
        if key is None:
            return True
        message = record.getMessage()
        if key in message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and key in record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info and key in record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Put :class:`RedactingFilter` on every handler configured now (Locust's are, by ``init``)."""
    loggers: list[Any] = [logging.getLogger()]
    loggers += [obj for obj in logging.Logger.manager.loggerDict.values() if isinstance(obj, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("LLM harness: safety")
    group.add_argument(
        "--insecure",
        action="store_true",
        env_var="LOCUST_INSECURE",
        default=False,
        help="Do not verify the target's TLS certificate (a test proxy with a self-signed one). Prints a warning.",
    )
    group.add_argument(
        "--call-timeout",
        metavar="SECONDS",
        type=float,
        env_var="LOCUST_CALL_TIMEOUT",
        default=600.0,
        help="Longest a whole call may take, even while bytes keep arriving; it then fails as 'timeout'. "
        "0 turns it off. Default 600.",
    )


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    install_log_redaction()
    if getattr(environment.parsed_options, "insecure", False):
        log.warning("--insecure: TLS certificates are NOT verified; anyone on the path can read the API key")
