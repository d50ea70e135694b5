"""Which scenarios a run offers and which it runs: tags, the default class, ``--list``, ``--dataset``.

Locust runs every User class of a locustfile unless some are named on the command line. The
top-level ``locustfile.py`` imports the whole scenario library, so that any scenario can be
named (``locust -f locustfile.py CacheWarm``) or picked by tag (``--tags caching``), and calls
:func:`run_by_default` so that naming nothing still runs only ``ShortChat``. What this module
adds to Locust, and nothing more:

* a scenario's ``tags = ("caching",)`` class attribute tags each of its tasks (Locust's ``@tag``
  works on tasks only), so ``--tags``/``--exclude-tags`` select whole scenarios;
* a class left with no task by ``--tags`` is dropped instead of failing every spawned user;
* ``-l/--list`` prints every scenario with its one-line description and tags;
* ``--dataset FILE.jsonl`` replaces the file of every scenario that replays a dataset.

Workers keep every class: they spawn whatever the master sends them.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from locust.env import Environment
from locust.runners import WorkerRunner
from locust.user import User

from harness.core.errors import ConfigError
from harness.core.options import option
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = [
    "FEATURE",
    "CatalogOptions",
    "available_user_classes",
    "describe",
    "run_by_default",
    "select",
    "tag_tasks",
    "tags_of",
]

_defaults: list[type[User]] = []


def run_by_default(*user_classes: type[User]) -> None:
    """Run only these classes when the command line names no class and no tag.

    Call it in a locustfile that imports more scenarios than it should run by default.
    """
    _defaults.extend(c for c in user_classes if c not in _defaults)


def tag_tasks(user_class: type[User]) -> None:
    """Give every task of ``user_class`` the class's ``tags`` (besides its own ``@tag`` tags).

    Called for every AnthropicUser subclass as it is created. Each task function is wrapped
    once per class, so a subclass's ``tags`` replace its parent's instead of adding to them.
    """
    class_tags = set(getattr(user_class, "tags", ()) or ())
    if not class_tags:
        return
    wrapped: dict[Any, Any] = {}
    tasks = []
    for task in user_class.tasks:
        if inspect.isfunction(task):
            original = getattr(task, "_harness_task", task)
            if original not in wrapped:
                wrapped[original] = _tagged(original, class_tags)
            task = wrapped[original]
        tasks.append(task)
    user_class.tasks = tasks


def _tagged(original: Any, class_tags: set[str]) -> Any:
    @functools.wraps(original)
    def task(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    task.locust_tag_set = set(getattr(original, "locust_tag_set", set())) | class_tags  # type: ignore[attr-defined]
    task._harness_task = original  # type: ignore[attr-defined]
    return task


def tags_of(user_class: type[User]) -> list[str]:
    """Every tag on the class's tasks, sorted."""
    found: set[str] = set()
    for task in user_class.tasks:
        found |= set(getattr(task, "locust_tag_set", set()))
    return sorted(found)


def describe(user_class: type[User]) -> str:
    """The first line of the class's own docstring (class docstrings are not inherited)."""
    doc = user_class.__dict__.get("__doc__") or ""
    lines = [line.strip() for line in doc.strip().splitlines()]
    return lines[0] if lines and lines[0] else "(no description: add a docstring to the class)"


# -- selection at start -------------------------------------------------------------------


def select(environment: Environment) -> None:
    """Narrow ``environment.user_classes`` to what the command line asked for; raises ConfigError."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    classes = environment.user_classes
    tags = _as_set(environment.tags if environment.tags is not None else getattr(options, "tags", None))
    exclude = _as_set(
        environment.exclude_tags if environment.exclude_tags is not None else getattr(options, "exclude_tags", None)
    )
    if tags is not None or exclude is not None:
        # Locust filters tasks by tag only when the test starts; a class with no task left then
        # fails every user it spawns. Keep the classes that will have a task.
        kept = [c for c in classes if _has_task(c, tags, exclude)]
        if not kept:
            raise ConfigError(f"no scenario has a task tagged {', '.join(sorted(tags or ())) or '(any)'}; see --list")
        classes[:] = kept
    elif not getattr(options, "user_classes", None) and not getattr(options, "class_picker", False):
        chosen = [c for c in classes if c in _defaults]
        if chosen:
            classes[:] = chosen


def _as_set(values: Iterable[str] | None) -> set[str] | None:
    return set(values) if values else None


def _has_task(holder: Any, tags: set[str] | None, exclude: set[str] | None) -> bool:
    """Whether Locust's tag filter (locust.user.task.filter_tasks_by_tags) leaves ``holder`` a task."""
    for task in holder.tasks:
        if hasattr(task, "tasks"):
            if _has_task(task, tags, exclude):
                return True
            continue
        task_tags = set(getattr(task, "locust_tag_set", set()))
        if (tags is None or task_tags & tags) and (exclude is None or not task_tags & exclude):
            return True
    return False


