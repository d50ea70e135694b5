"""How a feature joins a run: its options on Locust's parser, its install step, one typed slot in the run.

A *feature* is a part of the harness that a run may use: retries, rate limits, spend,
generator health, load shapes, live figures, SLOs, reports. It is a :class:`Feature`: a
name, the option dataclasses it declares (:mod:`harness.core.options`), and ``install``,
which builds the feature's per-run object from the run's
:class:`~harness.runtime.state.Harness`, adds its listeners to the run's events and
returns the object (or ``None``). :meth:`Harness.install
<harness.runtime.state.Harness.install>` runs it once per run and keeps the object,
found again by its type with :meth:`Harness.feature <harness.runtime.state.Harness.feature>`.

Nothing installs itself on import: :mod:`harness.plugin` holds the one ordered list of
features, adds their options when Locust builds its parser and installs them at
Locust's ``init``; a run built in code installs the ones it wants. A feature that
cannot run raises :class:`~harness.core.errors.ConfigError`; the plugin turns that into
one line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from harness.core.options import add_options

__all__ = ["Feature"]

T = TypeVar("T")


@dataclass(frozen=True)
class Feature(Generic[T]):
    """One feature: ``install(harness)`` returns its per-run object (kept by the run, by type)."""

    name: str
    install: Callable[..., T]  # (harness, *what a run built in code passes) -> the per-run object
    options: tuple[type, ...] = ()
    title: str | None = None  # the parser group of its options (``--help`` groups them under it)
    description: str | None = None  # the group's text in ``--help``
    arguments: Callable[[Any], None] | None = None  # parser additions that are not plain options (an action)

    def add_arguments(self, parser: Any) -> None:
        """Add this feature's options to Locust's (configargparse) parser."""
        if self.options:
            group = parser.add_argument_group(self.title or f"LLM harness: {self.name}", description=self.description)
            for options_class in self.options:
                add_options(group, options_class)
        if self.arguments is not None:
            self.arguments(parser)
