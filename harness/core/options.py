"""Options declared once: flag, type, default, help and config name from one definition.

A feature declares its options as a frozen dataclass whose fields are made with
:func:`option`::

    @dataclass(frozen=True)
    class RetryOptions:
        retries: int = option("--retries", 0, type=int, metavar="N", help="Re-send a failed call ...")

From that one declaration come the Locust argument (:func:`add_options`: the flag, its
``LOCUST_RETRIES`` environment variable and its ``retries =`` name in ``locust.conf``,
as Locust's own options have), the typed value with the same default
(``RetryOptions()``), and :func:`from_namespace`, which reads Locust's parsed options
(a missing value takes the default) and converts each raw value once. Validation lives
in the dataclass's ``__post_init__``, so a bad value stops the run at start with one
line, whoever built the options.
"""

from __future__ import annotations

import dataclasses
from argparse import Namespace
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["Option", "add_options", "declared", "from_namespace", "option"]

T = TypeVar("T")
_KEY = "harness_option"


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option: what argparse needs, plus how its raw value becomes the field's."""

    flags: tuple[str, ...]
    default: Any  # the raw default, as the parser (and ``--help``) shows it
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: Sequence[str] | None = None
    action: str | None = None  # e.g. "store_true", "append"
    convert: Callable[[Any], Any] | None = None  # raw parsed value -> field value
    web_ui: bool = False  # shown in the web UI's start form

    @property
    def dest(self) -> str:
        """argparse's destination: the long flag without dashes, ``-`` as ``_``."""
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_")

    @property
    def env_var(self) -> str:
        return "LOCUST_" + self.dest.upper()

    def value(self, raw: Any) -> Any:
        return self.convert(raw) if self.convert is not None else raw


def option(
    *flags: str,
    default: Any = None,
    help: str,
    type: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    action: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    web_ui: bool = False,
) -> Any:
    """A dataclass field declared as a command-line option; its default is ``convert(default)``."""
    spec = Option(
        flags=flags,
        default=default,
        help=help,
        type=type,
        metavar=metavar,
        choices=tuple(choices) if choices is not None else None,
        action=action,
        convert=convert,
        web_ui=web_ui,
    )
    return dataclasses.field(default=spec.value(default), metadata={_KEY: spec})


def declared(options_class: type) -> list[tuple[str, Option]]:
    """``(field name, Option)`` for every option field of ``options_class``, in declaration order."""
    return [(f.name, f.metadata[_KEY]) for f in dataclasses.fields(options_class) if _KEY in f.metadata]


def add_options(group: Any, options_class: type) -> None:
    """Add every option of ``options_class`` to a (configargparse) parser group."""
    for _name, spec in declared(options_class):
        kwargs: dict[str, Any] = {"env_var": spec.env_var, "default": spec.default, "help": spec.help}
        if spec.action is not None:
            kwargs["action"] = spec.action
        if spec.type is not None:
            kwargs["type"] = spec.type
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
        action = group.add_argument(*spec.flags, **kwargs)
        if spec.web_ui:
            # Locust marks the arguments its own parser adds; a group's bypass that, so mark here.
            action.include_in_web_ui = True


def from_namespace(options_class: type[T], namespace: Namespace | None, **overrides: Any) -> T:
    """Build ``options_class`` from Locust's parsed options; what the namespace lacks takes the default."""
    values: dict[str, Any] = {}
    if namespace is not None:
        for name, spec in declared(options_class):
            raw = getattr(namespace, spec.dest, None)
            if raw is not None:
                values[name] = spec.value(raw)
    values.update(overrides)
    return options_class(**values)