def bind_sources(environment: Environment) -> None:
    """Hand the run's options to every selected scenario's prompt source (``--dataset``)."""
    from harness.core.prompts import Dataset

    options = environment.parsed_options
    sources = [getattr(c, "prompt_source", None) for c in environment.user_classes]
    for source in sources:
        if source is not None and hasattr(source, "bind"):
            source.bind(options)
    if getattr(options, "dataset", None) and not any(isinstance(s, Dataset) for s in sources):
        raise ConfigError("--dataset is given but no selected scenario replays a dataset; name one, e.g. DatasetReplay")


# -- --list -------------------------------------------------------------------------------


def available_user_classes() -> list[type[User]]:
    """The User classes Locust found in the ``-f`` locustfiles of this process, in Locust's order."""
    from locust.argument_parser import parse_locustfile_option, parse_locustfile_paths
    from locust.util.load_locustfile import is_user_class

    options: Any = parse_locustfile_option()  # annotated as a tuple upstream, returns the Namespace
    paths = parse_locustfile_paths([p.strip() for p in str(options.locustfile).split(",")])
    found: dict[str, type[User]] = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        module = sys.modules.get("locustfile" if name == "locust" else name)
        if module is None or os.path.abspath(getattr(module, "__file__", "") or "") != os.path.abspath(path):
            continue
        for value in vars(module).values():
            if is_user_class(value) and value.__name__ not in found:
                found[value.__name__] = value
    return list(found.values())


def listing(user_classes: Iterable[type[User]]) -> str:
    """``--list``'s text: Locust's header, then one line per class."""
    classes = list(user_classes)
    width = max((len(c.__name__) for c in classes), default=0)
    lines = ["Available Users:"]
    for user_class in classes:
        notes = []
        if user_class in _defaults:
            notes.append("default")
        tags = tags_of(user_class)
        if tags:
            notes.append("tags: " + ", ".join(tags))
        suffix = f"  [{'; '.join(notes)}]" if notes else ""
        lines.append(f"    {user_class.__name__:<{width}}  {describe(user_class)}{suffix}")
    return "\n".join(lines) + "\n"


class _ListScenarios(argparse.Action):
    """``-l/--list``: Locust's list of User classes, with each one's description and tags."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        sys.stdout.write(listing(available_user_classes()))
        sys.stdout.flush()
        parser.exit(0)


@dataclass(frozen=True)
class CatalogOptions:
    dataset: str | None = option(
        "--dataset",
        default=None,
        metavar="FILE",
        help="JSONL file of Messages API requests (one per line) for the scenarios that replay a dataset, "
        "e.g. DatasetReplay. Default: each such scenario's own sample file.",
    )


def add_list_argument(parser: Any) -> None:
    """Replace Locust's ``-l/--list`` (class names only) with one that says what each class does."""
    group = next(g for g in parser._action_groups if g.title == TITLE)
    # argparse's documented "resolve" conflict handler removes the old option.
    handler = parser.conflict_handler
    parser.conflict_handler = "resolve"
    try:
        group.conflict_handler = "resolve"
        group.add_argument(
            "-l",
            "--list",
            action=_ListScenarios,
            dest="list_commands",
            default=False,
            help="Show every User class (scenario) with its one-line description and tags, and exit",
        )
    finally:
        parser.conflict_handler = handler
        group.conflict_handler = handler


def install(harness: Harness) -> None:
    """Narrow the run to the scenarios asked for and bind their prompt sources (before the start-up checks)."""
    select(harness.environment)
    bind_sources(harness.environment)


TITLE = "LLM scenario options"
FEATURE = Feature("scenarios", install, options=(CatalogOptions,), title=TITLE, arguments=add_list_argument)
